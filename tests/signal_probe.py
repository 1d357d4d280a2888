"""A baseline that sends itself a signal at a chosen step (``DETECT_TEST_SIGNAL=USR2:8``), so a test can
preempt a run at an exact point of epoch 2 through the command line."""

from __future__ import annotations

import os
import signal

from detect.methods.baseline import Baseline


class SignalAt(Baseline):
    """``Baseline`` whose ``fit_step`` of global step N sends the signal named in ``DETECT_TEST_SIGNAL``."""

    def fit_step(self, batch, ctx):
        out = super().fit_step(batch, ctx)
        spec = os.environ.get("DETECT_TEST_SIGNAL")
        if spec:
            name, step = spec.split(":")
            if ctx.global_step == int(step):
                os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
        return out
