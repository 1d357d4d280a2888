"""Checkpoints: written atomically (temp file + rename), loaded with ``weights_only=True``.

A checkpoint holds the method's weights, every optimiser and schedule, the fp16 scaler, the method's
extra state, RNG states, counters, the selection state and the resolved config.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from detect.utils.io import atomic_write
from detect.utils.torch_files import UnreadableFile, load_torch_file

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Save ``state`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``). A missing, empty, truncated or foreign file is
    named in the error (:class:`detect.utils.torch_files.UnreadableFile`)."""
    return load_torch_file(path, map_location, "checkpoint")


def require_run_checkpoint(state, path: str | os.PathLike) -> dict:
    """``state`` if it is a checkpoint written by this runner (``method`` weights and ``config``)."""
    if not isinstance(state, dict) or "method" not in state or "config" not in state:
        keys = sorted(map(str, state))[:12] if isinstance(state, dict) else type(state).__name__
        raise UnreadableFile(
            f"{path} is not a detect checkpoint (holds {keys}, no 'method' and 'config' entries); "
            "backbone weights go in backbone.pretrained=<file>"
        )
    return state


def describe(state: dict) -> str:
    """``method=<name> backbone=<name>`` of a checkpoint, from its saved config."""
    cfg = state.get("config") or {}
    method = (cfg.get("method") or {}).get("name") or (cfg.get("method") or {}).get("_target_", "?")
    return f"method={method} backbone={(cfg.get('backbone') or {}).get('name', '?')}"


def load_method_state(method: torch.nn.Module, state: dict, path: str | os.PathLike, wanted: str) -> None:
    """``method.load_state_dict(state['method'], strict=True)``; a mismatch names what the checkpoint
    holds (``describe``) against ``wanted`` (what this run builds)."""
    require_run_checkpoint(state, path)
    try:
        method.load_state_dict(state["method"], strict=True)
    except RuntimeError as err:
        detail = str(err).strip().splitlines()
        raise ValueError(
            f"checkpoint {path} holds {describe(state)}, but this run builds {wanted}: its weights do not "
            f"fit ({detail[1].strip() if len(detail) > 1 else detail[0][:200]}). Use a checkpoint of the "
            "same method and backbone, or select the checkpoint's method= and backbone="
        ) from None


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
