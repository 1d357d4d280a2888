"""Small methods for engine tests (importable by Hydra ``_target_`` from the tests folder)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler


class LinearProbe(Method):
    """Per-channel mean and std of the image -> Linear(6, 1); no BatchNorm, so data-parallel training
    with the same global batch is exactly single-process training."""

    name = "linear_probe"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        nan_at_step: int | None = None,
        step_sleep_s_until_requeue: float = 0.0,
        name: str = "linear_probe",
    ) -> None:
        super().__init__()
        self.head = nn.Linear(6, 1)
        self.optim_cfg, self.scheduler_cfg, self.nan_at_step = optim, scheduler, nan_at_step
        # stands in for a long step until Slurm requeues the job (SLURM_RESTART_COUNT set), so the Slurm
        # tests can interrupt a running job and then finish quickly; changes no weight
        self.step_sleep_s = step_sleep_s_until_requeue

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return self.head(feats).squeeze(1)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def fit_step(self, batch, ctx) -> StepOutput:
        per_sample = F.binary_cross_entropy_with_logits(
            self.logits(batch["image"]), batch["label"], reduction="none"
        )
        loss = per_sample.mean()
        if self.nan_at_step is not None and ctx.global_step == self.nan_at_step:
            loss = loss * float("nan")
        ctx.backward(loss)
        ctx.step(self.optimizer)
        if self.step_sleep_s and int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0:
            time.sleep(self.step_sleep_s)
        return StepOutput(loss.detach(), {}, per_sample.detach(), batch["index"])

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images))


class ScriptedScores(LinearProbe):
    """Predictions that change arbitrarily from epoch to epoch (a hash of the image and the epoch), so
    the validation-best and test-best epochs differ; used to prove selection uses validation only."""

    def __init__(self, salt: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.salt = salt

    def on_epoch_end(self, epoch: int, ctx) -> None:
        self.epoch.fill_(epoch + 1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        code = images.flatten(1)[:, :64].sum(1) * 1000.0 + float(self.epoch) * 7.31 + self.salt * 0.17
        return torch.frac(torch.sin(code) * 43758.5453).abs()
