"""Experiment logging: Weights & Biases (offline unless asked) or nothing beyond the local files.

A W&B failure (import, init or a log call) is reported once and never stops training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

log = logging.getLogger(__name__)


class NullLogger:
    """Logs nothing; the run directory still gets its log file and results.json."""

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record scalars."""

    def log_roc(self, name: str, labels: np.ndarray, probs: np.ndarray) -> None:
        """Record a ROC curve."""

    def summary(self, values: Mapping) -> None:
        """Record final values."""

    def finish(self) -> None:
        """Close the run."""


class WandbLogger(NullLogger):
    """Weights & Biases run; each call is guarded so a W&B error only disables logging."""

    def __init__(self, cfg: Mapping, config: dict, run_dir: str, name: str) -> None:
        self.run = None
        try:
            import wandb

            self.wandb = wandb
            self.run = wandb.init(
                project=cfg.get("project", "detect"),
                entity=cfg.get("entity"),
                mode=cfg.get("mode", "offline"),
                group=cfg.get("group"),
                tags=list(cfg.get("tags") or []),
                dir=run_dir,
                name=name,
                config=config,
                reinit="finish_previous",
            )
        except Exception as err:  # noqa: BLE001 - a tracking failure must never stop training
            self._fail("init", err)

    def _fail(self, what: str, err: Exception) -> None:
        log.warning("W&B %s failed (%s); continuing without W&B", what, err)
        self.run = None

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run is None:
            return
        try:
            self.run.log(dict(metrics), step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("log", err)

    def log_roc(self, name: str, labels: np.ndarray, probs: np.ndarray) -> None:
        if self.run is None or len(np.unique(labels)) < 2:
            return
        try:
            probas = np.stack([1 - probs, probs], axis=1)
            plot = self.wandb.plot.roc_curve(
                labels.astype(int), probas, labels=["real", "fake"], classes_to_plot=[1]
            )
            self.run.log({f"roc/{name}": plot})
        except Exception as err:  # noqa: BLE001
            self._fail("ROC logging", err)

    def summary(self, values: Mapping) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update(dict(values))
        except Exception as err:  # noqa: BLE001
            self._fail("summary", err)

    def finish(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as err:  # noqa: BLE001
            self._fail("finish", err)


def build_logger(cfg: Mapping, config: dict, run_dir: str, name: str, is_main: bool) -> NullLogger:
    """``logger.kind``: ``wandb`` or ``none``; only the main process logs."""
    kind = cfg.get("kind", "none")
    if kind not in ("wandb", "none"):
        raise ValueError(f"logger.kind={kind!r}; use logger=wandb or logger=none")
    if kind == "none" or not is_main:
        return NullLogger()
    return WandbLogger(cfg, config, run_dir, name)
