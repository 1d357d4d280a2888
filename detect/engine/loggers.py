"""Experiment logging: Weights & Biases (offline unless asked) or nothing beyond the local files.

A W&B failure (import, init or a log call) is reported once and never stops training. Online init waits
at most ``logger.init_timeout_s`` (30 s), then the run logs offline for a later ``wandb sync``; the W&B
run id is kept in the run directory, so a resumed run continues its own W&B run.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from detect.utils.io import atomic_write_text

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


def wandb_run_id(run_dir: str | Path) -> str:
    """The W&B run id of this run directory, drawn once and kept in ``<run dir>/wandb_id.txt``, so a
    resumed or requeued run continues the same W&B run."""
    path = Path(run_dir) / "wandb_id.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    run_id = secrets.token_hex(8)
    atomic_write_text(path, run_id + "\n")
    return run_id


class WandbLogger(NullLogger):
    """Weights & Biases run; each call is guarded so a W&B error only disables logging."""

    def __init__(self, cfg: Mapping, config: dict, run_dir: str, name: str) -> None:
        self.run = None
        try:
            import wandb

            self.wandb = wandb
            mode = cfg.get("mode", "offline")
            kwargs = dict(
                project=cfg.get("project", "detect"),
                entity=cfg.get("entity"),
                group=cfg.get("group"),
                tags=list(cfg.get("tags") or []),
                dir=run_dir,
                name=name,
                config=config,
                id=wandb_run_id(run_dir),
                resume="allow",
                reinit="finish_previous",
            )
            timeout = float(cfg.get("init_timeout_s", 30))
            try:
                self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=timeout), **kwargs)
            except Exception as err:  # noqa: BLE001 - unreachable server, timeout, bad credentials
                if mode != "online":
                    raise
                log.warning(
                    "W&B online init failed within %.0fs (%s); logging offline in %s/wandb "
                    "(upload later with `wandb sync`)",
                    timeout,
                    str(err).splitlines()[0] if str(err) else type(err).__name__,
                    run_dir,
                )
                wandb.teardown()  # the failed online attempt holds the run id in this process
                self.run = wandb.init(mode="offline", **kwargs)
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
