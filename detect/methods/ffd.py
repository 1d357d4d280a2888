"""FFD: Dang, Liu, Stehouwer, Liu and Jain, "On the Detection of Digital Face Manipulation", CVPR 2020
(arXiv:1910.01717); the authors' code ``JStehouwer/FFD_CVPR2020``; DeepfakeBench ``ffd_detector.py``.

Components as the paper names them (its Sec. 3; the paper's text could not be consulted here, so the
equations are written out below rather than cited by number, and docs/methods/ffd.md marks each reading):

* **Attention-based layer** (Sec. 3.2): inserted into the backbone, it turns the feature map ``F`` of one
  layer into an attention map ``M_att`` (one channel, ``F``'s spatial size) and continues with
  ``F' = F ⊙ M_att`` (broadcast over channels). In Xception the layer sits after ``block7``, the fourth
  block of the middle flow (the authors' ``xception_map.py``; DeepfakeBench's ``fea_part3``), where the map
  is 19x19 at 299 px and 16x16 at 256 px; other backbones take it after their last layer at output stride
  16 (``map_layer: auto``).
* **Direct regression** (``maptype: reg``, :class:`RegressionMap`): ``M_att = σ(SepConv3x3(F))``, a
  depthwise 3x3 and a pointwise 1x1 convolution to one channel, no bias, then the sigmoid.
* **Manipulation appearance model** (``maptype: tmp``, :class:`TemplateMap`): the map is a linear
  combination of templates, ``M_att = M̄ + Σ_k α_k T_k``, the mean ``M̄`` and the first K principal
  components ``T_k`` of ground-truth masks (K = 10), with ``α`` regressed from ``F`` (an Xception block
  728 -> 364 at stride 2, ReLU, global pooling, a linear layer to K). The templates are fitted here by PCA
  on the training fakes' masks (:func:`mask_templates`, when the training view is built); the authors ship
  theirs as images, which are not available. No sigmoid: the map is the linear model itself, as in the
  authors' and DeepfakeBench's ``TemplateMap``.
* **Map loss** (Sec. 3.3, supervised case): ``L_map = ‖M_att − M_gt‖₁``, averaged over the map's pixels,
  with ``M_gt`` the manipulation mask resized (area average) to the map's size and all zeros for a real
  image (:func:`map_loss`). The objective is ``L = L_cls + λ L_map`` with λ = ``map_weight`` (1: the
  authors' supervised training script adds the two terms); ``L_cls`` is binary cross-entropy on one logit
  (the paper's two-class softmax cross-entropy has the same optimum). ``map_weight: 0`` trains without
  masks: DeepfakeBench's FFD (``maptype: reg``, ``with_mask: false``), the ``ffd/dfb`` preset.
* **Classifier**: the backbone's own pooling of the last feature map and one linear logit; ``predict``
  is the sigmoid and takes images only.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.datasets import FrameDataset
from detect.data.images import read_mask
from detect.data.mask_view import MaskedFrameDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

#: The attention layer's place in Xception (the authors' code: after block7, the 4th middle-flow block).
XCEPTION_MAP_LAYER = "block7"


def map_loss(attention: Tensor, masks: Tensor) -> Tensor:
    """Per-sample ``mean |M_att − M_gt|`` (FFD's supervised map loss), ``masks`` ``[B, 1, H, W]`` in [0, 1]
    resized by area averaging to the map's size; float32."""
    target = masks.float()
    if target.shape[-2:] != attention.shape[-2:]:
        target = F.interpolate(target, size=attention.shape[-2:], mode="area")
    return (attention.float() - target).abs().flatten(1).mean(dim=1)


def mask_templates(masks: np.ndarray, k: int) -> tuple[Tensor, Tensor]:
    """Mean map and the first ``k`` principal components (unit rows) of masks ``[N, H, W]``:
    ``(mean [H*W], components [k, H*W])`` (FFD's manipulation appearance model)."""
    x = torch.as_tensor(masks, dtype=torch.float64).flatten(1)
    if x.shape[0] < 2:
        raise ValueError(f"FFD's templates need at least 2 masks, got {x.shape[0]}")
    mean = x.mean(dim=0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    comps = vh[:k]
    if comps.shape[0] < k:  # fewer masks than templates: pad with zero templates
        comps = torch.cat([comps, comps.new_zeros(k - comps.shape[0], comps.shape[1])])
    return mean.float(), comps.float()


class RegressionMap(nn.Module):
    """``σ(pointwise(depthwise3x3(F)))``: one attention channel by direct regression (no bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.pointwise(self.depthwise(x)))


class TemplateMap(nn.Module):
    """``M̄ + Σ_k α_k T_k`` with ``α`` = Linear(GAP(ReLU(XceptionBlock(F)))); templates are buffers."""

    def __init__(self, channels: int, size: tuple[int, int], num_templates: int = 10) -> None:
        super().__init__()
        block = importlib.import_module("timm.models.xception").Block  # Xception's block (timm)
        self.size = tuple(size)
        self.block = block(channels, channels // 2, 2, 2, start_with_relu=True, grow_first=False)
        self.linear = nn.Linear(channels // 2, num_templates)
        n = self.size[0] * self.size[1]
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("templates", torch.zeros(num_templates, n))
        self.register_buffer("fitted", torch.tensor(False))

    def set_templates(self, mean: Tensor, templates: Tensor) -> None:
        if tuple(templates.shape) != tuple(self.templates.shape) or mean.numel() != self.mean.numel():
            raise ValueError(f"templates {tuple(templates.shape)} do not fit {tuple(self.templates.shape)}")
        self.mean.copy_(mean.reshape(-1))
        self.templates.copy_(templates)
        self.fitted.fill_(True)

    def coefficients(self, x: Tensor) -> Tensor:
        v = F.relu(self.block(x))
        return self.linear(F.adaptive_avg_pool2d(v, 1).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.coefficients(x)
        maps = self.mean.to(alpha.dtype) + alpha @ self.templates.to(alpha.dtype)
        return maps.view(x.shape[0], 1, *self.size)


class FFD(Method):
    """Backbone with an attention map multiplying a middle feature map, BCE + λ·L1 map loss (Dang et al.)."""

    name = "ffd"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"masks"})

    @classmethod
    def needs_for(cls, hyper: Mapping) -> frozenset[str]:
        """Masks when the map is supervised (``map_weight`` > 0) or its templates are fitted (``tmp``)."""
        if float(hyper.get("map_weight", 1.0)) > 0 or hyper.get("maptype", "reg") == "tmp":
            return cls.data_needs
        return frozenset()

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        maptype: str = "reg",
        map_layer: str = "auto",
        map_weight: float = 1.0,
        num_templates: int = 10,
        template_masks: int = 2000,
        dropout: float = 0.0,
        name: str = "ffd",
    ) -> None:
        super().__init__()
        if maptype not in ("reg", "tmp"):
            raise ValueError(f"method.maptype={maptype!r}; use reg (direct regression) or tmp (templates)")
        self.maptype, self.map_weight = maptype, float(map_weight)
        self.template_masks = int(template_masks)
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: FFD needs an NCHW backbone")
        self.map_at = self._map_layer(map_layer)
        channels, h, w = self.body.shape(self.map_at)
        self.attention = (
            RegressionMap(channels) if maptype == "reg" else TemplateMap(channels, (h, w), num_templates)
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.body.backbone.num_features, 1))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _map_layer(self, map_layer: str) -> int:
        if map_layer == "auto":
            if self.body.backbone.timm_name == "legacy_xception":
                return self.body.index(XCEPTION_MAP_LAYER)
            return self.body.last_at(16)
        return self.body.index(str(map_layer))

    # -- network ------------------------------------------------------------------------------------
    def forward_parts(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logit [B], attention map [B, 1, h, w])``."""
        x = self.body.run(images, 0, self.map_at + 1)
        att = self.attention(x)
        x = self.body.run(x * att, self.map_at + 1)
        logit = self.head(self.body.backbone.pool(x)).squeeze(1)
        return logit, att

    # -- training -----------------------------------------------------------------------------------
    def build_train_dataset(
        self, table: pd.DataFrame, pipeline: Pipeline
    ) -> MaskedFrameDataset | FrameDataset:
        """Frames with their masks under one geometric draw; fits the templates first (``tmp``)."""
        if self.maptype == "tmp" and not bool(self.attention.fitted):
            self.fit_templates(table)
        if self.map_weight > 0:
            return MaskedFrameDataset(table, pipeline, train=True)
        return super().build_train_dataset(table, pipeline)

    def fit_templates(self, table: pd.DataFrame, seed: int = 0) -> None:
        """PCA templates from up to ``template_masks`` training fakes' masks at the map's size."""
        fakes = table[
            (table["label"] == 1) & table["mask_path"].map(lambda p: isinstance(p, str) and bool(p))
        ]
        if len(fakes) < 2:
            raise ValueError(
                "FFD maptype=tmp fits its templates on the training fakes' masks; found fewer than 2"
            )
        rows = np.random.default_rng(seed).permutation(len(fakes))[: self.template_masks]
        h, w = self.attention.size
        masks = []
        for path in fakes["mask_path"].to_numpy()[np.sort(rows)]:
            full = torch.from_numpy(read_mask(str(path), (max(h, 64), max(w, 64))))[None, None]
            masks.append(F.interpolate(full, size=(h, w), mode="area")[0, 0].numpy())
        mean, comps = mask_templates(np.stack(masks), self.attention.templates.shape[0])
        self.attention.set_templates(
            mean.to(self.attention.mean.device), comps.to(self.attention.mean.device)
        )

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample ``BCE + λ L_map`` and the terms' logs (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logit, att = self.forward_parts(batch["image"])
        bce = F.binary_cross_entropy_with_logits(logit.float(), batch["label"].float(), reduction="none")
        logs: dict = {"bce": bce.mean().detach()}
        if self.map_weight <= 0:
            return bce, logs
        if "mask" not in batch:
            raise KeyError("FFD with map_weight > 0 trains on masks: the batch has no 'mask'")
        lmap = map_loss(att, batch["mask"])
        logs["map_l1"] = lmap.mean().detach()
        return bce + self.map_weight * lmap, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_parts(images)[0].float())

    def run_info(self) -> dict:
        return {"map_layer": self.body.names[self.map_at], "map_size": list(self.body.shape(self.map_at)[1:])}
