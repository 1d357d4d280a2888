"""Launch paths: torchrun with 2 CPU processes (gloo), and a Slurm-style requeue through submitit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import offline_env, probe_run_overrides, torchrun_two

from detect.engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env() -> dict:
    return offline_env()


def _common(data: Path, out: Path) -> list[str]:
    return [*probe_run_overrides(data, out), "trainer.epochs=2"]


@pytest.mark.e2e
@pytest.mark.long
def test_torchrun_two_cpu_processes_match_single_process(ff_fixture, tmp_path):
    """2 processes x batch 8 (gradients averaged over gloo) == 1 process x batch 16, step for step."""
    single = [
        sys.executable,
        "train.py",
        *_common(ff_fixture, tmp_path),
        "run_name=single",
        "trainer.batch_size=16",
    ]
    subprocess.run(single, cwd=REPO, env=_env(), check=True, capture_output=True, timeout=300)
    ddp = [
        *torchrun_two(),
        "train.py",
        *_common(ff_fixture, tmp_path),
        "run_name=ddp",
        "trainer.batch_size=8",
    ]
    proc = subprocess.run(ddp, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1 of 2 (gloo)" in proc.stdout + proc.stderr
    a = load_checkpoint(tmp_path / "runs/single/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "runs/ddp/checkpoints/last.pt")
    assert a["global_step"] == b["global_step"] > 0
    for k in a["method"]:
        assert torch.allclose(a["method"][k], b["method"][k], atol=1e-6), k
    res = json.loads((tmp_path / "runs/ddp/results.json").read_text())
    single_res = json.loads((tmp_path / "runs/single/results.json").read_text())
    assert res["metrics"]["FF++"]["n_frames"] == single_res["metrics"]["FF++"]["n_frames"]
    assert res["metrics"]["FF++"]["frame_auc"] == pytest.approx(single_res["metrics"]["FF++"]["frame_auc"])


REQUEUE = """
import pickle, sys
with open(sys.argv[1], "rb") as fh:
    submission = pickle.load(fh)
# what submitit does when the job is preempted: ask the callable for its checkpoint, run it again
again = submission.function.checkpoint(*submission.args, **submission.kwargs)
again.result()
"""


@pytest.mark.e2e
@pytest.mark.long
def test_requeued_sweep_job_resumes_in_its_run_directory(ff_fixture, tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=local",
        *_common(ff_fixture, tmp_path),
        "trainer.epochs=1",
        "seed=0",
    ]
    subprocess.run(cmd, cwd=REPO, env=_env(), check=True, capture_output=True, timeout=300)
    sweeps = list((tmp_path / "multirun").iterdir())
    assert len(sweeps) == 1
    job_dir = sweeps[0] / "0"
    first = load_checkpoint(job_dir / "checkpoints/last.pt")
    assert first["epoch"] == 1
    pkl = next(sweeps[0].glob(".submitit/*/*_submitted.pkl"))
    time.sleep(1.1)  # a new process re-resolving ${now:...} would get another directory name
    env = _env()
    env.update(
        SUBMITIT_EXECUTOR="local",
        SUBMITIT_LOCAL_JOB_ID="4242",
        SUBMITIT_LOCAL_NTASKS="1",
        SUBMITIT_LOCAL_JOB_NUM_NODES="1",
        SUBMITIT_LOCAL_NODEID="0",
        SUBMITIT_LOCAL_GLOBALID="0",
        SUBMITIT_LOCAL_LOCALID="0",
    )
    proc = subprocess.run(
        [sys.executable, "-c", REQUEUE, str(pkl)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "multirun").iterdir()) == sweeps  # no new sweep directory
    log = (job_dir / "train.log").read_text()
    assert f"resumed from {job_dir}/checkpoints/last.pt at epoch 1" in log
    res = json.loads((job_dir / "results.json").read_text())
    assert res["run_dir"] == str(job_dir) and res["best_epoch"] == 1


@pytest.mark.e2e
@pytest.mark.long
def test_curriculum_under_ddp_equals_single_process(ff_fixture, tmp_path):
    """DFFC under torchrun (2 gloo processes x batch 8): per-sample losses are gathered from both processes,
    so the hardness table, its history and the pool size equal a single process's (batch 16)."""
    curriculum = [
        "curriculum=dffc",
        "curriculum.milestones=[1,2,3]",
        "curriculum.alpha_k=0.5",
        "curriculum.n_easy=4",
        "curriculum.quality.kind=classical",
        "curriculum.easy_augment=[]",
        "trainer.epochs=4",
        "trainer.limit_eval_batches=1",
    ]
    single = [sys.executable, "train.py", *_common(ff_fixture, tmp_path), *curriculum, "run_name=single"]
    proc = subprocess.run(
        [*single, "trainer.batch_size=16"], cwd=REPO, env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = [
        *torchrun_two(),
        "train.py",
        *_common(ff_fixture, tmp_path),
        *curriculum,
        "run_name=ddp",
        "trainer.batch_size=8",
    ]
    proc = subprocess.run(ddp, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_checkpoint(tmp_path / "runs/single/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "runs/ddp/checkpoints/last.pt")
    ha, hb = a["extra"]["hardness"], b["extra"]["hardness"]
    assert a["extra"]["k"] == b["extra"]["k"] < len(ha["d"])  # the pool shrank, to the same size
    assert torch.equal(ha["seen"], hb["seen"]) and bool(ha["seen"].all())
    assert torch.allclose(ha["d"], hb["d"], atol=1e-6) and torch.allclose(
        ha["history"], hb["history"], atol=1e-6
    )
    assert ha["history"].shape[0] == 4 and not torch.equal(ha["history"][0], ha["history"][-1])
