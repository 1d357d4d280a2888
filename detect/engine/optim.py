"""Optimisers and learning-rate schedules from config.

An optimiser config is a partial ``{_target_: torch.optim.X, _partial_: true, lr: ...}``; a schedule
config names one of ``none | step | multistep | cosine | exponential`` and its ``interval``: ``step``
(advanced after every iteration, lengths counted in iterations) or ``epoch`` (after every epoch).
DeepfakeBench's defect 2 steps its scheduler once after training; here the engine steps it as set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim import lr_scheduler

INTERVALS = ("step", "epoch")


@dataclass
class OptimizerSpec:
    """An optimiser with its schedule and when the engine advances the schedule."""

    name: str
    optimizer: torch.optim.Optimizer
    scheduler: lr_scheduler.LRScheduler | None = None
    interval: str = "epoch"


def build_optimizer(cfg: Mapping, params: Iterable) -> torch.optim.Optimizer:
    """Instantiate a partial optimiser config on ``params``."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if "_target_" not in cfg:
        raise ValueError(f"optimiser config needs a '_target_' (e.g. torch.optim.Adam), got {cfg}")
    cfg = {**cfg, "_partial_": True}
    return instantiate(cfg)(params)


def build_scheduler(
    cfg: Mapping | None, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
) -> tuple[lr_scheduler.LRScheduler | None, str]:
    """Build the schedule; ``step_size``, ``milestones`` and the cosine period count ``interval`` units."""
    if not cfg or cfg.get("name", "none") == "none":
        return None, "epoch"
    name, interval = cfg["name"], cfg.get("interval", "epoch")
    if interval not in INTERVALS:
        raise ValueError(f"scheduler.interval={interval!r}; use one of {INTERVALS}")
    total = epochs * (steps_per_epoch if interval == "step" else 1)
    if name == "step":
        sched = lr_scheduler.StepLR(
            optimizer, step_size=int(cfg["step_size"]), gamma=float(cfg.get("gamma", 0.1))
        )
    elif name == "multistep":
        sched = lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(m) for m in cfg["milestones"]], gamma=float(cfg.get("gamma", 0.1))
        )
    elif name == "cosine":
        t_max = int(cfg.get("t_max") or total)
        sched = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, t_max), eta_min=float(cfg.get("eta_min", 0.0))
        )
    elif name == "exponential":
        sched = lr_scheduler.ExponentialLR(optimizer, gamma=float(cfg["gamma"]))
    else:
        raise ValueError(f"unknown scheduler name {name!r}; use none, step, multistep, cosine or exponential")
    return sched, interval
