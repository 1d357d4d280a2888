"""SRM: Luo, Zhang, Yan and Liu, "Generalizing Face Forgery Detection with High-frequency Features",
CVPR 2021 (arXiv:2103.12376), the two-stream detector DeepfakeBench calls ``srm`` (``srm_detector.py``).

The paper's method section (Sec. 3) module by module, named as the paper names them (equation numbers are
not cited: the paper's text could not be consulted here), and where each lives:

* **Two streams** (the framework overview): an RGB stream on the image and a high-frequency stream on its
  SRM residual, two copies of the same backbone (both from the same pretrained weights, as DeepfakeBench
  does).
* **SRM residual** ("multi-scale high-frequency feature extraction"): three fixed 5x5 high-pass kernels of
  Fridrich & Kodovsky's Spatial Rich Model, normalised by 1/4, 1/12 and 1/2 (:data:`SRM_KERNELS`); each
  kernel is convolved with every colour channel and the three responses summed, so the residual has 3
  channels and the stream keeps the backbone's 3-channel stem; the residual is truncated to [-3, 3] (the
  authors' modules, DeepfakeBench ``SRMConv2d_simple``).
* **Multi-scale high-frequency features** (the same module): after each of two low-level layers the same
  kernels are applied to every channel of the RGB stream's feature map (3C maps, truncated), a 1x1
  convolution + BN + ReLU brings them back to C channels and they are added to the high-frequency stream,
  followed by a ReLU (:class:`MultiScaleSRM`; DeepfakeBench ``SRMConv2d_Separate``, whose kernel
  ``np.repeat(axis=0)`` hands every group three copies of one kernel instead of the three kernels: here each
  channel gets all three).
* **Residual guided spatial attention** (RSA): the residual goes through conv3x3/2-BN-ReLU,
  conv3x3-BN-ReLU and a CBAM-style spatial attention (channel mean and max, conv7x7, sigmoid) to a map A;
  the low-level RGB features become ``F' = BN-ReLU(F ⊙ A + F)`` (:class:`ResidualSpatialAttention`). It is
  computed from the residual once (DeepfakeBench filters the residual a second time inside
  ``SRMPixelAttention``; the authors' two-stream code passes the residual directly, as here).
* **Dual cross-modality attention** (DCMA, the "cross-modality attention module"): twice in the middle
  layers. Keys of both modalities (1x1 convs, then a shared 1x1 conv) give the correlation
  ``T = K_rgb^T K_hf`` (HW x HW); ``A_{h->r} = softmax(Lin_1(T))`` and ``A_{r->h} = softmax(Lin_2(T^T))``
  row-wise; each stream receives the other's value projection through its attention,
  ``F_rgb' = γ_1 V_hf A_{h->r}^T + F_rgb`` and ``F_hf' = γ_2 V_rgb A_{r->h}^T + F_hf`` with γ initialised to 0
  (:class:`DualCrossModalAttention`). The linear maps over the HW positions are in the authors' released
  modules; they fix the map size, recorded from a dry run at ``input_size``.
* **Fusion and classification**: the two last feature maps are concatenated, reduced by 1x1 conv-BN-ReLU and
  reweighted by channel attention, ``F ⊙ CA(F)`` (DeepfakeBench's ``FeatureFusionModule``, "changed by yong":
  the authors' earlier ``F + F ⊙ CA(F)``), globally averaged and classified by a cosine classifier trained
  with the AM-Softmax loss (Wang et al., IEEE SPL 2018: ``-log e^{s(cos θ_y - m)} / (e^{s(cos θ_y - m)}
  + e^{s cos θ_other})``); the authors' code pairs AM-Softmax with an ``AngleSimpleLinear`` cosine layer,
  DeepfakeBench feeds it Xception's plain linear logits. s = 30, m = 0.45 ("params specified by the
  author", DeepfakeBench ``srm_detector.py``). ``predict`` is ``softmax(s cos θ)[fake]``.

Backbone layout: Xception (``legacy_xception``) uses the authors' split, multi-scale SRM after the entry
flow's ``conv1`` and ``conv2`` blocks (``act1``, ``act2``), the attention after ``act2``, DCMA after
``block3`` and ``block7``. Any other chain-like backbone
(:class:`~detect.models.staged_backbone.StagedBackbone`) gets the same pattern by output stride: multi-scale
SRM after the last layers of the first two strides, the attention after the first, DCMA after the first and
the middle layer at stride 16 (or the last layers at strides 8 and 16 when stride 16 has one layer).
``layout`` names the layers explicitly.

Left out: DeepfakeBench constructs Gaussian noise / smoothing modules it never calls; they are not here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

#: The three SRM kernels of Luo et al., normalised: KB (1/4), KV (1/12), 2nd order (1/2).
SRM_KERNELS = np.stack(
    [
        np.array(
            [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
            dtype=np.float64,
        )
        / 4.0,
        np.array(
            [
                [-1, 2, -2, 2, -1],
                [2, -6, 8, -6, 2],
                [-2, 8, -12, 8, -2],
                [2, -6, 8, -6, 2],
                [-1, 2, -2, 2, -1],
            ],
            dtype=np.float64,
        )
        / 12.0,
        np.array(
            [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
            dtype=np.float64,
        )
        / 2.0,
    ]
)

#: The authors' layout for timm's ``legacy_xception`` (DeepfakeBench ``fea_part1_0`` ... ``fea_part5``).
XCEPTION_LAYOUT = {"ms": ["act1", "act2"], "rsa": "act2", "dcma": ["block3", "block7"]}


def srm_kernels() -> Tensor:
    """``[3, 5, 5]`` float32: the normalised SRM kernels (symmetric: correlation = convolution)."""
    return torch.from_numpy(SRM_KERNELS).float()


class SRMFilter(nn.Module):
    """Image -> 3-channel SRM residual: kernel k convolved with every input channel, summed (zero padding 2),
    truncated to [-T, T]."""

    def __init__(self, in_channels: int = 3, truncation: float | None = 3.0) -> None:
        super().__init__()
        weight = srm_kernels()[:, None].repeat(1, in_channels, 1, 1)  # [3, C, 5, 5]
        self.register_buffer("weight", weight, persistent=False)
        self.truncation = truncation

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight.to(x.dtype), padding=2)
        return out.clamp(-self.truncation, self.truncation) if self.truncation else out


class MultiScaleSRM(nn.Module):
    """SRM on a C-channel feature map, per channel (3C maps: channel c -> 3c, 3c+1, 3c+2), truncated, then
    conv1x1 (3C -> C_out) + BN + ReLU (multi-scale high-frequency features)."""

    def __init__(self, channels: int, out_channels: int, truncation: float | None = 3.0) -> None:
        super().__init__()
        self.channels, self.truncation = channels, truncation
        self.register_buffer("weight", srm_kernels()[:, None].repeat(channels, 1, 1, 1), persistent=False)
        self.out = nn.Sequential(
            nn.Conv2d(3 * channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self.out[0].weight, a=1)

    def residual(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight.to(x.dtype), padding=2, groups=self.channels)
        return out.clamp(-self.truncation, self.truncation) if self.truncation else out

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.residual(x))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: sigmoid(conv7x7([mean_c x, max_c x]))."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.xavier_normal_(self.conv.weight, gain=0.02)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ResidualSpatialAttention(nn.Module):
    """Residual guided spatial attention: SRM residual -> attention map A at the RGB features'
    size; ``forward(features, residual)`` returns ``BN-ReLU(F ⊙ A + F)``."""

    def __init__(self, channels: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        for m in self.conv:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=1)
        self.attention = SpatialAttention()
        self.post = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def attention_map(self, residual: Tensor, size: tuple[int, int]) -> Tensor:
        att = self.attention(self.conv(residual))
        if tuple(att.shape[-2:]) != tuple(size):  # exact for Xception; other stems are resized
            att = F.interpolate(att, size=size, mode="bilinear", align_corners=False)
        return att

    def forward(self, features: Tensor, residual: Tensor) -> Tensor:
        att = self.attention_map(residual, features.shape[-2:])
        return self.post(features * att + features)


class DualCrossModalAttention(nn.Module):
    """Dual cross-modality attention of RGB features x and high-frequency features y, ``[B, C, H, W]``."""

    def __init__(self, channels: int, positions: int, ratio: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.positions = positions
        self.key_rgb = nn.Conv2d(channels, hidden, 1)
        self.key_hf = nn.Conv2d(channels, hidden, 1)
        self.key_shared = nn.Conv2d(hidden, hidden, 1)
        self.lin_h2r = nn.Linear(positions, positions)
        self.lin_r2h = nn.Linear(positions, positions)
        self.value_rgb = nn.Conv2d(channels, channels, 1)
        self.value_hf = nn.Conv2d(channels, channels, 1)
        self.gamma_rgb = nn.Parameter(torch.zeros(1))
        self.gamma_hf = nn.Parameter(torch.zeros(1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=0.02)

    def attention(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(A_{h->r}, A_{r->h})``, each ``[B, HW, HW]`` with rows summing to 1."""
        b, _, h, w = x.shape
        if h * w != self.positions:
            raise ValueError(
                f"DCMA was built for {self.positions} positions (the map at backbone.input_size) but got "
                f"{h}x{w}: run SRM at its input size"
            )
        k_rgb = self.key_shared(self.key_rgb(x)).flatten(2).transpose(1, 2)  # [B, HW, C']
        k_hf = self.key_shared(self.key_hf(y)).flatten(2)  # [B, C', HW]
        energy = torch.bmm(k_rgb, k_hf)  # T[i, j] = <k_rgb_i, k_hf_j>
        return (
            torch.softmax(self.lin_h2r(energy), dim=-1),
            torch.softmax(self.lin_r2h(energy.transpose(1, 2)), dim=-1),
        )

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        a_h2r, a_r2h = self.attention(x, y)
        from_hf = torch.bmm(self.value_hf(y).flatten(2), a_h2r.transpose(1, 2)).view(b, c, h, w)
        from_rgb = torch.bmm(self.value_rgb(x).flatten(2), a_r2h.transpose(1, 2)).view(b, c, h, w)
        return self.gamma_rgb * from_hf + x, self.gamma_hf * from_rgb + y


