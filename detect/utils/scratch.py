"""Temporary work folders that a killed process cannot leave behind for good, and worker processes that
do not outlive their parent.

``make_scratch_dir`` creates a temporary folder and holds an advisory lock on ``<folder>/.owner`` for the
life of the process (the OS drops it when the process dies, however it dies); ``remove_stale_scratch``,
called on the next start, deletes every such folder whose lock nobody holds, leaving the ones a live
process (another run sharing the cache) is still filling. ``exit_with_parent`` is a pool initializer: a
worker ends itself when its parent process is gone (Linux ``PR_SET_PDEATHSIG`` plus a polling thread).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

OWNER = ".owner"
_HELD: list = []


def make_scratch_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder ``<parent>/<prefix>XXXX`` locked by this process until it exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fh = open(path / OWNER, "w", encoding="utf-8")  # noqa: SIM115 - held for the process's lifetime
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _HELD.append(fh)
    return path


def remove_stale_scratch(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Delete ``<parent>/<prefix>*`` folders no live process holds; returns what was removed."""
    removed = []
    for path in sorted(Path(parent).glob(f"{prefix}*")):
        if not path.is_dir():
            continue
        owner = path / OWNER
        try:
            fh = open(owner, "a", encoding="utf-8")  # noqa: SIM115
        except OSError:
            continue  # no owner file yet (just created) or unreadable: leave it
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue  # a live process is filling it
        shutil.rmtree(path, ignore_errors=True)
        fh.close()
        removed.append(path)
    return removed


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """In a worker process: end it when ``parent_pid`` dies (SIGKILL included)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_s)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)
