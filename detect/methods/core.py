"""CORE: Ni, Meng, Yu, Quan, Ren and Zhao, "CORE: COnsistent REpresentation Learning for Face Forgery
Detection", CVPR Workshops 2022 (arXiv:2206.02749); the authors' code ``niyunsheng/CORE``; DeepfakeBench
``core_detector.py`` and ``loss/consistency_loss.py``.

Components as the paper names them (its Sec. 3; the paper's text could not be consulted here, so the
equations are written out rather than cited by number; docs/methods/core.md marks each reading):

* **Two views** (Sec. 3.1): every training image x is augmented twice, ``x1 = T1(x)``, ``x2 = T2(x)`` with
  independent draws of the same augmentation (:class:`detect.data.two_view.TwoViewDataset`).
* **Representations**: the backbone's globally pooled last feature map, ``r = GAP(ReLU(F(x)))`` (Xception's
  2048-d vector before its classifier), for both views in one forward pass (batch-norm statistics over both).
* **Consistency loss** (Sec. 3.2, the cosine form): with ``r̂ = r / ‖r‖``,
  ``L_con = 1/B Σ_i (1 − cos(r1_i, r2_i))²`` = the mean squared error between the cosine similarity and 1
  (:func:`consistency_loss`). No margin: the authors' ``ConsistencyCos`` and DeepfakeBench use none.
* **Objective**: ``L = CE over the 2B views (x1 and x2) + λ L_con`` with λ = ``consistency_weight`` (the
  authors' ``--consistency-rate``: 1.0 for their in-dataset Table 1, 100 for the cross-dataset Table 8).
  The cross-entropy is binary on one logit (the paper's two-class softmax CE has the same optimum), with
  reals weighted by ``real_weight`` (the authors' default 4: FF++ has four fakes per real), normalised by the
  summed weights as ``nn.CrossEntropyLoss(weight)`` does.
* **DeepfakeBench's reading** (``pairing: batch_halves``, the ``core/dfb`` preset): its data loader gives
  one view per image (its CORE config turns augmentation off), and its loss pairs the first half of the
  batch with the second half, so the "consistency" is between two different images; reproduced here as
  ``pairing: batch_halves`` with one view per image.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.datasets import FrameDataset
from detect.data.transforms import Pipeline
from detect.data.two_view import TwoViewDataset
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone

PAIRINGS = ("views", "batch_halves")


def consistency_loss(first: Tensor, second: Tensor) -> Tensor:
    """Per-pair ``(1 − cos(first_i, second_i))²`` in float32 (CORE's cosine consistency), ``[B]``."""
    cos = (F.normalize(first.float(), dim=1) * F.normalize(second.float(), dim=1)).sum(dim=1)
    return (1.0 - cos).pow(2)


def weighted_bce(logits: Tensor, labels: Tensor, real_weight: float) -> Tensor:
    """Per-sample BCE with reals weighted by ``real_weight``, scaled so that the samples' mean equals
    ``Σ w_i ℓ_i / Σ w_i`` (the weighted-mean reduction of ``nn.CrossEntropyLoss(weight)``)."""
    labels = labels.float()
    ce = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    w = torch.where(labels > 0.5, torch.ones_like(labels), torch.full_like(labels, float(real_weight)))
    return w * ce * (labels.numel() / w.sum())


class CORE(Method):
    """Backbone + linear logit trained with CE on two views and their cosine consistency (Ni et al.)."""

    name = "core"
    gradient_sync = "ddp"  # one forward (both views in one batch), one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        consistency_weight: float = 1.0,
        real_weight: float = 4.0,
        pairing: str = "views",
        dropout: float = 0.0,
        name: str = "core",
    ) -> None:
        super().__init__()
        if pairing not in PAIRINGS:
            raise ValueError(f"method.pairing={pairing!r}; use one of {PAIRINGS}")
        self.pairing = pairing
        self.consistency_weight, self.real_weight = float(consistency_weight), float(real_weight)
        self.backbone = build_backbone(backbone)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.num_features, 1))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def forward_parts(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logit [N], representation [N, C])``."""
        rep = self.backbone(images)
        return self.head(rep).squeeze(1), rep

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> TwoViewDataset | FrameDataset:
        """Two augmentation draws per frame (``views``); single frames for ``batch_halves``."""
        if self.pairing == "views":
            return TwoViewDataset(table, pipeline, views=2)
        return super().build_train_dataset(table, pipeline)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample ``CE + λ L_con`` and each term's log (the forward ``ctx.forward`` runs)."""
        labels = batch["label"].float()
        if self.pairing == "views":
            views = batch["images"]  # [B, 2, 3, H, W]
            b = views.shape[0]
            with ctx.autocast():
                logits, reps = self.forward_parts(views.transpose(0, 1).reshape(-1, *views.shape[2:]))
            ce = weighted_bce(logits, labels.repeat(2), self.real_weight).view(2, b).mean(dim=0)
            con = consistency_loss(reps[:b], reps[b:])
        else:
            with ctx.autocast():
                logits, reps = self.forward_parts(batch["image"])
            ce = weighted_bce(logits, labels, self.real_weight)
            half = reps.shape[0] // 2
            pairs = consistency_loss(reps[:half], reps[half : 2 * half])
            # each pair's term on both of its samples (an odd batch's last sample has none): mean = L_con
            con = torch.zeros_like(ce)
            if half:
                con[: 2 * half] = pairs.repeat(2) * ce.numel() / (2 * half)
        logs = {"ce": ce.mean().detach(), "consistency": con.mean().detach()}
        return ce + self.consistency_weight * con, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_parts(images)[0].float())
