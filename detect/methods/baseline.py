"""The baseline detector: a backbone, global pooling and one linear logit trained with binary
cross-entropy (or the focal loss of Lin et al., ICCV 2017, Eq. 5, LTW's FocalLoss baseline)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone


def focal_loss_with_logits(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample binary focal loss FL(p_t) = -(1 - p_t)^γ log p_t (Lin et al., 2017, Eq. 5 with α=1)."""
    logp_t = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return -((1 - logp_t.exp()) ** gamma) * logp_t


class Baseline(Method):
    """Backbone + dropout + Linear(C, 1)."""

    name = "baseline"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        dropout: float = 0.0,
        name: str = "baseline",
    ) -> None:
        super().__init__()
        if loss not in ("bce", "focal"):
            raise ValueError(f"method.loss={loss!r}; use 'bce' or 'focal'")
        self.backbone = build_backbone(backbone)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.num_features, 1))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.loss_kind, self.focal_gamma = loss, focal_gamma
        self.optimizer: torch.optim.Optimizer | None = None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)).squeeze(1)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def sample_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.loss_kind == "focal":
            return focal_loss_with_logits(logits, labels, self.focal_gamma)
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")

    def training_losses(self, batch: Mapping, ctx: StepContext) -> torch.Tensor:
        """Per-sample training losses of a batch (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logits = self.logits(batch["image"])
        return self.sample_losses(logits, batch["label"])

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        return self.update_on(ctx.forward(self.training_losses, batch, ctx), batch, ctx)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images).float())
