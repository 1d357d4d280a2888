"""The Slurm path against a real scheduler: a single-node cluster (``tests/slurm_cluster.py``) started once
per session, sweeps through ``hydra/launcher=slurm``, requeue and preemption, data-parallel tasks, failures.

Skipped, with the reason, where Slurm's packages are missing or the tests do not run as root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slurm_cluster

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.slurm

# the README's GPU-cluster settings, scaled to this machine's CPUs
CPU_LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=10",
]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running single-node cluster; its daemons stop at the end of the session."""
    reason = slurm_cluster.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


def _env(cluster) -> dict:
    env = cluster.env()
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1")
    return env


def _train_args(data: Path, out: Path) -> list[str]:
    """A seconds-long run: the linear probe of tests/scripted.py on the tiny FF++ fixture."""
    return [
        "data=real",
        f"paths.data_dir={data}",
        f"paths.output_dir={out}",
        "logger=none",
        "backbone=tiny",
        "backbone.input_size=32",
        "runtime.num_workers=0",
        "trainer.progress=false",
        "augment=none",
        "dataset.manipulations=[DF,F2F]",
        "protocol.frames.train=4",
        "method._target_=scripted.LinearProbe",
        "~method.loss",
        "~method.focal_gamma",
        "~method.dropout",
    ]


def _sweep(cluster, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", "-m", *CPU_LAUNCHER, *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(cluster), capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(300)
def test_two_point_sweep_runs_as_one_job_array(slurm, ff_fixture, tmp_path):
    proc = _sweep(slurm, [*_train_args(ff_fixture, tmp_path), "trainer.epochs=1", "run_name=sweep", "seed=0,1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "multirun/sweep"
    for num, seed in ((0, 0), (1, 1)):
        res = json.loads((sweep / str(num) / "results.json").read_text())
        assert res["run_dir"] == str(sweep / str(num)) and res["config"]["seed"] == seed
    # one array: both jobs are <array id>_<index> of the same array
    logs = sorted(p.parent.name for p in (sweep / ".submitit").glob("*/*_log.out"))
    array = logs[0].split("_")[0]
    assert logs == [f"{array}_0", f"{array}_1"]
    out = proc.stdout + proc.stderr
    assert f"Slurm job array {array}; logs in {sweep}/.submitit/" in out
    assert "Bypassing sacct error" not in out and "WARNING" not in out, out[-3000:]
