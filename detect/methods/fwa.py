"""FWA: Li and Lyu, "Exposing DeepFake Videos By Detecting Face Warping Artifacts", CVPRW 2019
(arXiv:1811.00656); the authors' released code (CVPRW2019_Face_Artifacts); DeepfakeBench ``fwa_detector.py``
for ``method=fwa/dfb``.

* **Training data** (Sec. 3.1, Fig. 3): real frames only; the negative (fake) examples are made from them
  by simulating the affine face warping of DeepFake pipelines: the face aligned at a random small
  resolution, Gaussian-blurred, warped back into the frame (``detect.data.blend.face_warp``), in the data
  workers, seeded per (seed, epoch, pair) (``detect.data.synth_pairs``). Each real frame and its warped
  copy form a pair in the batch.
* **Detector** (Sec. 3.2): a CNN classifier (VGG16, ResNet-50/101/152 in the paper; ResNet-50 in the
  released configuration, the default here), a 2-way softmax with cross-entropy (one logit with binary
  cross-entropy here: the same model); P(fake) is the sigmoid.
* **Optimiser** (the released ``cfgs/res50.yml``, ``solver.py``): plain SGD, lr 0.001 decayed ×0.95 each
  epoch, 20 epochs, batch 64, 224 px, the ResNet's L2 regularisation 1e-4 (TF-slim's default, as weight
  decay), inputs minus the ImageNet BGR pixel means with no scaling.

One forward and one backward per update: ``gradient_sync = "ddp"``. See docs/methods/fwa.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from detect.data.blend.face_warp import FaceWarpConfig, FaceWarper
from detect.data.synth_pairs import SynthPairDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone


class FWA(Method):
    """Backbone + dropout + Linear(C, 1) on (real, face-warped real) pairs; BCE."""

    name = "fwa"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"landmarks"})

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        warp: Mapping | None = None,
        dropout: float = 0.0,
        seed: int = 0,
        name: str = "fwa",
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.num_features, 1))
        warp = dict(warp or {})
        self.warp_cfg = FaceWarpConfig(
            **{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in warp.items()}
        )
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.seed = int(seed)
        self.optimizer: torch.optim.Optimizer | None = None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)).squeeze(1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images).float())

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> SynthPairDataset:
        return SynthPairDataset(table, pipeline, FaceWarper(self.warp_cfg), train=True, seed=self.seed)

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext) -> None:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> torch.Tensor:
        """Per-image BCE of a pair batch, reals first (the forward ``ctx.forward`` runs)."""
        images = batch["images"]
        b, a = images.shape[:2]
        x = images.transpose(0, 1).reshape(a * b, *images.shape[2:])
        labels = batch["labels"].transpose(0, 1).reshape(-1).float()
        with ctx.autocast():
            logits = self.logits(x)
        return F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_image = ctx.forward(self.training_losses, batch, ctx)
        loss = per_image.mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        indices = batch["indices"].transpose(0, 1).reshape(-1)
        return StepOutput(loss.detach(), {"bce": loss.detach()}, per_image.detach(), indices)