class ChannelAttention(nn.Module):
    """CBAM's channel attention: sigmoid(MLP(avgpool) + MLP(maxpool))."""

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False)
        )
        for m in self.mlp:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight, gain=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(
            self.mlp(x.mean(dim=(2, 3), keepdim=True)) + self.mlp(x.amax(dim=(2, 3), keepdim=True))
        )


class FeatureFusion(nn.Module):
    """concat -> conv1x1-BN-ReLU (2C -> C) -> ``F ⊙ CA(F)``."""

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        nn.init.kaiming_normal_(self.conv[0].weight, a=1)
        self.ca = ChannelAttention(channels, ratio)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fused = self.conv(torch.cat([x, y], dim=1))
        return fused * self.ca(fused)


class CosineClassifier(nn.Module):
    """cos θ_k between the L2-normalised feature and class weight k (the authors' ``AngleSimpleLinear``)."""

    def __init__(self, in_features: int, classes: int = 2) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, in_features).uniform_(-1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1)).clamp(-1, 1)


def am_softmax_loss(cos: Tensor, target: Tensor, margin: float, scale: float) -> Tensor:
    """Per-sample AM-Softmax (Wang et al., 2018): cross-entropy of ``s (cos θ - m·onehot(y))``."""
    onehot = F.one_hot(target.long(), cos.shape[1]).to(cos.dtype)
    return F.cross_entropy(scale * (cos - margin * onehot), target.long(), reduction="none")


