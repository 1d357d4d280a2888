"""What ``train.py`` and ``eval.py`` call inside their ``@hydra.main`` wrappers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _environment() -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def run_train(cfg: DictConfig) -> float | None:
    """Train in the Hydra run directory; returns the selection metric's best value (for sweepers)."""
    _environment()
    from detect.engine.trainer import train

    hc = HydraConfig.get()
    choices = {
        k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items() if not k.startswith("hydra")
    }
    results = train(cfg, Path(hc.runtime.output_dir), choices)
    return results.get("best_val")


def run_eval(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt`` on the composed protocol's test sets."""
    _environment()
    from detect.engine.scoring import evaluate_checkpoint

    hc = HydraConfig.get()
    return evaluate_checkpoint(cfg, Path(hc.runtime.output_dir))
