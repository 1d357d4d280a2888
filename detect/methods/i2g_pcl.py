"""I2G + PCL: Zhao, Xu, Xu, Ding, Xiong and Xia, "Learning Self-Consistency for Deepfake Detection",
ICCV 2021 (arXiv:2012.09311); DeepfakeBench ``pcl_xception_detector.py``.

The paper's text could not be consulted here; the components below are written from its method section as
summarised in docs/methods/i2g_pcl.md, which marks every reading, and from DeepfakeBench's detector.

* **I2G** (Sec. 3.2): training fakes blended from two real faces through a soft mask ``M``
  (:class:`detect.data.i2g_pairs.I2GPairDataset`, the project's cross-blend); reals have ``M = 0``.
* **Source feature map** (Sec. 3.1): a mid-level feature map ``F`` (``C x H x W``) of the backbone — the
  output at stride 16 (ResNet-34's ``layer3``, 16x16 at 256 px; Xception's ``block7`` in DeepfakeBench).
* **Pair-wise consistency** (Sec. 3.1, :class:`PairwiseConsistency`): each patch's feature ``F_i`` is
  embedded by a 1x1 convolution ``θ`` and the consistency of patches ``i, j`` is the sigmoid of their
  scaled dot product, ``V̂_ij = σ(θ(F_i)·θ(F_j) / √C)``: the predicted 4D volume ``H x W x H x W``.
* **Consistency target** (Sec. 3.1, :func:`consistency_volume`): with ``M_i`` the mean of the mask over
  patch ``i`` (the mask averaged over the patch grid), ``V_ij = 1 − |M_i − M_j|``: 1 for two patches of
  the same source, 0 for a fully blended patch against a pristine one; a real image's volume is all ones.
* **Loss** (Sec. 3.3): ``L = L_cls + λ L_PCL``, ``L_PCL`` the binary cross-entropy between ``V̂`` and
  ``V`` averaged over the ``(HW)²`` entries (:func:`pcl_loss`, from the pre-sigmoid scores);
  λ = ``pcl_weight`` (10, the paper; DeepfakeBench 1). ``L_cls`` is binary cross-entropy on one logit
  (the two-class softmax of the paper and DeepfakeBench has the same optimum).
* **Classifier**: the backbone's own pooling of the last feature map and one linear logit; ``predict`` is
  the sigmoid and takes images only (the consistency branch is used in training alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.blend import BlendConfig
from detect.data.i2g_pairs import I2GPairDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

#: DeepfakeBench's PCL layer in Xception: the output of block7 (its ``fea_part3``), 728 x 16 x 16 at 256 px.
XCEPTION_PCL_LAYER = "block7"
MASK_RESIZES = ("area", "bilinear")


def patch_means(masks: Tensor, grid: tuple[int, int], resize: str = "area") -> Tensor:
    """``M_i``: masks ``[B, 1, H, W]`` reduced to the patch grid, ``[B, h·w]`` (row-major patches).

    ``area``: the mean over each patch (the paper's definition); ``bilinear``: bilinear resampling with
    aligned corners, as DeepfakeBench's ``UpsamplingBilinear2d`` downsampling does."""
    if resize not in MASK_RESIZES:
        raise ValueError(f"mask_resize={resize!r}; use one of {MASK_RESIZES}")
    m = masks.float()
    if tuple(m.shape[-2:]) != tuple(grid):
        if resize == "area":
            m = F.adaptive_avg_pool2d(m, grid)
        else:
            m = F.interpolate(m, size=grid, mode="bilinear", align_corners=True)
    return m.flatten(1)


def consistency_volume(masks: Tensor, grid: tuple[int, int], resize: str = "area") -> Tensor:
    """The 4D consistency target ``V_ij = 1 − |M_i − M_j|`` flattened to ``[B, h·w, h·w]`` (float32)."""
    m = patch_means(masks, grid, resize)
    return 1.0 - (m[:, :, None] - m[:, None, :]).abs()


def pcl_loss(scores: Tensor, target: Tensor) -> Tensor:
    """Per-sample BCE between ``V̂ = σ(scores)`` and the target, mean over the volume's entries.

    Computed from the pre-sigmoid ``scores`` (binary cross-entropy with logits): the same value as BCE on
    the probabilities, without the infinite gradient of ``log σ`` where the sigmoid saturates."""
    bce = F.binary_cross_entropy_with_logits(scores.float(), target.float(), reduction="none")
    return bce.flatten(1).mean(dim=1)


class PairwiseConsistency(nn.Module):
    """The scores ``θ(F)ᵀ θ(F) / √C`` of all patch pairs, ``[B, C, h, w]`` -> ``[B, h·w, h·w]``; the
    predicted consistency is their sigmoid, ``V̂ = σ(scores)`` (:meth:`consistency`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(channels, channels, 1)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, x: Tensor) -> Tensor:
        e = self.theta(x).flatten(2)  # [B, C, N]
        return torch.bmm(e.transpose(1, 2), e) * self.scale

    def consistency(self, x: Tensor) -> Tensor:
        """``V̂``: the predicted consistency volume in [0, 1]."""
        return torch.sigmoid(self(x))


class I2GPCL(Method):
    """Backbone + pair-wise self-consistency branch on a mid-level map, trained on I2G pairs (Zhao et al.)."""

    name = "i2g_pcl"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"landmarks"})

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        pcl_layer: str = "auto",
        pcl_weight: float = 10.0,
        mask_resize: str = "area",
        dropout: float = 0.0,
        blend: Mapping | None = None,
        landmark_points: int = 68,
        cache_dir: str = "cache",
        seed: int = 0,
        name: str = "i2g_pcl",
    ) -> None:
        super().__init__()
        if mask_resize not in MASK_RESIZES:
            raise ValueError(f"method.mask_resize={mask_resize!r}; use one of {MASK_RESIZES}")
        if float(pcl_weight) < 0:
            raise ValueError(f"method.pcl_weight={pcl_weight} must be >= 0")
        self.pcl_weight, self.mask_resize = float(pcl_weight), mask_resize
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: I2G-PCL needs an NCHW backbone")
        self.pcl_at = self._pcl_layer(pcl_layer)
        channels, h, w = self.body.shape(self.pcl_at)
        self.grid = (h, w)
        self.pcl = PairwiseConsistency(channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.body.backbone.num_features, 1))
        self.blend_cfg = BlendConfig.from_mapping(blend)
        self.landmark_points, self.cache_dir, self.seed = int(landmark_points), str(cache_dir), int(seed)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _pcl_layer(self, layer: str) -> int:
        if layer == "auto":
            if self.body.backbone.timm_name == "legacy_xception":
                return self.body.index(XCEPTION_PCL_LAYER)
            return self.body.last_at(16)
        return self.body.index(str(layer))

    # -- network ------------------------------------------------------------------------------------
    def forward_parts(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logit [B], consistency scores [B, h·w, h·w])``; ``σ(scores)`` is the predicted volume ``V̂``."""
        x = self.body.run(images, 0, self.pcl_at + 1)
        volume = self.pcl(x)
        x = self.body.run(x, self.pcl_at + 1)
        return self.head(self.body.backbone.pool(x)).squeeze(1), volume

    # -- training -----------------------------------------------------------------------------------
    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> I2GPairDataset:
        """(real, I2G fake) pairs with their masks, blends seeded per (seed, epoch, item)."""
        return I2GPairDataset(
            table,
            pipeline,
            blend=self.blend_cfg,
            cache_dir=self.cache_dir,
            train=True,
            seed=self.seed,
            landmark_points=self.landmark_points,
        )

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext) -> None:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    @staticmethod
    def flatten_pairs(batch: Mapping) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pair batches ``[B, 2, ...]`` -> anchor-major ``[2B, ...]`` (all reals, then all fakes); a flat
        batch (``image``, ``mask``, ``label``, ``index``) passes through."""
        if "images" not in batch:
            return batch["image"], batch["mask"], batch["label"], batch["index"]

        def flat(t: Tensor) -> Tensor:
            return t.transpose(0, 1).reshape(-1, *t.shape[2:])

        return flat(batch["images"]), flat(batch["masks"]), flat(batch["labels"]), flat(batch["indices"])

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-image ``L_cls + λ L_PCL`` and the terms' logs (the forward ``ctx.forward`` runs)."""
        images, masks, labels, _ = self.flatten_pairs(batch)
        with ctx.autocast():
            logit, volume = self.forward_parts(images)
        cls = F.binary_cross_entropy_with_logits(logit.float(), labels.float(), reduction="none")
        pcl = pcl_loss(volume, consistency_volume(masks, self.grid, self.mask_resize))
        logs = {"cls": cls.mean().detach(), "pcl": pcl.mean().detach()}
        return cls + self.pcl_weight * pcl, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs, indices=self.flatten_pairs(batch)[3])

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        x = self.body.run(images)
        return torch.sigmoid(self.head(self.body.backbone.pool(x)).squeeze(1).float())

    def run_info(self) -> dict:
        return {"pcl_layer": self.body.names[self.pcl_at], "pcl_grid": list(self.grid)}
