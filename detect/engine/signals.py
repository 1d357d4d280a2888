"""Preemption: SIGTERM and the scheduler's pre-timeout signal stop training at the next step boundary.

Slurm sends ``--signal=USR2@<seconds>`` before a time limit (submitit's launcher submits with it and
installs its own USR2/TERM handlers, which call the launcher's ``checkpoint()`` and requeue the job) and
SIGTERM on preemption or ``scancel``. :class:`StopGuard` records such a signal instead of dying in the
middle of a step; the trainer finishes the step, writes a mid-epoch checkpoint, logs one line and calls
:meth:`StopGuard.hand_over`, which restores the previous handlers and passes the signal on to them (so
submitit's handler requeues through the launcher's ``checkpoint()``; nothing of submitit's is replaced).
With no Python handler before ours, the process exits with ``128 + signal`` as an unhandled signal would.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class StopGuard:
    """Defers the stop signals to the trainer's next step boundary while installed."""

    def __init__(self, signals: Iterable[int] = STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _record(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum

    def install(self) -> StopGuard:
        """Install the handlers (main thread only; elsewhere a no-op)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)
        return self

    def uninstall(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def hand_over(self) -> None:
        """Restore the previous handlers and deliver the recorded signal to the one it had: submitit's
        handler checkpoints through the launcher and requeues (it exits itself); a handler that returns,
        or none, ends the process with ``128 + signal``."""
        signum = self.received
        previous = self._previous.get(signum)
        self.uninstall()
        if signum is None:
            return
        if callable(previous):
            previous(signum, None)
        raise SystemExit(128 + signum)


def announce_preemption(signame: str, epoch: int, step: int, path: str) -> None:
    """The one line a preempted run logs."""
    log.warning(
        "%s received: stopped after epoch %d step %d, checkpoint %s written; rerun the same command "
        "(or let the scheduler requeue) to resume from it",
        signame,
        epoch,
        step,
        path,
    )
