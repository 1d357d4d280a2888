"""Resume compatibility: a run resumes only under the config it was started with.

Deny by default: the resolved config saved in the checkpoint is compared key by key with the new one;
any difference refuses the resume, listing each key with both values, before anything in the run
directory is written. Only keys that cannot change the trained weights or the metrics may differ
(:data:`MAY_DIFFER`): logging, progress bars, the evaluation batch size, pinned memory, CPU threads and
``trainer.max_steps`` (a stop budget: schedules are built from the epochs and steps per epoch, so a run
stopped by it continues exactly as an unstopped one).
``runtime.num_workers`` is not among them: each loader worker seeds its augmentations from its worker id,
so the number of workers changes the augmentations drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAY_DIFFER: tuple[str, ...] = (
    "logger",
    "trainer.progress",
    "trainer.log_every_n_steps",
    "trainer.eval_batch_size",
    "trainer.max_steps",
    "runtime.pin_memory",
    "runtime.threads",
    "resume",
    "run_name",
)
"""Keys (and everything under them) a resumed run may change."""


class ResumeRefused(ValueError):
    """The new config differs from the checkpoint's in keys that change results."""


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        if not node and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _exempt(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allowed)


def config_differences(
    saved: Mapping, new: Mapping, allowed: tuple[str, ...] = MAY_DIFFER
) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, new value)`` for every differing leaf outside ``allowed``; a key missing on
    one side shows as ``<absent>``. Synthetic data's ``data.root`` is derived (from the generator
    settings, compared themselves) and skipped."""
    a, b = _flatten(saved), _flatten(new)
    absent = "<absent>"
    skip = ("data.root",) if (new.get("data") or {}).get("kind") == "synthetic" else ()
    out = []
    for key in sorted(set(a) | set(b)):
        if _exempt(key, allowed) or key in skip:
            continue
        va, vb = a.get(key, absent), b.get(key, absent)
        if va != vb:
            out.append((key, va, vb))
    return out


def normalised(cfg) -> dict:
    """The resolved config as the trainer saves it (``paths.*`` made absolute)."""
    import copy

    from hydra.utils import to_absolute_path
    from omegaconf import OmegaConf, open_dict

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key in list(cfg.get("paths") or {}):  # before resolving: keys interpolating them follow
            cfg.paths[key] = to_absolute_path(str(cfg.paths[key]))
    return OmegaConf.to_container(cfg, resolve=True)


def check_resume(cfg, run_dir: str | os.PathLike) -> Path | None:
    """Refuse (:class:`ResumeRefused`) a resume whose config differs from the checkpoint's; returns the
    checkpoint that will be resumed, or None. Reads only; writes nothing."""
    from detect.engine.checkpoint import find_resume, load_checkpoint, require_run_checkpoint

    path = find_resume(run_dir, str(cfg.get("resume", "never")))
    if path is None:
        return None
    saved = require_run_checkpoint(load_checkpoint(path, "cpu"), path)["config"]
    diffs = config_differences(saved, normalised(cfg))
    if diffs:
        shown = "\n".join(f"  {k}: checkpoint {va!r} -> now {vb!r}" for k, va, vb in diffs[:40])
        more = f"\n  ... and {len(diffs) - 40} more" if len(diffs) > 40 else ""
        raise ResumeRefused(
            f"refusing to resume {path}: the config differs from the one the run was started with in "
            f"{len(diffs)} key(s) that change results:\n{shown}{more}\n"
            "Start a new run instead (run_name=<new name>), or restart this one from scratch with "
            "resume=never (its checkpoints will be overwritten). Nothing in the run directory was changed."
        )
    return path
