"""A small clip method for the engine's clip path (importable by Hydra ``_target_`` from the tests folder):
per-frame channel means of a clip, their mean and standard deviation over time -> Linear(6, 1)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from detect.data.clip_view import ClipDataset
from detect.data.transforms import Pipeline
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler


class ClipProbe(Method):
    """Scores clips of ``clip_len`` frames read with DeepfakeBench's rule (stored order), so it trains on
    any table with ``clip_len`` frames per video."""

    name = "clip_probe"
    data_needs = frozenset({"clips"})
    clip_len = 4
    clip_rule = "dfb"
    eval_clips_per_video = None

    def __init__(
        self, backbone: Mapping, optim: Mapping, scheduler: Mapping | None = None, name: str = ""
    ) -> None:
        super().__init__()
        self.head = nn.Linear(6, 1)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler

    def logits(self, clips: torch.Tensor) -> torch.Tensor:
        frame_means = clips.mean(dim=(3, 4))  # [B, T, C]
        feats = torch.cat([frame_means.mean(1), frame_means.std(1)], dim=1)
        return self.head(feats).squeeze(1)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> ClipDataset:
        return ClipDataset(table, pipeline, self.clip_len, train=True, rule=self.clip_rule)

    def fit_step(self, batch, ctx) -> StepOutput:
        assert batch["clip"].dim() == 5 and batch["clip"].shape[1] == self.clip_len
        loss = F.binary_cross_entropy_with_logits(self.logits(batch["clip"]), batch["label"])
        ctx.backward(loss)
        ctx.step(self.optimizer)
        return StepOutput(loss.detach(), {"bce": loss.detach()})

    @torch.no_grad()
    def predict(self, clips: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(clips))
