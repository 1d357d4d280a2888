"""MAT: Zhao, Zhou, Chen, Wei, Zhang and Yu, "Multi-attentional Deepfake Detection", CVPR 2021
(arXiv:2103.02406); the authors' code ``yoctta/multiple-attention``; DeepfakeBench
``multi_attention_detector.py``.

Deepfake detection as fine-grained classification (the paper's Sec. 3 and its framework figure, Fig. 2;
components are named as the paper names them; equation numbers are not cited because the paper's text could
not be consulted here):

* **Multiple attention maps** ("multi-attentional framework"): M maps ``A = f_att(f_t(I))`` from a middle
  layer (EfficientNet-B4's fifth stage, output stride 16: ``attention_stride``), by conv3x3-BN-ReLU,
  conv1x1-BN and ELU+1 (positive maps), with the outer 1/12 of each side zeroed, the authors' 2-pixel border
  of their 24x24 maps (:class:`AttentionModule`; the paper names a 1x1 conv, BN and an activation).
* **Textural feature enhancement** (the same section): on a shallow layer's map F (EfficientNet-B4's second
  stage, stride 4: ``texture_stride``), local average pooling to the attention maps' size gives the
  non-textural D, the residual ``T = F - up(D)`` keeps the texture, and a densely connected block of three
  convolutions (1x1, then 3x3 on [f0], [f0, f1], [f0, f1, f2], each after BN-ReLU; concatenated, BN-ReLU,
  1x1, BN) enhances it to 4C channels (:class:`TextureEnhancement`; the authors' ``Texture_Enhance_v1``,
  which DeepfakeBench marks "in accordance with paper").
* **Bilinear attention pooling** (BAP): the textural feature matrix ``P_k = Σ_hw A_k ⊙ F_enh`` (``[M, 4C]``,
  each row L2-normalised) and the global feature ``G`` of the last feature map pooled by ``Σ_k A_k``
  (normalised by the attention mass) (:func:`attention_pooling`). ``P`` (flattened) and ``G`` are projected
  to ``mid_dims`` each (Hardswish MLPs) and concatenated into the classifier. During training whole
  attention regions are dropped from ``P`` and from G's pooling map with probability ``dropout`` (the
  authors' ``Dropout2d`` over the M regions), and G gets dropout ``dropout_final``.
* **Regional independence loss** (RIL, "Regional Independence Loss for Attention Maps"): with ``V_j^i`` the
  feature of region j of sample i (BAP of the standardised non-textural D, rows L2-normalised, as in the
  authors' code) and feature centres ``c_j``::

      c^t   = c^{t-1} + α (mean_i V^i - c^{t-1})                         (moving-average update)
      L_RIL = 1/B Σ_i Σ_j max(‖V_j^i - c_j^t‖² - m_in(y_i), 0) + Σ_{j≠k} max(m_out - ‖c_j^t - c_k^t‖², 0)

  (:func:`regional_independence_loss`). The paper's first sum runs over the batch; it is averaged here so
  the loss does not grow with the batch size (both public implementations average too). The stored centres
  are a buffer (detached); ``c^t`` keeps its gradient through the batch mean, as in the authors' code
  (DeepfakeBench detaches it, which leaves the inter-centre term without gradient). α decays by
  ``alpha_decay`` after every epoch. ``squared: true`` takes squared distances (the centre-loss form of the
  paper's equation as recalled here, not checked against its text); both public implementations take plain
  L2 distances (``squared: false``).
* **Objective**: ``L = λ_CE·CE + λ_RIL·L_RIL`` (binary cross-entropy on one logit; the paper's softmax CE over
  two classes has the same optimum).
* **Attention guided data augmentation** (AGDA): per sample one attention map is drawn with probability ∝
  ``sqrt(Σ_hw A_k + 1)``, normalised by its maximum, softened by
  ``(σ(z(a - θ)) - σ(-zθ)) / (1 - σ(-zθ))`` with θ ~ U(threshold), z ~ U(zoom) per batch, and the image is
  mixed with a degraded copy, ``I' = I ⊙ (1 - A*) + I_d ⊙ A*``, ``I_d`` = down-sampled ×``scale_factor``,
  Gaussian-blurred, noised and up-sampled (:class:`AGDA`). As in the authors' training code each step also
  trains on ``I'`` (its CE and RIL, weight ``agda.loss_weight``), with the attention maps of the clean pass
  (detached). Left out: the authors' extra "match loss" between the two passes' region features (weight
  0.1 in their code; it is not in the paper).
* **Backbone warm-up**: DeepfakeBench first trains the plain backbone (its own linear head on the pooled
  last map) for 10 of its 50 epochs (``backbone_nEpochs``); ``warmup_fraction`` does the same for that
  fraction of the epochs (rounded down; 0: none), and ``predict`` uses the plain head until it ends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone


def attention_pooling(features: Tensor, attentions: Tensor, norm: str = "l2") -> Tensor:
    """Bilinear attention pooling: ``P[b, k, c] = Σ_hw A[b, k, h, w] F[b, c, h, w]``, ``[B, M, C]``.

    The maps are resized (bilinear, corners aligned) to the features' size when they differ. ``norm``:
    ``l2`` (each row L2-normalised), ``mass`` (each row divided by its map's sum) or ``none``.
    """
    if attentions.shape[-2:] != features.shape[-2:]:
        attentions = F.interpolate(attentions, size=features.shape[-2:], mode="bilinear", align_corners=True)
    pooled = torch.einsum("bkhw,bchw->bkc", attentions, features)
    if norm == "l2":
        return F.normalize(pooled, p=2, dim=-1)
    if norm == "mass":
        return pooled / (attentions.sum(dim=(2, 3)).unsqueeze(-1) + 1e-8)
    if norm != "none":
        raise ValueError(f"norm={norm!r}; use l2, mass or none")
    return pooled


class AttentionModule(nn.Module):
    """M positive attention maps from a feature map: conv3x3-BN-ReLU, conv1x1-BN, ELU + 1, border zeroed."""

    def __init__(self, in_channels: int, num_attentions: int, border_mask: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, num_attentions, 1, bias=False),
            nn.BatchNorm2d(num_attentions),
        )
        self.border_mask = border_mask

    def forward(self, x: Tensor) -> Tensor:
        maps = F.elu(self.body(x)) + 1
        if self.border_mask:
            h, w = maps.shape[-2:]
            bh, bw = round(h / 12), round(w / 12)
            if bh or bw:
                mask = torch.zeros(h, w, dtype=maps.dtype, device=maps.device)
                mask[bh : h - bh, bw : w - bw] = 1
                maps = maps * mask
        return maps


class TextureEnhancement(nn.Module):
    """Local average pooling, residual texture and a 3-layer densely connected block (C -> 4C channels).

    ``forward(F, size)`` returns ``(F_enh [B, 4C, H, W], D [B, C, *size])``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.out_channels = 4 * c
        self.conv0 = nn.Conv2d(c, c, 1)
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm2d(2 * c), nn.Conv2d(2 * c, c, 3, padding=1)
        self.bn3, self.conv3 = nn.BatchNorm2d(3 * c), nn.Conv2d(3 * c, c, 3, padding=1)
        self.bn4, self.conv_last = nn.BatchNorm2d(4 * c), nn.Conv2d(4 * c, 4 * c, 1)
        self.bn_last = nn.BatchNorm2d(4 * c)

    def forward(self, feature: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
        d = F.adaptive_avg_pool2d(feature, tuple(size))
        t = feature - F.interpolate(d, size=feature.shape[-2:], mode="nearest")
        f0 = self.conv0(t)
        c1 = torch.cat([f0, self.conv1(F.relu(self.bn1(f0)))], dim=1)
        c2 = torch.cat([c1, self.conv2(F.relu(self.bn2(c1)))], dim=1)
        c3 = torch.cat([c2, self.conv3(F.relu(self.bn3(c2)))], dim=1)
        return self.bn_last(self.conv_last(F.relu(self.bn4(c3)))), d


def regional_independence_loss(
    features: Tensor,
    centres: Tensor,
    labels: Tensor,
    alpha: float | Tensor,
    margin_in: Sequence[float] | Tensor,
    margin_out: float,
    squared: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """The RIL (see the module docstring) of region features ``V [B, M, N]`` against centres ``[M, N]``.

    Returns ``(intra [B], inter (0-d), c^t [M, N])``: the per-sample intra-region term
    ``Σ_j max(d(V_j^i, c_j^t) - m_in(y_i), 0)``, the inter-centre term
    ``Σ_{j≠k} max(m_out - d(c_j^t, c_k^t), 0)`` (ordered pairs) and the updated centres (with gradient
    through the batch mean; detach to store). ``margin_in`` is indexed by the label (0 real, 1 fake); ``d`` is
    the squared L2 distance or the L2 distance (``squared=False``).
    """
    centres = centres.to(features.dtype)
    new = centres + alpha * (features.mean(dim=0) - centres)
    margins = torch.as_tensor(margin_in, dtype=features.dtype, device=features.device)[labels.long()]
    diff = (features - new.unsqueeze(0)).pow(2).sum(-1)  # [B, M]
    gaps = (new.unsqueeze(0) - new.unsqueeze(1)).pow(2).sum(-1)  # [M, M]
    if not squared:
        diff, gaps = diff.clamp_min(1e-12).sqrt(), gaps.clamp_min(1e-12).sqrt()
    intra = F.relu(diff - margins.unsqueeze(1)).sum(dim=1)
    off = ~torch.eye(new.shape[0], dtype=torch.bool, device=new.device)
    inter = F.relu(margin_out - gaps[off]).sum()
    return intra, inter, new


def gaussian_kernel1d(size: int, sigma: float) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class AGDA(nn.Module):
    """Attention guided data augmentation (soft attention drop of the authors' ``AGDA.soft_drop2``)."""

    def __init__(
        self,
        kernel_size: int = 11,
        sigma: float = 7.0,
        threshold: Sequence[float] = (0.4, 0.6),
        zoom: Sequence[float] = (3.0, 5.0),
        scale_factor: float = 0.5,
        noise_rate: float = 0.1,
    ) -> None:
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel1d(kernel_size, sigma), persistent=False)
        self.threshold, self.zoom = tuple(threshold), tuple(zoom)
        self.scale_factor, self.noise_rate = scale_factor, noise_rate

    def blur(self, x: Tensor) -> Tensor:
        c, k = x.shape[1], self.kernel.to(x.dtype)
        pad = k.numel() // 2
        mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def soften(self, a: Tensor, threshold: float, zoom: float) -> Tensor:
        bottom = torch.sigmoid(torch.tensor(-threshold * zoom, dtype=a.dtype, device=a.device))
        return (torch.sigmoid((a - threshold) * zoom) - bottom) / (1 - bottom)

    def select(self, attentions: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """One map per sample (p ∝ sqrt(mass + 1)) at ``size``, over its maximum: ``([B,1,H,W], [B])``."""
        weights = torch.sqrt(attentions.sum(dim=(2, 3)).float() + 1)
        index = torch.multinomial(weights, 1).squeeze(1)
        maps = F.interpolate(attentions, size=tuple(size), mode="bilinear", align_corners=True)
        chosen = maps[torch.arange(maps.shape[0], device=maps.device), index].unsqueeze(1)
        return chosen / (chosen.flatten(1).amax(dim=1).view(-1, 1, 1, 1) + 1e-8), index

    @torch.no_grad()
    def forward(self, images: Tensor, attentions: Tensor) -> tuple[Tensor, Tensor]:
        chosen, index = self.select(attentions.detach().to(images.dtype), images.shape[-2:])
        threshold = float(torch.empty(()).uniform_(*self.threshold))
        zoom = float(torch.empty(()).uniform_(*self.zoom))
        a = self.soften(chosen, threshold, zoom)
        small = F.interpolate(images, scale_factor=self.scale_factor, mode="bilinear", align_corners=True)
        small = self.blur(small) + torch.randn_like(small) * self.noise_rate
        degraded = F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=True)
        return images * (1 - a) + degraded * a, index


class MAT(Method):
    """Multi-attentional detector: attention maps, texture enhancement, BAP, RIL + CE, AGDA (Zhao et al.)."""

    name = "mat"
    gradient_sync = "ddp"  # one forward (two with AGDA, one loss), one backward
    find_unused_parameters = True  # the warm-up trains warm_head only; afterwards warm_head is idle

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        num_attentions: int = 4,
        texture_stride: int = 4,
        attention_stride: int = 16,
        mid_dims: int = 256,
        dropout: float = 0.25,
        dropout_final: float = 0.5,
        border_mask: bool = True,
        ce_weight: float = 1.0,
        ril: Mapping | None = None,
        agda: Mapping | None = None,
        warmup_fraction: float = 0.0,
        name: str = "mat",
    ) -> None:
        super().__init__()
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(
                f"{self.body.backbone.timm_name}: MAT needs a convolutional NCHW backbone"
            )
        self.texture_at = self.body.last_at(texture_stride)
        self.attention_at = self.body.last_at(attention_stride)
        if self.texture_at >= self.attention_at:
            raise ValueError("MAT's texture layer must come before its attention layer")
        self.M = int(num_attentions)
        c_tex = self.body.shape(self.texture_at)[0]
        c_final = self.body.shape(len(self.body) - 1)[0]
        self.attention = AttentionModule(self.body.shape(self.attention_at)[0], self.M, border_mask)
        self.texture = TextureEnhancement(c_tex)
        self.project_local = nn.Sequential(
            nn.Linear(self.M * self.texture.out_channels, mid_dims),
            nn.Hardswish(),
            nn.Linear(mid_dims, mid_dims),
        )
        self.project_final = nn.Linear(c_final, mid_dims)
        self.classifier = nn.Sequential(
            nn.Linear(2 * mid_dims, mid_dims), nn.Hardswish(), nn.Linear(mid_dims, 1)
        )
        self.region_dropout, self.dropout_final = float(dropout), nn.Dropout(dropout_final)
        self.warm_head = nn.Linear(self.body.backbone.num_features, 1)  # DeepfakeBench's backbone phase
        ril = {
            "weight": 1.0,
            "alpha": 0.05,
            "alpha_decay": 0.9,
            "margin_in": [0.05, 0.1],
            "margin_out": 0.2,
            "squared": True,
            **dict(ril or {}),
        }
        self.ril_weight, self.alpha_decay = float(ril["weight"]), float(ril["alpha_decay"])
        self.margin_in, self.margin_out = [float(m) for m in ril["margin_in"]], float(ril["margin_out"])
        self.squared = bool(ril["squared"])
        self.register_buffer("alpha", torch.tensor(float(ril["alpha"])))
        self.register_buffer("centres", torch.zeros(self.M, c_tex))
        self.register_buffer("in_warmup", torch.tensor(False))
        agda = {"enabled": True, "loss_weight": 1.0, **dict(agda or {})}
        enabled, weight = bool(agda.pop("enabled")), float(agda.pop("loss_weight"))
        self.agda_weight = weight if enabled else 0.0
        self.agda = AGDA(**agda)
        self.ce_weight, self.warmup_fraction = float(ce_weight), float(warmup_fraction)
        self.warmup_epochs = 0
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    # -- network ------------------------------------------------------------------------------------
    def layers(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(texture map, attention-layer map, last map)."""
        x = self.body.run(images, 0, self.texture_at + 1)
        texture = x
        x = self.body.run(x, self.texture_at + 1, self.attention_at + 1)
        middle = x
        return texture, middle, self.body.run(x, self.attention_at + 1)

    def forward_parts(self, images: Tensor) -> dict[str, Tensor]:
        """``logit [B]``, ``attention [B, M, h, w]`` and the RIL region features ``regions [B, M, C]``."""
        texture, middle, final = self.layers(images)
        maps = self.attention(middle)
        enhanced, d = self.texture(texture, maps.shape[-2:])
        p = attention_pooling(enhanced, maps, "l2")  # [B, M, 4C]
        pool_maps = maps
        if self.training and self.region_dropout > 0:
            keep = torch.bernoulli(
                torch.full((p.shape[0], self.M, 1), 1 - self.region_dropout, device=p.device)
            )
            keep = keep.to(p.dtype) / (1 - self.region_dropout)
            p, pool_maps = p * keep, maps * keep.unsqueeze(-1)
        local = F.hardswish(self.project_local(p.flatten(1)))
        g = attention_pooling(final, pool_maps.sum(dim=1, keepdim=True), "mass").squeeze(1)
        glob = F.hardswish(self.project_final(self.dropout_final(g)))
        logit = self.classifier(torch.cat([local, glob], dim=1)).squeeze(1)
        d = d - d.mean(dim=(2, 3), keepdim=True)
        d = d / (d.std(dim=(2, 3), keepdim=True) + 1e-8)  # the authors' standardisation of D
        return {"logit": logit, "attention": maps, "regions": attention_pooling(d, maps, "l2")}

    def warm_logits(self, images: Tensor) -> Tensor:
        return self.warm_head(self.body.backbone.pool(self.body.run(images))).squeeze(1)

    # -- training -----------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.warmup_epochs = math.floor(self.warmup_fraction * epochs)
        return self.one_optimizer(epochs, steps_per_epoch)

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext | None) -> None:
        self.in_warmup.fill_(epoch < self.warmup_epochs)

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> None:
        if not bool(self.in_warmup):
            self.alpha.mul_(self.alpha_decay)

    def _ril(self, regions: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        intra, inter, new = regional_independence_loss(
            regions.float(), self.centres, labels, self.alpha, self.margin_in, self.margin_out, self.squared
        )
        with torch.no_grad():
            stored = new.detach().clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(stored)
                stored /= dist.get_world_size()
            self.centres.copy_(stored)
        return intra, inter

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample losses and logs of a batch (the forward ``ctx.forward`` runs)."""
        images, labels = batch["image"], batch["label"].float()
        if bool(self.in_warmup):
            with ctx.autocast():
                logits = self.warm_logits(images)
            per_sample = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
            logs: dict = {"warmup_ce": per_sample.mean().detach()}
        else:
            with ctx.autocast():
                out = self.forward_parts(images)
            ce = F.binary_cross_entropy_with_logits(out["logit"].float(), labels, reduction="none")
            intra, inter = self._ril(out["regions"], labels)
            per_sample = self.ce_weight * ce + self.ril_weight * (intra + inter)
            logs = {"ce": ce.mean().detach(), "ril_intra": intra.mean().detach(), "ril_inter": inter.detach()}
            if self.agda_weight > 0:
                augmented, _ = self.agda(images, out["attention"])
                with ctx.autocast():
                    out2 = self.forward_parts(augmented)
                ce2 = F.binary_cross_entropy_with_logits(out2["logit"].float(), labels, reduction="none")
                intra2, inter2 = self._ril(out2["regions"], labels)
                per_sample = per_sample + self.agda_weight * (
                    self.ce_weight * ce2 + self.ril_weight * (intra2 + inter2)
                )
                logs["agda_ce"] = ce2.mean().detach()
        return per_sample, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        if bool(self.in_warmup):
            return torch.sigmoid(self.warm_logits(images).float())
        return torch.sigmoid(self.forward_parts(images)["logit"].float())

    def run_info(self) -> dict:
        names = self.body.names
        return {
            "texture_layer": names[self.texture_at],
            "attention_layer": names[self.attention_at],
            "warmup_epochs": self.warmup_epochs,
        }
