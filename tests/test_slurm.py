"""The Slurm path against a real scheduler: a single-node cluster (``tests/slurm_cluster.py``) started once
per session, sweeps through ``hydra/launcher=slurm``, requeue and preemption, data-parallel tasks, failures.

Skipped, with the reason, where Slurm's packages are missing or the tests do not run as root."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster
import torch
from helpers import offline_env, probe_run_overrides

from detect.engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

# the README's GPU-cluster settings, scaled to this machine's CPUs
CPU_LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=10",
    "hydra.launcher.array_parallelism=2",
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


def _env(cluster=None) -> dict:
    """Offline, one thread; the cluster's SLURM_CONF when given; tests/ importable (scripted methods)."""
    return offline_env(cluster.env() if cluster else None)


def _train_args(data: Path, out: Path) -> list[str]:
    """A seconds-long run: the linear probe of tests/scripted.py on the tiny FF++ fixture."""
    return probe_run_overrides(data, out)


def _sweep(cluster, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", "-m", *CPU_LAUNCHER, *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(cluster), capture_output=True, text=True, timeout=timeout)


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            raise AssertionError(f"{path} not written (launcher exit {proc.poll()}): {out[-3000:]}")
        time.sleep(0.5)


def _launch(cluster, args: list[str], launcher: list[str] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "train.py", "-m", *CPU_LAUNCHER, *launcher, *args]
    return subprocess.Popen(
        cmd, cwd=REPO, env=_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


# A run long enough to be interrupted: 6 steps of batch 8 per epoch, each step held 0.3 s until the job
# is requeued (then it runs at full speed). The sleep changes no weight: the reference runs without it.
SLOW = ["trainer.batch_size=8", "+method.step_sleep_s_until_requeue=0.3"]


class Reference:
    """The uninterrupted run (one plain process, no Slurm), started at once and read when needed."""

    def __init__(self, data: Path, out: Path, epochs: int, batch_size: int = 8) -> None:
        self.ckpt = out / f"runs/reference_{epochs}/checkpoints/last.pt"
        cmd = [
            sys.executable,
            "train.py",
            *_train_args(data, out),
            f"trainer.batch_size={batch_size}",
            f"trainer.epochs={epochs}",
            f"run_name=reference_{epochs}",
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def checkpoint(self) -> dict:
        out, _ = self.proc.communicate(timeout=300)
        assert self.proc.returncode == 0, out[-3000:]
        return load_checkpoint(self.ckpt)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _job_ids(sweep: Path) -> list[str]:
    """The Slurm job ids of a sweep, from submitit's log folders (``<id>`` or ``<array id>_<index>``)."""
    return sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+(_\d+)?", p.name))


def _resumed_at(run_dir: Path) -> int:
    """The epoch the (single) resume of ``run_dir`` started from, read from its train.log."""
    log = (run_dir / "train.log").read_text()
    found = re.findall(rf"resumed from {re.escape(str(run_dir))}/checkpoints/\S+ at epoch (\d+)", log)
    assert len(found) == 1, log[-3000:]
    return int(found[0])


def _max_weight_difference(a: dict, b: dict) -> float:
    assert a["global_step"] == b["global_step"] > 0 and a["epoch"] == b["epoch"]
    return max(float((a["method"][k] - b["method"][k]).abs().max()) for k in a["method"])


def _wait_for_state(cluster, job: str, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.run("squeue", "--states=all", "--array", "--noheader", "--format=%i %T", check=False)
        if f"{job} {state}" in out.splitlines():
            return
        time.sleep(0.5)
    raise TimeoutError(f"job {job} not {state} after {timeout}s: {out}")


def _elapsed_s(cluster, job: str) -> int:
    """The job's elapsed run time in seconds (squeue's %M: [D-][H:]M:SS)."""
    text = cluster.run("squeue", "--noheader", "--jobs", job, "--format=%M").strip()
    days, _, clock = text.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + 86400 * int(days or 0)


@pytest.mark.timeout(300)
def test_two_point_sweep_runs_as_one_job_array(slurm, ff_fixture, tmp_path):
    proc = _sweep(
        slurm, [*_train_args(ff_fixture, tmp_path), "trainer.epochs=1", "run_name=sweep", "seed=0,1"]
    )
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
    assert f"Slurm job array {array}; logs in {sweep}/.submitit/<job id>/" in out
    submission = (sweep / f".submitit/{array}/{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%2" in submission and "#SBATCH --partition=debug" in submission
    (tmp_path / "launcher.out").write_text(out)
    # no accounting here: sacct is asked once, then squeue, and nothing warns
    assert "Bypassing sacct error" not in out and "sacct failed" not in out, out[-3000:]
    assert out.count("Slurm accounting storage is disabled: reading job states from squeue") == 1, out[-3000:]


@pytest.mark.timeout(300)
def test_failed_jobs_are_named_by_id_and_log(slurm, ff_fixture, tmp_path):
    """Point 0 raises inside its job (missing data); point 1 is cancelled while it trains, leaving no
    result. Without accounting, submitit alone would wait for ever on the cancelled job (its state stays
    UNKNOWN); the launcher reads CANCELLED from squeue and names both jobs, their states and logs."""
    missing = tmp_path / "no_data"
    args = [*_train_args(ff_fixture, tmp_path), "trainer.epochs=200", "run_name=failing"]
    args = [
        a if not a.startswith("paths.data_dir=") else f"paths.data_dir={missing},{ff_fixture}" for a in args
    ]
    proc = _launch(slurm, args)
    try:
        sweep = tmp_path / "multirun/failing"
        deadline = time.monotonic() + 120
        while not list(sweep.glob(".submitit/*_1/*_log.out")) and time.monotonic() < deadline:
            time.sleep(0.5)
        job = next(sweep.glob(".submitit/*_1")).name
        _wait_for_state(slurm, job, "RUNNING")
        slurm.run("scancel", job)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    array = job.split("_")[0]
    (tmp_path / "launcher.out").write_text(out)
    for num, what in ((0, "raised FileNotFoundError"), (1, "ended without a result (state CANCELLED)")):
        log = sweep / f".submitit/{array}_{num}/{array}_{num}_0_log.err"
        assert f"Slurm job {array}_{num} {what} for overrides" in out, out[-3000:]
        assert f"its log: {log}" in out
    assert str(missing) in out  # the task's own error comes with it
    assert "Bypassing sacct error" not in out


@pytest.mark.timeout(300)
def test_scontrol_requeue_continues_in_the_same_run_directory(slurm, ff_fixture, tmp_path):
    """``scontrol requeue`` of the running job (as an administrator or a node failure would): Slurm kills
    it (SIGTERM, SIGKILL after KillWait) and queues it again; the new start re-enters the same
    ``<sweep dir>/0`` and continues from its last checkpoint (epoch-end today; the mid-epoch one once
    signals save it), ending with the uninterrupted run's weights."""
    epochs = 6
    reference = Reference(ff_fixture, tmp_path, epochs)
    proc = _launch(
        slurm, [*_train_args(ff_fixture, tmp_path), *SLOW, f"trainer.epochs={epochs}", "run_name=rq"]
    )
    run_dir = tmp_path / "multirun/rq/0"
    try:
        _wait_for_file(run_dir / "checkpoints/last.pt", proc)
        job = _job_ids(tmp_path / "multirun/rq")[0]
        slurm.run("scontrol", "requeue", job)
        out, _ = proc.communicate(timeout=240)
        expected = reference.checkpoint()
    finally:
        if proc.poll() is None:
            proc.kill()
        reference.close()
    assert proc.returncode == 0, out[-3000:]
    start = _resumed_at(run_dir)
    assert 1 <= start < epochs
    assert "Restarts=1" in slurm.run("scontrol", "show", "job", job)
    done = load_checkpoint(run_dir / "checkpoints/last.pt")
    diff = _max_weight_difference(done, expected)
    print(f"scontrol requeue: resumed at epoch {start} of {epochs}; max |weight difference| {diff:.3g}")
    assert diff == 0.0


@pytest.mark.timeout(360)
def test_time_limit_signal_requeues_and_resumes_to_the_uninterrupted_weights(slurm, ff_fixture, tmp_path):
    """The scheduler's own time-limit path: the job runs under the launcher's ``signal_delay_s=90``
    (``sbatch --signal=USR2@90``). Once its first checkpoint is written, the test cuts its time limit to
    the next whole minute after 60 s from now (Slurm keeps limits in minutes), shorter than the training
    left; slurmctld, which checks limits every 30 s and warns up to 30 s early, then sends USR2 itself
    within 30 s, before the limit. submitit checkpoints the launcher's callable and requeues the job
    (``scontrol requeue``, counted as a time-out). While the job waits to start again (``cred_expire``,
    5 s here) the test gives the limit back (10 minutes), else the new start would be warned at once.
    The job restarts in the same ``<sweep dir>/0`` and ``resume=auto`` continues from the last checkpoint
    (epoch-end today; the mid-epoch one once the signal saves it); the final weights equal the
    uninterrupted run's."""
    epochs = 30  # held >= 1.8 s each until the requeue: far more than the <= 30 s the warning may take
    reference = Reference(ff_fixture, tmp_path, epochs)
    launcher = [
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.signal_delay_s=90",
        "hydra.launcher.max_num_timeout=3",
    ]
    args = [*_train_args(ff_fixture, tmp_path), *SLOW, f"trainer.epochs={epochs}", "run_name=preempt"]
    sweep = tmp_path / "multirun/preempt"
    run_dir = sweep / "0"
    proc = _launch(slurm, args, launcher)
    try:
        _wait_for_file(run_dir / "checkpoints/last.pt", proc)
        (job,) = _job_ids(sweep)
        limit_min = _elapsed_s(slurm, job) // 60 + 2  # 60-120 s left: within the 90 + 30 s warning
        slurm.run("scontrol", "update", f"JobId={job}", f"TimeLimit={limit_min}")
        cut = time.monotonic()
        deadline = time.monotonic() + 90
        while "Restarts=1" not in slurm.run("scontrol", "show", "job", job):  # requeued
            assert time.monotonic() < deadline, "no USR2 requeue within 90 s of cutting the time limit"
            time.sleep(0.3)
        warned_after = time.monotonic() - cut
        slurm.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")
        out, _ = proc.communicate(timeout=240)
        expected = reference.checkpoint()
    finally:
        if proc.poll() is None:
            proc.kill()
        reference.close()
    assert proc.returncode == 0, out[-3000:]
    submission = (sweep / f".submitit/{job}/{job}_submission.sh").read_text()
    assert "#SBATCH --signal=USR2@90" in submission
    # the scheduler's record: one restart (without a USR2 handler requeuing it, the job would have
    # ended at its limit in state TIMEOUT)
    assert "Restarts=1" in slurm.run("scontrol", "show", "job", job)
    start = _resumed_at(run_dir)
    assert 1 <= start < epochs
    done = load_checkpoint(run_dir / "checkpoints/last.pt")
    diff = _max_weight_difference(done, expected)
    res = json.loads((run_dir / "results.json").read_text())
    assert res["run_dir"] == str(run_dir)
    print(
        f"time limit cut to {limit_min} min, signal delay 90 s: requeued {warned_after:.0f} s later; "
        f"{start} epochs before the requeue, {epochs - start} after; max |weight difference| {diff:.3g}"
    )
    assert diff == 0.0


@pytest.mark.timeout(300)
def test_two_tasks_train_data_parallel_like_one_process_with_twice_the_batch(slurm, ff_fixture, tmp_path):
    """``tasks_per_node=2``: one job, two tasks (srun) in one allocation, each a gloo process on CPU with
    batch 8; gradients are averaged, so the weights equal one process's with batch 16, step for step."""
    reference = Reference(ff_fixture, tmp_path, epochs=2, batch_size=16)
    launcher = ["hydra.launcher.tasks_per_node=2"]
    args = [*_train_args(ff_fixture, tmp_path), "trainer.batch_size=8", "trainer.epochs=2", "run_name=ddp"]
    proc = _launch(slurm, args, launcher)
    try:
        out, _ = proc.communicate(timeout=240)
        expected = reference.checkpoint()
    finally:
        if proc.poll() is None:
            proc.kill()
        reference.close()
    assert proc.returncode == 0, out[-3000:]
    sweep = tmp_path / "multirun/ddp"
    (job,) = _job_ids(sweep)
    assert "NumTasks=2" in slurm.run("scontrol", "show", "job", job)
    logs = "".join(p.read_text() for p in (sweep / ".submitit" / job).glob("*_log.*"))
    assert "rank 1 of 2 (gloo)" in logs
    done = load_checkpoint(sweep / "0/checkpoints/last.pt")
    assert done["global_step"] == expected["global_step"] > 0
    for k in done["method"]:
        assert torch.allclose(done["method"][k], expected["method"][k], atol=1e-6), k
