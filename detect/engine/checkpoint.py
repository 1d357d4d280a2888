"""Checkpoints: written atomically (temp file + rename), loaded with ``weights_only=True``.

A checkpoint holds the method's weights, every optimiser and schedule, the fp16 scaler, the method's
extra state, RNG states, counters, the selection state and the resolved config.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from detect.utils.io import atomic_write

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Save ``state`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``); a missing file is named in the error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def find_resume(run_dir: str | os.PathLike, resume: str) -> Path | None:
    """The checkpoint to resume from: ``auto`` → ``run_dir/checkpoints/last.pt`` if present,
    ``never`` → None, otherwise ``resume`` is a path that must exist."""
    if resume in (None, "never", False, "false", "False"):
        return None
    if resume == "auto":
        p = Path(run_dir) / "checkpoints" / LAST
        return p if p.is_file() else None
    p = Path(str(resume))
    if not p.is_file():
        raise FileNotFoundError(f"resume={resume}: no such checkpoint; use resume=auto or resume=never")
    return p
