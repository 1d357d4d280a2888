"""What the clip detectors (FTCN, AltFreezing) share: a Conv3d that stays finite under CPU bf16 autocast, and
the single-logit clip method (clip view for training, BCE per clip, sigmoid at evaluation)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.clip_view import ClipDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method
from detect.engine.optim import OptimizerSpec


class TimeConv3d(nn.Conv3d):
    """A Conv3d with a temporal kernel > 1 that, on the CPU under autocast, runs in float32: oneDNN's
    bfloat16 Conv3d returns non-finite weight gradients for such kernels (torch 2.14 on x86; found for the
    3-channel (5, 1, 1) and (5, 7, 7) stems and several 3x1x1 convolutions; CUDA is unaffected)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class ClipBCEMethod(Method):
    """A clip detector with one logit per clip: subclasses set ``clip_len``, ``clip_rule``, ``optim_cfg`` /
    ``scheduler_cfg`` and define ``logits(clips [B, T, C, H, W]) -> [B]`` and ``fit_step``."""

    clip_len: int
    clip_rule: str
    eval_clips_per_video: int | None = None

    def set_clip_sampling(
        self, clip_len: int, eval_clips_per_video: int | None, clip_rule: str, minimum: int = 1, why: str = ""
    ) -> None:
        """Check and keep the clip settings every clip detector takes from ``method.*``: ``clip_len`` frames
        per clip (at least ``minimum``; ``why`` says what needs that many), ``eval_clips_per_video`` (None:
        every clip) and ``clip_rule`` (:mod:`detect.data.clip_view`)."""
        if int(clip_len) < minimum:
            reason = f" ({why})" if why else ""
            raise ValueError(f"method.clip_len={clip_len}: must be at least {minimum}{reason}")
        self.clip_len, self.clip_rule = int(clip_len), str(clip_rule)
        self.eval_clips_per_video = eval_clips_per_video

    def logits(self, clips: Tensor) -> Tensor:
        raise NotImplementedError

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> ClipDataset:
        return ClipDataset(table, pipeline, self.clip_len, train=True, rule=self.clip_rule)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> Tensor:
        """Per-clip BCE of a batch (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logits = self.logits(batch["clip"])
        return F.binary_cross_entropy_with_logits(logits.float(), batch["label"].float(), reduction="none")

    @torch.no_grad()
    def predict(self, clips: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(clips).float())
