"""What ``train.py`` and ``eval.py`` call inside their ``@hydra.main`` wrappers.

Order (``detect.engine.run_dir``): validate the config → lock the run directory → check a resume against
the checkpoint's config → write ``.hydra/`` → work. A refusal at any of the first three writes nothing
and exits with one line naming the key, file or directory.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _environment() -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _refuse(err: Exception) -> SystemExit:
    """One message on stderr and exit status 2, for input the user must fix."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    return SystemExit(2)


def start_run(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    """Validate, lock ``run_dir`` (main process), check the resume, then write ``.hydra/``."""
    from detect.engine.resume_check import ResumeRefused, check_resume
    from detect.engine.run_dir import (
        RunDirBusy,
        RunDirLockUnsupported,
        lock_run_dir,
        process_rank,
        write_hydra_snapshot,
    )
    from detect.engine.schema import ConfigError, validate_config

    try:
        validate_config(cfg)
        main = process_rank() == 0
        if main:
            lock_run_dir(run_dir)
        if resume:
            check_resume(cfg, run_dir)
    except (ConfigError, RunDirBusy, RunDirLockUnsupported, ResumeRefused) as err:
        raise _refuse(err) from None
    if main:
        write_hydra_snapshot(run_dir, cfg)


def _interrupted(run_dir: Path) -> SystemExit:
    last = run_dir / "checkpoints" / "last.pt"
    kept = f"the last checkpoint {last} is kept" if last.is_file() else "no checkpoint was written yet"
    print(f"interrupted (SIGINT): {kept}; rerun the same command to resume", file=sys.stderr, flush=True)
    return SystemExit(130)


def run_train(cfg: DictConfig) -> float | None:
    """Train in the Hydra run directory; returns the selection metric's best value (for sweepers)."""
    _environment()
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    start_run(cfg, run_dir, resume=not cfg.get("phases"))
    from detect.engine.trainer import train

    choices = {
        k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items() if not k.startswith("hydra")
    }
    try:
        results = train(cfg, run_dir, choices)
    except KeyboardInterrupt:
        raise _interrupted(run_dir) from None
    return results.get("best_val")


def run_eval(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt`` on the composed protocol's test sets."""
    _environment()
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    start_run(cfg, run_dir, resume=False)
    from detect.engine.scoring import evaluate_checkpoint
    from detect.engine.trust import UntrustedTarget

    try:
        return evaluate_checkpoint(cfg, run_dir)
    except UntrustedTarget as err:
        raise _refuse(err) from None
    except KeyboardInterrupt:
        print("interrupted (SIGINT)", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