def auto_layout(staged: StagedBackbone) -> dict:
    """The authors' pattern placed by output stride (see the module docstring)."""
    if staged.backbone.timm_name == "legacy_xception":
        return dict(XCEPTION_LAYOUT)
    strides = sorted({staged.reduction(i) for i in range(len(staged))})
    if len(strides) < 2 or 16 not in strides:
        raise NotImplementedError(f"{staged.backbone.timm_name}: SRM needs two low strides and stride 16")
    ms = [staged.last_at(strides[0]), staged.last_at(strides[1])]
    run16 = staged.run_at(16)
    dcma = [run16[0], run16[len(run16) // 2]] if len(run16) >= 2 else [staged.last_at(8), run16[0]]
    names = staged.names
    return {"ms": [names[i] for i in ms], "rsa": names[ms[0]], "dcma": [names[i] for i in dcma]}


class SRM(Method):
    """Two-stream RGB + SRM-residual detector with multi-scale SRM, RSA, DCMA and AM-Softmax (Luo et al.)."""

    name = "srm"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        layout: Mapping | None = None,
        truncation: float | None = 3.0,
        am_margin: float = 0.45,
        am_scale: float = 30.0,
        dropout: float = 0.5,
        dcma_ratio: int = 8,
        fusion_ratio: int = 16,
        name: str = "srm",
    ) -> None:
        super().__init__()
        self.rgb = StagedBackbone(build_backbone(backbone))
        self.hf = StagedBackbone(build_backbone(backbone))
        if self.rgb.nhwc:
            raise NotImplementedError(
                f"{self.rgb.backbone.timm_name}: SRM needs a convolutional NCHW backbone"
            )
        self.layout = dict(layout) if layout else auto_layout(self.rgb)
        idx = self.rgb.index
        self.ms_at = [idx(n) for n in self.layout["ms"]]
        self.rsa_at = idx(self.layout["rsa"])
        self.dcma_at = [idx(n) for n in self.layout["dcma"]]
        ch = lambda i: self.rgb.shape(i)[0]  # noqa: E731
        self.srm = SRMFilter(3, truncation)
        self.ms = nn.ModuleList(MultiScaleSRM(ch(i), ch(i), truncation) for i in self.ms_at)
        self.rsa = ResidualSpatialAttention(ch(self.rsa_at))
        self.dcma = nn.ModuleList(
            DualCrossModalAttention(ch(i), self.rgb.shape(i)[1] * self.rgb.shape(i)[2], dcma_ratio)
            for i in self.dcma_at
        )
        self.num_features = self.rgb.shape(len(self.rgb) - 1)[0]
        self.fusion = FeatureFusion(self.num_features, fusion_ratio)
        self.dropout = nn.Dropout(dropout)
        self.classifier = CosineClassifier(self.num_features, 2)
        self.am_margin, self.am_scale = float(am_margin), float(am_scale)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def features(self, images: Tensor) -> Tensor:
        """The fused feature map ``[B, C, h, w]``."""
        residual = self.srm(images)
        x, y, start = images, residual, 0
        for i in sorted({*self.ms_at, self.rsa_at, *self.dcma_at}):
            x, y, start = self.rgb.run(x, start, i + 1), self.hf.run(y, start, i + 1), i + 1
            if i in self.ms_at:
                y = F.relu(y + self.ms[self.ms_at.index(i)](x))
            if i == self.rsa_at:
                x = self.rsa(x, residual)
            if i in self.dcma_at:
                x, y = self.dcma[self.dcma_at.index(i)](x, y)
        return self.fusion(self.rgb.run(x, start), self.hf.run(y, start))

    def cosines(self, images: Tensor) -> Tensor:
        """``[B, 2]`` cos θ to the real (0) and fake (1) class weights."""
        pooled = self.features(images).mean(dim=(2, 3))
        return self.classifier(self.dropout(pooled))

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> Tensor:
        """Per-sample AM-Softmax losses of a batch (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            cos = self.cosines(batch["image"])
        return am_softmax_loss(cos.float(), batch["label"], self.am_margin, self.am_scale)

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        return self.update_on(ctx.forward(self.training_losses, batch, ctx), batch, ctx)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.softmax(self.am_scale * self.cosines(images).float(), dim=1)[:, 1]

    def run_info(self) -> dict:
        return {"layout": self.layout}
