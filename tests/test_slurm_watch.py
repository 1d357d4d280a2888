"""The launcher's Slurm job watcher and the throwaway cluster's skip reasons, without a cluster: fake
``sacct``/``squeue`` on PATH answer as Slurm 22.05 does (the real ones run in tests/test_slurm.py)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import slurm_cluster
from submitit.slurm.slurm import SlurmJob

from detect.engine.slurm_jobs import GONE, SqueueFallbackWatcher, squeue_fallback

SACCT = """#!/bin/sh
echo called >> "$FAKE_DIR/sacct.calls"
if [ "$FAKE_SACCT" = disabled ]; then echo "Slurm accounting storage is disabled" >&2; exit 1; fi
echo "sacct: error: Problem talking to the database: Connection refused" >&2; exit 1
"""
SQUEUE = """#!/bin/sh
test -s "$FAKE_DIR/squeue.out" || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
cat "$FAKE_DIR/squeue.out"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    for name, text in (("sacct", SACCT), ("squeue", SQUEUE)):
        path = tmp_path / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    return tmp_path


def test_without_accounting_states_come_from_squeue_and_nothing_warns(fake_slurm, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_SACCT", "disabled")
    caplog.set_level(logging.INFO)
    watcher = SqueueFallbackWatcher()
    (fake_slurm / "squeue.out").write_text("7_0|RUNNING|node1\n7_1|PENDING|\n")
    watcher.register_job("7_0")
    watcher.register_job("7_1")
    watcher.update()
    assert watcher.get_state("7_0", mode="cache") == "RUNNING" and not watcher.is_done("7_1", mode="cache")
    (fake_slurm / "squeue.out").write_text("7_0|COMPLETED|node1\n7_1|CANCELLED|node1\n")
    for _ in range(3):
        watcher.update()
    assert watcher.is_done("7_0", mode="cache") and watcher.get_state("7_1", mode="cache") == "CANCELLED"
    assert (fake_slurm / "sacct.calls").read_text().count("called") == 1  # asked once, then squeue
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if "reading job states from squeue" in r.getMessage()]
    assert len(infos) == 1


def test_a_job_squeue_has_forgotten_has_ended(fake_slurm, monkeypatch):
    """squeue lists finished jobs for MinJobAge seconds only; a job gone from it is over (its result file,
    or its absence, says how), instead of staying UNKNOWN and holding the sweep for ever."""
    monkeypatch.setenv("FAKE_SACCT", "disabled")
    watcher = SqueueFallbackWatcher()
    watcher.register_job("9")
    watcher.update()
    assert watcher.get_state("9", mode="cache") == GONE and watcher.is_done("9", mode="cache")


def test_other_sacct_errors_still_warn_once(fake_slurm, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_SACCT", "error")
    watcher = SqueueFallbackWatcher()
    watcher.register_job("11")
    for _ in range(4):
        watcher.update()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Connection refused" in warnings[0]
    assert not watcher.use_squeue and watcher.get_state("11", mode="cache") == "UNKNOWN"


def test_squeue_fallback_is_swapped_in_for_the_block_only():
    before = SlurmJob.watcher
    with squeue_fallback() as watcher:
        assert SlurmJob.watcher is watcher and isinstance(watcher, SqueueFallbackWatcher)
    assert SlurmJob.watcher is before


def test_cluster_skip_reasons(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_cluster, "_search_path", lambda: str(tmp_path))
    reason = slurm_cluster.unavailable()
    assert reason.startswith("Slurm is not installed (missing munged, slurmctld, slurmd, sbatch")
    for name in (*slurm_cluster.DAEMONS, *slurm_cluster.CLIENTS):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 0)
    assert slurm_cluster.unavailable() is None
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    assert "must run as root" in slurm_cluster.unavailable()
