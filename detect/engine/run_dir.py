"""Exclusive run directories: one process owns ``<run dir>`` at a time.

``lock_run_dir`` takes an advisory ``flock`` on ``<run dir>/.lock`` before anything else is written
there; the OS releases it when the process ends, however it ends, so a crashed or preempted run never
leaves a stale lock. A second run on a held directory stops at once with the directory and the holder's
pid and host named, and changes none of the directory's files. Hydra's own ``.hydra/`` snapshot is off
(``hydra.output_subdir: null``); ``write_hydra_snapshot`` writes it after the lock (and after the resume
check), so a refused run cannot overwrite the owner's saved config.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from detect.utils.io import atomic_write_text

LOCK_NAME = ".lock"
_HELD: dict[str, object] = {}


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory."""


class RunDirLockUnsupported(RuntimeError):
    """The filesystem refuses advisory locks."""


def process_rank() -> int:
    """This process's global rank from torchrun's ``RANK`` or Slurm's ``SLURM_PROCID`` (0 when single)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1:
        return int(os.environ.get("SLURM_PROCID", "0"))
    return 0


def lock_run_dir(run_dir: str | os.PathLike) -> Path:
    """Hold ``run_dir`` exclusively for the rest of this process; returns the lock file's path.

    Raises :class:`RunDirBusy` naming the holder, or :class:`RunDirLockUnsupported` where the filesystem
    has no locks. Idempotent within one process."""
    run_dir = Path(run_dir).resolve()
    key = str(run_dir)
    if key in _HELD:
        return run_dir / LOCK_NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the process's lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown process"
        fh.close()
        raise RunDirBusy(
            f"run directory {run_dir} is in use by another run ({holder}); wait for it to finish, or "
            "give this run its own run_name=<name> (or leave run_name unset for a fresh one)"
        ) from None
    except OSError as err:
        fh.close()
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise RunDirLockUnsupported(
                f"cannot lock the run directory {run_dir}: the filesystem refuses file locks ({err}); "
                "put paths.output_dir on a filesystem with locks (a local disk, or NFS with lockd)"
            ) from err
        raise
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    fh.flush()
    _HELD[key] = fh
    return path


def release_run_dir(run_dir: str | os.PathLike) -> None:
    """Release a lock taken by :func:`lock_run_dir` in this process (tests; the OS does it at exit)."""
    fh = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fh is not None:
        fh.close()


def write_hydra_snapshot(run_dir: str | os.PathLike, cfg: DictConfig) -> None:
    """Write ``.hydra/{config,hydra,overrides}.yaml`` as Hydra would, atomically (call after the lock)."""
    from hydra.core.hydra_config import HydraConfig

    out = Path(run_dir) / ".hydra"
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        atomic_write_text(out / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})))
        overrides = OmegaConf.to_container(hc.overrides.task)
        atomic_write_text(out / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
