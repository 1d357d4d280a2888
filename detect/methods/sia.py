"""SIA: Sun, Liu, Yao, Sun, Chen, Ding and Ji, "An Information Theoretic Approach for Attention-Driven Face
Forgery Detection", ECCV 2022 (self-information attention); DeepfakeBench ``sia_detector.py``.

The paper's full text could not be consulted here (its abstract and Fig. 1's caption only: the
self-information map "calculated by Eq. 1"); the equations below are written out as DeepfakeBench's
implementation computes them, and docs/methods/sia.md marks each reading.

* **Self-information of a feature** (Sec. 3.1, Eq. 1): the self-information of a response is
  ``I = −log p``, with ``p`` a Gaussian-kernel estimate of how probable the response is given its local
  patch. The patch distance (:func:`patch_distance`) sums two parts for channel ``c`` at position ``u``:
  the intra-feature distance to its ``k x k`` spatial neighbourhood ``N(u)`` (zero padding),
  ``|Σ_{v∈N(u)} (x_c(u) − x_c(v))|``, and the inter-feature distance to the next ``R`` channels
  (cyclically), ``|Σ_{j=1..R} (x_c(u) − x_{c+j}(u))|``, weighted by 1/2. With ``D̃ = D / mean(D)``,
  ``p = exp(−D̃ / (2h²))`` (bandwidth ``h`` = 1), so the spatial self-information is
  ``I_s = D̃ / (2h²)`` (:func:`self_information`).
* **Self-information based dual attention** (Sec. 3.2, :class:`SelfInformationAttention`): channel
  attention ``a_c = 1 + mean_u −log(p_c(u) + 0.1)`` (the 0.1 floor bounds the information of a
  near-impossible response) and spatial attention ``s = 1 + σ(I_s)``; the module returns
  ``x ⊙ s ⊙ a`` and ``I_s``. No parameters; the statistics are computed without gradient (the attention
  recalibrates the features, the backbone learns through ``x``).
* **Self-information aggregation** (Sec. 3.3, dense links): the self-information map of every earlier
  level ``i`` is carried to every later level ``j``: ``ReLU(BN(Conv1x1_{C_i→C_j}(I_s^i)))``, adaptively
  max-pooled to level ``j``'s size and added to its features before its SIA module.
* **Backbone and placement**: EfficientNet-B4 (the paper's and DeepfakeBench's backbone); the modules sit
  at the end of its stride-4, stride-8 and stride-16 stages (``levels: [4, 8, 16]``; DeepfakeBench's
  ``att1conv``/``att2conv``/``att4conv`` after blocks 5, 9 and 21 of efficientnet_pytorch's B4). The
  classifier is the backbone's average pooling and one linear logit, trained by binary cross-entropy (the
  paper's two-class cross-entropy has the same optimum). ``predict`` takes images only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone


def patch_distance(x: Tensor, kernel: int = 3, channel_range: int = 5, inter_weight: float = 0.5) -> Tensor:
    """``D = |Σ_{v∈N_k(u)} (x_c(u) − x_c(v))| + w · |Σ_{j=1..R} (x_c(u) − x_{(c+j) mod C}(u))|`` (Eq. 1's
    patch distance), ``x`` ``[B, C, H, W]``; the ``k x k`` window is zero-padded at the border."""
    if kernel % 2 != 1:
        raise ValueError(f"method.kernel={kernel}: the patch needs an odd size")
    window = F.avg_pool2d(x, kernel, stride=1, padding=kernel // 2, count_include_pad=True) * kernel**2
    intra = (kernel**2 * x - window).abs()
    neighbours = sum(torch.roll(x, shifts=-j, dims=1) for j in range(1, channel_range + 1))
    inter = (channel_range * x - neighbours).abs()
    return intra + inter_weight * inter


def self_information(distance: Tensor, bandwidth: float = 1.0, per_sample: bool = True) -> Tensor:
    """``I_s = −log p = D / mean(D) / (2h²)``: the mean over each sample's map (``per_sample``) or over the
    whole batch (DeepfakeBench)."""
    dims = (1, 2, 3) if per_sample else tuple(range(distance.dim()))
    scale = distance.mean(dim=dims, keepdim=True).clamp_min(1e-12)
    return distance / scale / (2.0 * bandwidth**2)


class SelfInformationAttention(nn.Module):
    """Sec. 3.2's dual attention: ``(x ⊙ (1 + σ(I_s)) ⊙ (1 + mean_u −log(e^{−I_s} + floor)), I_s)``."""

    def __init__(
        self,
        kernel: int = 3,
        channel_range: int = 5,
        inter_weight: float = 0.5,
        bandwidth: float = 1.0,
        floor: float = 0.1,
        per_sample: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.channel_range, self.inter_weight = kernel, channel_range, inter_weight
        self.bandwidth, self.floor, self.per_sample = bandwidth, floor, per_sample

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            d = patch_distance(xf, self.kernel, self.channel_range, self.inter_weight)
            info = self_information(d, self.bandwidth, self.per_sample)
            channel = 1.0 + (-torch.log(torch.exp(-info) + self.floor)).mean(dim=(2, 3), keepdim=True)
            spatial = 1.0 + torch.sigmoid(info)
        return x * (spatial * channel).to(x.dtype), info

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel}, channel_range={self.channel_range}, inter_weight={self.inter_weight}, "
            f"bandwidth={self.bandwidth}, floor={self.floor}, per_sample={self.per_sample}"
        )


