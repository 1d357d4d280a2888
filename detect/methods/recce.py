"""RECCE: Cao, Ma, Yao, Chen, Ding and Yang, "End-to-End Reconstruction-Classification Learning for Face
Forgery Detection", CVPR 2022; the authors' code ``VISION-SJTU/RECCE``; DeepfakeBench ``recce_detector.py``.

Components as the paper names them (its Sec. 3: reconstruction learning, multi-scale graph reasoning,
reconstruction-guided attention, and the overall objective; equation numbers are not cited because the
paper's text could not be consulted here, the formulas below are read from the authors' code):

* **Encoder-decoder reconstruction of genuine faces** (reconstruction learning): the encoder is the
  classifier's backbone up to its first middle-flow layer (Xception ``block4``, output stride 16); the
  decoder (:class:`RecceDecoder`) up-samples ×2 three times (separable convolutions, BN, ReLU; an
  Xception-style residual block after the first two) to 3 channels with ``tanh`` and is resized to the
  input. The **reconstruction loss** is the mean L1 error over the *real* images of the batch only,
  ``L_r = 1/|S_r| Σ_{i∈S_r} mean |x̂_i - x_i|`` (:func:`real_reconstruction_loss`; 0 when the batch holds
  no real image): the decoder learns the distribution of genuine faces, so forgeries reconstruct badly.
* **Metric-learning loss** on the latent features: at the encoder output and after the first two decoder
  stages, with ``s_ij = (cos(z_i, z_j) + 1) / 2`` of the globally pooled features,
  ``L_m = Σ_scales max(1 - mean_{i≠j real} s_ij + mean_{real-fake pairs} s_ij, 0)``
  (:func:`pair_similarity`, :func:`metric_learning_loss`): real faces compact, fakes apart from them.
* **Multi-scale graph reasoning** (:class:`GraphReasoning`): bipartite graphs between each encoder
  position (vertex set A, the stride-16 map) and the decoder positions it covers at two scales (2×2 of
  the first decoder map, 4×4 of the second: vertex sets B, C). Each vertex set is embedded, the B/C
  neighbours of an A vertex are weighted by ``softmax(ReLU(W [a; b]))`` over the neighbourhood, summed,
  gated by ``1 - σ(conv(A))``; ``[agg_B; agg_C; emb_A]`` through a sigmoid and a 1×1 re-projection is added
  to the encoder map (a residual). Evaluated for all positions at once here (the authors loop over them).
* **Reconstruction-guided attention** (:class:`GuidedAttention`): ``M = σ(conv1x1(ReLU(conv3x3(|x - x̂|))))``
  at the feature map's size, ``F' = M ⊙ h(F) + dropout(F)`` with ``h`` = conv1x1-BN-ReLU, after the next
  encoder layer (Xception ``block8``); the rest of the backbone, global pooling, dropout and a linear logit
  classify.
* **Objective**: ``L = L_ce + λ_r L_r + λ_m L_m`` with λ_r = λ_m = 0.1 (the authors' ``lambda_1``,
  ``lambda_2``); binary cross-entropy on one logit, as the authors train it (``num_classes: 1``). Their
  trainer also "floods" the cross-entropy, ``|L_ce - b| + b`` with b = 0.04 (``flood``; 0: off, not in the
  paper), and adds white noise of std 1e-6 to a random half of the training images (``input_noise``).
* DeepfakeBench's detector (``method=recce/dfb``) builds the same network with a two-logit head and trains
  it with the cross-entropy only: its ``get_losses`` ignores the reconstruction and metric terms.

Backbones other than Xception: ``layout: auto`` puts the three taps (encoder output, graph reasoning,
attention) at the backbone's last layer at output stride 16.
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

#: The authors' taps in Xception: encoder output (decoder input), graph reasoning after, attention after.
XCEPTION_LAYOUT = {"encode": "block4", "reason": "block7", "attend": "block8"}


# -- losses ------------------------------------------------------------------------------------------
def reconstruction_errors(reconstruction: Tensor, images: Tensor) -> Tensor:
    """Per-sample mean absolute error ``mean_chw |x̂ - x|``, ``[B]`` (float32)."""
    return (reconstruction.float() - images.float()).abs().flatten(1).mean(dim=1)


def real_reconstruction_loss(reconstruction: Tensor, images: Tensor, labels: Tensor) -> Tensor:
    """``L_r``: the mean L1 reconstruction error over the real (label 0) images only; 0 without any."""
    errors = reconstruction_errors(reconstruction, images)
    real = (labels == 0).float()
    return (errors * real).sum() / real.sum().clamp_min(1.0)


def pair_similarity(features: Tensor) -> Tensor:
    """``s_ij = (cos(z_i, z_j) + 1) / 2`` of the globally average-pooled features, ``[B, B]`` (float32)."""
    z = F.normalize(features.float().mean(dim=(2, 3)), p=2, dim=1)
    return (z @ z.t() + 1.0) / 2.0


def metric_learning_loss(similarity: Tensor, labels: Tensor, eps: float = 1e-6) -> Tensor:
    """``max(1 - mean_{i≠j, both real} s_ij + mean_{one real, one fake} s_ij, 0)`` for one ``[B, B]`` matrix.

    An empty pair set contributes 0 to its mean (``eps`` in the denominator, as in the authors' code).
    """
    fake = labels.bool()
    differ = (fake[:, None] ^ fake[None, :]).float()
    both_real = (~fake[:, None] & ~fake[None, :]).float()
    both_real = both_real * (1 - torch.eye(len(labels), device=labels.device))
    apart = (similarity * differ).sum() / (differ.sum() + eps)
    together = (similarity * both_real).sum() / (both_real.sum() + eps)
    return (1.0 - together + apart).clamp_min(0.0)


# -- modules -----------------------------------------------------------------------------------------
class SeparableConv2d(nn.Sequential):
    """Depthwise k×k then pointwise 1×1 convolution, no bias (Xception's separable convolution)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)


class ResidualSeparableBlock(nn.Module):
    """Three ReLU-separable conv-BN units with an identity shortcut (Xception's middle-flow block)."""

    def __init__(self, channels: int, reps: int = 3) -> None:
        super().__init__()
        units: list[nn.Module] = []
        for _ in range(reps):
            units += [nn.ReLU(inplace=False), SeparableConv2d(channels, channels), nn.BatchNorm2d(channels)]
        self.rep = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        return self.rep(x) + x


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest ×2 up-sampling, a separable 3×3 convolution, BN, ReLU."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        SeparableConv2d(in_channels, out_channels),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class RecceDecoder(nn.Module):
    """Decoder of the stride-16 encoder map back to a 3-channel image at stride 2 (``tanh``).

    Returns ``(first stage [B, c1, 2h, 2w], second stage [B, c2, 4h, 4w], image [B, 3, 8h, 8w])``; the two
    stages are the graph's vertex sets B and C and carry the metric-learning loss.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (256, 128, 64)) -> None:
        super().__init__()
        c1, c2, c3 = (int(c) for c in channels)
        self.channels = (c1, c2, c3)
        self.up1, self.block1 = up_block(in_channels, c1), ResidualSeparableBlock(c1)
        self.up2, self.block2 = up_block(c1, c2), ResidualSeparableBlock(c2)
        self.up3 = up_block(c2, c3)
        self.to_image = nn.Sequential(nn.Conv2d(c3, 3, 1, bias=False), nn.Tanh())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        first = self.block1(self.up1(x))
        second = self.block2(self.up2(first))
        return first, second, self.to_image(self.up3(second))


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, d_out, bias=False), nn.ReLU(True), nn.Linear(d_out, d_out, bias=False)
    )


class GraphReasoning(nn.Module):
    """Multi-scale bipartite graph reasoning between an encoder map A ``[B, Ca, h, w]`` and two decoder maps
    B ``[B, Cb, r_b h, r_b w]``, C ``[B, Cc, r_c h, r_c w]``; returns ``[B, Ca, h, w]`` (to be added to A)."""

    def __init__(
        self, a_channels: int, b_channels: int, c_channels: int, dim: int = 256,
        ratios: Sequence[int] = (2, 4), dropout: float = 0.2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.ratios = (int(ratios[0]), int(ratios[1]))
        self.embed_a = nn.Sequential(
            nn.Conv2d(a_channels, dim, 1, bias=False), nn.ReLU(True), nn.Conv2d(dim, dim, 1, bias=False)
        )
        self.gate_b = nn.Sequential(nn.Conv2d(a_channels, dim, 1, bias=False), nn.Sigmoid())
        self.gate_c = nn.Sequential(nn.Conv2d(a_channels, dim, 1, bias=False), nn.Sigmoid())
        self.embed_b, self.embed_c = _mlp(b_channels, dim), _mlp(c_channels, dim)
        self.weight_ab = nn.Linear(2 * dim, 1, bias=False)
        self.weight_ac = nn.Linear(2 * dim, 1, bias=False)
        self.project = nn.Sequential(
            nn.Conv2d(3 * dim, a_channels, 1, bias=False),
            nn.ReLU(True),
            nn.Conv2d(a_channels, a_channels, 1, bias=False),
            nn.Dropout(dropout),
        )

    @staticmethod
    def neighbours(x: Tensor, ratio: int) -> Tensor:
        """The ``ratio × ratio`` block of ``x`` under each coarse position: ``[B, ratio², h·w, C]``."""
        b, c = x.shape[:2]
        blocks = F.unfold(x, kernel_size=ratio, stride=ratio)  # [B, C·r², L]
        return blocks.view(b, c, ratio * ratio, -1).permute(0, 2, 3, 1)

    @staticmethod
    def aggregate(emb_a: Tensor, emb_n: Tensor, weight: nn.Linear) -> Tensor:
        """``Σ_k softmax_k(ReLU(W [a; n_k])) n_k`` per coarse position: emb_a ``[B, L, D]``, emb_n
        ``[B, K, L, D]`` -> ``[B, L, D]``."""
        a = emb_a.unsqueeze(1).expand(-1, emb_n.shape[1], -1, -1)
        w = torch.softmax(F.relu(weight(torch.cat([a, emb_n], dim=-1))), dim=1)  # [B, K, L, 1]
        return (w * emb_n).sum(dim=1)

    def forward(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        n, _, h, w = a.shape
        rb, rc = self.ratios
        if b.shape[-2:] != (rb * h, rb * w) or c.shape[-2:] != (rc * h, rc * w):
            raise ValueError(
                f"graph reasoning: decoder maps {tuple(b.shape[-2:])}, {tuple(c.shape[-2:])} are not "
                f"{rb}x and {rc}x the encoder map {(h, w)}"
            )
        emb_a = self.embed_a(a).flatten(2)  # [B, D, L]
        emb_b = self.embed_b(self.neighbours(b, rb))  # [B, rb², L, D]
        emb_c = self.embed_c(self.neighbours(c, rc))
        a_t = emb_a.transpose(1, 2)
        agg_b = self.aggregate(a_t, emb_b, self.weight_ab).transpose(1, 2) * (1 - self.gate_b(a).flatten(2))
        agg_c = self.aggregate(a_t, emb_c, self.weight_ac).transpose(1, 2) * (1 - self.gate_c(a).flatten(2))
        joined = torch.sigmoid(torch.cat([agg_b, agg_c, emb_a], dim=1)).view(n, -1, h, w)
        return self.project(joined)


class GuidedAttention(nn.Module):
    """Reconstruction-guided attention: ``σ(conv1x1(ReLU(conv3x3(|x - x̂|)))) ⊙ h(F) + dropout(F)``."""

    def __init__(self, channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv2d(3, 3, 3, padding=1, bias=False),
            nn.ReLU(True),
            nn.Conv2d(3, 1, 1, bias=False),
            nn.Sigmoid(),
        )
        self.transform = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)
        )
        self.dropout = nn.Dropout(dropout)

    def attention(self, images: Tensor, reconstruction: Tensor, size: Sequence[int]) -> Tensor:
        """``[B, 1, h, w]``: the gate on the reconstruction residual resized to the feature map."""
        residual = (images - reconstruction).abs()
        residual = F.interpolate(residual, size=tuple(size), mode="bilinear", align_corners=True)
        return self.gate(residual)

    def forward(self, images: Tensor, reconstruction: Tensor, features: Tensor) -> Tensor:
        gate = self.attention(images, reconstruction, features.shape[-2:])
        return gate * self.transform(features) + self.dropout(features)


# -- the method --------------------------------------------------------------------------------------
class Recce(Method):
    """Reconstruction-classification learning (Cao et al., CVPR 2022)."""

    name = "recce"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        layout: str | Mapping = "auto",
        decoder_channels: Sequence[int] = (256, 128, 64),
        graph_dim: int = 256,
        dropout: float = 0.2,
        reconstruction_weight: float = 0.1,
        metric_weight: float = 0.1,
        flood: float = 0.0,
        input_noise: float = 1e-6,
        name: str = "recce",
    ) -> None:
        super().__init__()
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: RECCE needs an NCHW backbone")
        self.layout = self._layout(layout)
        self.encode_at, self.reason_at, self.attend_at = (
            self.body.index(self.layout[k]) for k in ("encode", "reason", "attend")
        )
        if not self.encode_at <= self.reason_at <= self.attend_at:
            raise ValueError(f"method.layout={self.layout}: needs encode <= reason <= attend")
        c_enc, h, _ = self.body.shape(self.encode_at)
        c_reason, h_reason, _ = self.body.shape(self.reason_at)
        c_attend = self.body.shape(self.attend_at)[0]
        if h_reason != h:
            raise ValueError(f"method.layout={self.layout}: the reasoning layer must keep the encoder's size")
        self.decoder = RecceDecoder(c_enc, decoder_channels)
        c1, c2, _ = self.decoder.channels
        self.reasoning = GraphReasoning(c_reason, c1, c2, graph_dim, (2, 4), dropout)
        self.attention = GuidedAttention(c_attend, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.body.shape(len(self.body) - 1)[0], 1)
        self.reconstruction_weight, self.metric_weight = float(reconstruction_weight), float(metric_weight)
        self.flood, self.input_noise = float(flood), float(input_noise)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _layout(self, layout: str | Mapping) -> dict[str, str]:
        if isinstance(layout, Mapping):
            missing = {"encode", "reason", "attend"} - set(layout)
            if missing:
                raise ValueError(f"method.layout lacks {sorted(missing)}; give encode, reason and attend")
            return {k: str(layout[k]) for k in ("encode", "reason", "attend")}
        if layout != "auto":
            raise ValueError(
                f"method.layout={layout!r}; use auto or a mapping of encode/reason/attend layers"
            )
        if self.body.backbone.timm_name == "legacy_xception":
            return dict(XCEPTION_LAYOUT)
        last16 = self.body.names[self.body.last_at(16)]
        return {"encode": last16, "reason": last16, "attend": last16}

    # -- network ------------------------------------------------------------------------------------
    def forward_parts(self, images: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """``logit [B]``, ``reconstruction [B, 3, H, W]``, the metric loss's ``similarities`` (3 × [B, B])."""
        x = images
        if self.training and self.input_noise > 0:
            pick = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) > 0.5).to(x.dtype)
            x = x + torch.randn_like(x) * self.input_noise * pick
        embedding = self.body.run(x, 0, self.encode_at + 1)
        first, second, image = self.decoder(self.dropout(embedding))
        reconstruction = F.interpolate(image, size=images.shape[-2:], mode="bilinear", align_corners=True)
        similarities = [pair_similarity(f) for f in (embedding, first, second)]
        a = self.body.run(embedding, self.encode_at + 1, self.reason_at + 1)
        fused = self.reasoning(a, first, second) + a
        f = self.body.run(fused, self.reason_at + 1, self.attend_at + 1)
        f = self.attention(images, reconstruction, f)
        f = self.body.run(f, self.attend_at + 1)
        logit = self.head(self.dropout(f.mean(dim=(2, 3)))).squeeze(1)
        return {"logit": logit, "reconstruction": reconstruction, "similarities": similarities}

    def logits(self, images: Tensor) -> Tensor:
        return self.forward_parts(images)["logit"]

    # -- training -----------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample losses (their mean is the objective) and the logged terms."""
        images, labels = batch["image"], batch["label"].float()
        with ctx.autocast():
            out = self.forward_parts(images)
        ce = F.binary_cross_entropy_with_logits(out["logit"].float(), labels, reduction="none")
        if (
            self.flood > 0
        ):  # |mean CE - b| + b, written per sample: s·ce_i + (1 - s)·b with s = sign(mean - b)
            s = torch.sign(ce.mean().detach() - self.flood)
            ce = s * ce + (1 - s) * self.flood
        errors = reconstruction_errors(out["reconstruction"], images)
        real = (labels == 0).float()
        n_real = real.sum().clamp_min(1.0)
        reconstruction = (errors * real).sum() / n_real
        metric = torch.stack([metric_learning_loss(s, labels) for s in out["similarities"]]).sum()
        # the batch mean of these per-sample losses is L_ce + λ_r L_r + λ_m L_m
        per_sample = (
            ce
            + self.reconstruction_weight * errors * real * (len(labels) / n_real)
            + self.metric_weight * metric
        )
        logs = {
            "ce": ce.mean().detach(),
            "reconstruction": reconstruction.detach(),
            "metric": metric.detach(),
        }
        return per_sample, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(images).float())

    def run_info(self) -> dict:
        return {"layout": self.layout}
