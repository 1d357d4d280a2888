"""Watching Slurm jobs from the submitit launcher, with or without Slurm's accounting database.

submitit asks ``sacct`` for job states. Where accounting storage is disabled (small clusters, the tests'
single-node cluster) every call fails with "Slurm accounting storage is disabled", submitit logs a
three-line "Bypassing sacct error" warning at each poll, and a job that dies without writing its result
(killed at its time limit, out of memory, cancelled) stays "UNKNOWN" for ever, so the sweep waits for
ever. ``SqueueFallbackWatcher`` asks ``sacct`` until it answers that accounting is disabled, then reads the
states from ``squeue --states=all`` (which lists finished jobs for ``MinJobAge`` seconds) and says so once;
other ``sacct``/``squeue`` errors are still logged, each distinct message once. ``describe_failure``
names a failed job by its Slurm id, state and log files.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

log = logging.getLogger(__name__)

ACCOUNTING_DISABLED = "accounting storage is disabled"
GONE = "NOT_IN_SQUEUE"  # left squeue's memory (MinJobAge) before we saw its final state; it has ended


class SqueueFallbackWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher, reading ``squeue`` where ``sacct`` has no accounting to read."""

    def __init__(self, delay_s: int = 600) -> None:
        super().__init__(delay_s=delay_s)
        self.use_squeue = False
        self.reported: set[str] = set()

    def _report_once(self, message: str) -> None:
        if message not in self.reported:
            self.reported.add(message)
            log.warning(message)

    def _pending_ids(self) -> list[str]:
        return sorted({x.split("_")[0] for x in self._registered - self._finished})

    def update(self) -> None:
        ids = self._pending_ids()
        if not ids:
            return
        self._num_calls += 1
        if not self.use_squeue:
            command = self._make_command()
            proc = subprocess.run(command, capture_output=True, text=True) if command else None
            if proc is not None and proc.returncode == 0:
                self._info_dict.update(self.read_info(proc.stdout))
            elif proc is not None and ACCOUNTING_DISABLED in proc.stderr:
                self.use_squeue = True
                log.info(
                    "Slurm accounting storage is disabled: reading job states from squeue instead of sacct"
                )
            elif proc is not None:
                self._report_once(
                    f"sacct failed ({proc.returncode}): {proc.stderr.strip()}; job states may lag"
                )
        if self.use_squeue:
            self._update_from_squeue(ids)
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _update_from_squeue(self, ids: list[str]) -> None:
        command = [
            "squeue",
            "--states=all",
            "--array",
            "--noheader",
            "--format=%i|%T|%N",
            "--jobs",
            ",".join(ids),
        ]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            self._report_once(f"squeue failed ({proc.returncode}): {proc.stderr.strip()}; job states may lag")
            return
        seen: set[str] = set()
        for line in proc.stdout.splitlines():
            job_id, state, nodes = (line.split("|") + ["", ""])[:3]
            seen.add(job_id.split("_")[0])
            self._info_dict[job_id] = {"JobID": job_id, "State": state, "NodeList": nodes}
        for job_id in self._registered - self._finished:
            if job_id.split("_")[0] not in seen:  # squeue forgot it: it ended (its result file tells how)
                self._info_dict[job_id] = {"JobID": job_id, "State": GONE, "NodeList": ""}


@contextlib.contextmanager
def squeue_fallback() -> Iterator[SqueueFallbackWatcher]:
    """Make every ``SlurmJob`` created inside the block report to one ``SqueueFallbackWatcher``.

    submitit keeps its watcher as a class attribute of ``SlurmJob`` (one per process, shared by all jobs
    and their per-task sub-jobs); it is swapped for the block and restored after it."""
    previous = SlurmJob.watcher
    watcher = SqueueFallbackWatcher(delay_s=previous._delay_s)
    SlurmJob.watcher = watcher
    try:
        yield watcher
    finally:
        SlurmJob.watcher = previous


def describe_failure(job, overrides: list[str], raised: BaseException | None = None) -> str:
    """One line naming a failed sweep job: Slurm job id, what happened, its overrides and log files.

    ``raised``: the exception the task raised inside the job (it came back with the job's result);
    None when the job ended without a result (killed, cancelled, out of memory, time limit without
    requeue), whose Slurm state is then read afresh."""
    paths = job.paths
    logs = [Path(paths.stderr), Path(paths.stdout)]
    where = " and ".join(str(p) for p in logs if p.exists()) or f"{logs[0]} (not written)"
    if raised is not None:
        what = f"raised {type(raised).__name__}"
    else:
        what = f"ended without a result (state {job.watcher.get_state(job.job_id, mode='force')})"
    return f"Slurm job {job.job_id} {what} for overrides {' '.join(overrides)}; its log: {where}"