def link(c_in: int, c_out: int) -> nn.Sequential:
    """Sec. 3.3's projection of a self-information map to a later level: ReLU(BN(Conv1x1))."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SIA(Method):
    """Backbone with self-information attention at several levels and dense aggregation links (Sun et al.)."""

    name = "sia"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        levels: Sequence[int] = (4, 8, 16),
        kernel: int = 3,
        channel_range: int = 5,
        inter_weight: float = 0.5,
        bandwidth: float = 1.0,
        floor: float = 0.1,
        normalise: str = "sample",
        dropout: float = 0.0,
        name: str = "sia",
    ) -> None:
        super().__init__()
        if normalise not in ("sample", "batch"):
            raise ValueError(
                f"method.normalise={normalise!r}; use sample (per image) or batch (DeepfakeBench)"
            )
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: SIA needs an NCHW backbone")
        self.level_at = [self.body.last_at(int(s)) for s in levels]
        if sorted(set(self.level_at)) != self.level_at:
            raise ValueError(
                f"method.levels={list(levels)} give layers {[self.body.names[i] for i in self.level_at]}; "
                "they must be distinct and increasing"
            )
        self.attention = SelfInformationAttention(
            kernel, channel_range, inter_weight, bandwidth, floor, per_sample=normalise == "sample"
        )
        channels = [self.body.shape(i)[0] for i in self.level_at]
        self.pairs = [(i, j) for j in range(len(channels)) for i in range(j)]
        self.links = nn.ModuleList(link(channels[i], channels[j]) for i, j in self.pairs)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.body.backbone.num_features, 1))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    # -- network ------------------------------------------------------------------------------------
    def forward_parts(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(logit [B], the self-information map of each level)``."""
        x, start, maps = images, 0, []
        for j, at in enumerate(self.level_at):
            x = self.body.run(x, start, at + 1)
            start = at + 1
            for (i, jj), proj in zip(self.pairs, self.links, strict=True):
                if jj == j:
                    x = x + F.adaptive_max_pool2d(proj(maps[i].to(x.dtype)), x.shape[-2:])
            x, info = self.attention(x)
            maps.append(info)
        x = self.body.run(x, start)
        return self.head(self.body.backbone.pool(x)).squeeze(1), maps

    # -- training -----------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample BCE and its log (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logit, _ = self.forward_parts(batch["image"])
        bce = F.binary_cross_entropy_with_logits(logit.float(), batch["label"].float(), reduction="none")
        return bce, {"bce": bce.mean().detach()}

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_parts(images)[0].float())

    def run_info(self) -> dict:
        return {
            "levels": [self.body.names[i] for i in self.level_at],
            "level_shapes": [list(self.body.shape(i)) for i in self.level_at],
        }
