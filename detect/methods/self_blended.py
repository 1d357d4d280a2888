"""SBI: Shiohara and Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022 (arXiv:2204.08376),
as a detector under its own name (``method=sbi``: the authors' recipe; ``method=sbi/dfb``: DeepfakeBench's).

* **Training data** (Sec. 3, Fig. 2): real frames only; each real frame ``I`` gives a pair, ``I`` (label 0)
  and its self-blended image (label 1): the source and target are both ``I``, one of them altered by the
  source-target augmentation (Sec. 3.2, "Source-Target Generator": colour and frequency transforms,
  then a random affine of the source), blended through a landmark-hull mask deformed, blurred and scaled
  by a blend ratio (Sec. 3.2, "Mask Generator" and "Blending"). The synthesis is the project's
  (``detect.data.blend.sbi``, shared with ProDet): the pairs are ProDet's anchor tuples restricted to
  ``[real, sbi]`` (``detect.data.anchor_tuples``), seeded per (seed, epoch, item) in the data workers,
  one augmentation draw shared by the pair (the authors' ``additional_targets``).
* **Detector** (Sec. 4.1): EfficientNet-B4 (ImageNet, AdvProp weights in the released code), global
  average pooling, a linear head; the authors train a 2-way softmax with cross-entropy and read
  softmax[:, 1] (``classes: 2``). ``classes: 1`` is one logit with binary cross-entropy (the same optimum);
  ``classes: 3`` is DeepfakeBench's head (its config's ``num_classes: 3`` with labels 0/1 only: the third
  logit is only pushed down), read as softmax[:, 1].
* **Optimiser** (Sec. 4.1): SAM (Foret et al., ICLR 2021; ``detect.methods.sam``) around SGD, lr 0.001,
  momentum 0.9, ρ = 0.05 (SAM's default, which the released code keeps), 100 epochs, batch 32 images
  (16 pairs), and the released code's linear decay of the learning rate over the last quarter of the
  epochs (:func:`linear_decay_schedule`). ``sam_rho: null`` trains with the base optimiser alone
  (DeepfakeBench's SBI trains with Adam, no SAM).

Each update: cross-entropy of the pair batch (logged ``ce``), SAM's ascent, the cross-entropy at the
perturbed weights (logged ``ce_perturbed``), the base step with its gradient. Two forward/backward passes:
``gradient_sync = "explicit"``; the ascent's gradient is averaged over processes before ε̂ is formed.
Batch-norm statistics update in both forwards, as in the released code. See docs/methods/sbi.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from detect.data.anchor_tuples import AnchorTupleDataset
from detect.data.blend import BlendConfig
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.distributed import average_gradients
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.sam import ascend, restore
from detect.models.backbone import build_backbone


def linear_decay_schedule(
    optimizer: torch.optim.Optimizer, epochs: int, start: int | None = None
) -> lr_scheduler.LambdaLR:
    """SBI's released ``LinearDecayLR`` (stepped per epoch): the base learning rate up to epoch ``start``
    (default ``int(epochs·3/4)``), then ``lr·(1 − (e − start)/(epochs − start))`` at epoch ``e``."""
    start = int(epochs * 3 / 4) if start is None else int(start)

    def factor(epoch: int) -> float:
        if epoch <= start or epochs <= start:
            return 1.0
        return max(0.0, 1.0 - (epoch - start) / (epochs - start))

    return lr_scheduler.LambdaLR(optimizer, factor)


def head_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: binary cross-entropy of one logit ([N]) or cross-entropy of K ≥ 2 logits ([N, K])
    against the 0/1 labels (float32)."""
    logits = logits.float()
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    return F.cross_entropy(logits, labels.long(), reduction="none")


def fake_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(fake): sigmoid of one logit, softmax[:, 1] of K ≥ 2 logits."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.dim() == 1 else logits.softmax(-1)[:, 1]


def pair_batch(batch: Mapping) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, A, 3, H, W]`` tuples -> images ``[A·B, 3, H, W]``, labels and table rows, anchor-major (the
    B reals first, then their B self-blends: the released code's batch order)."""
    images = batch["images"]
    b, a = images.shape[:2]
    flat = images.transpose(0, 1).reshape(a * b, *images.shape[2:])
    labels = batch["labels"].transpose(0, 1).reshape(-1)
    indices = batch["indices"].transpose(0, 1).reshape(-1)
    return flat, labels, indices


class SBI(Method):
    """Backbone + dropout + Linear(C, classes), trained on real/self-blended pairs, with SAM."""

    name = "sbi"
    gradient_sync = "explicit"  # SAM: two forward/backward passes per update
    data_needs = frozenset({"landmarks"})

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        classes: int = 2,
        dropout: float = 0.0,
        sam_rho: float | None = 0.05,
        blend: Mapping | None = None,
        seed: int = 0,
        name: str = "sbi",
    ) -> None:
        super().__init__()
        if int(classes) < 1:
            raise ValueError(f"method.classes={classes}; use 1 (one logit, BCE) or K >= 2 (softmax, CE)")
        if sam_rho is not None and float(sam_rho) <= 0:
            raise ValueError(f"method.sam_rho={sam_rho}; use a radius > 0, or null to train without SAM")
        self.classes = int(classes)
        self.backbone = build_backbone(backbone)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.num_features, self.classes))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.sam_rho = None if sam_rho is None else float(sam_rho)
        self.blend_cfg = BlendConfig.from_mapping(blend)
        self.seed = int(seed)
        self.optimizer: torch.optim.Optimizer | None = None

    # -- model ------------------------------------------------------------------------------------
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        out = self.head(self.backbone(images))
        return out.squeeze(1) if self.classes == 1 else out

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return fake_probability(self.logits(images))

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        cfg = dict(self.scheduler_cfg or {})
        if cfg.get("name") == "linear_decay":
            sched = linear_decay_schedule(self.optimizer, epochs, cfg.get("start"))
            return [OptimizerSpec("model", self.optimizer, sched, "epoch")]
        sched, interval = build_scheduler(cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> AnchorTupleDataset:
        """Pairs (real frame, its SBI) over the table's real frames."""
        return AnchorTupleDataset(
            table, pipeline, anchors=("real", "sbi"), blend=self.blend_cfg, train=True, seed=self.seed
        )

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext) -> None:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)  # new blends each epoch, seeded by (seed, epoch, item)

    def sample_losses(self, images: torch.Tensor, labels: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        with ctx.autocast():
            logits = self.logits(images)
        return head_losses(logits, labels)

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        images, labels, indices = pair_batch(batch)
        per_sample = self.sample_losses(images, labels, ctx)
        loss = per_sample.mean()
        ctx.backward(loss)
        logs: dict[str, torch.Tensor | float] = {"ce": loss.detach()}
        if self.sam_rho is not None:
            params = [p for p in self.parameters() if p.requires_grad]
            if ctx.runtime.distributed:
                average_gradients(params, ctx.runtime.world_size)  # one ε̂ for every process
            saved = ascend(params, self.sam_rho)
            self.optimizer.zero_grad(set_to_none=True)
            perturbed = self.sample_losses(images, labels, ctx).mean()
            ctx.backward(perturbed)
            restore(params, saved)
            logs["ce_perturbed"] = perturbed.detach()
            logs["sam_skipped"] = float(saved is None)
        ctx.step(self.optimizer)
        return StepOutput(loss.detach(), logs, per_sample.detach(), indices)

    def run_info(self) -> dict:
        return {"classes": self.classes, "sam_rho": self.sam_rho, "blend_key": self.blend_cfg.key()}
