"""F3-Net: Qian, Yin, Sheng, Chen and Shao, "Thinking in Frequency: Face Forgery Detection by Mining
Frequency-aware Clues", ECCV 2020 (arXiv:2007.09355); DeepfakeBench ``f3net_detector.py``.

The paper's method section, component by component, named as the paper names them (section and equation
numbers are not cited: the paper's text could not be consulted here; what is written below comes from the
paper's description as recalled, the public re-implementation ``yyk-wew/F3Net`` that DeepfakeBench follows,
and DeepfakeBench's code — every reading decision is in ``docs/methods/f3net.md``):

* **DCT** ``D``: the orthonormal 2-D DCT-II, ``D(x) = C x C^T`` with ``C[k, j] = a_k cos(π (j + 1/2) k / N)``,
  ``a_0 = sqrt(1/N)``, ``a_k = sqrt(2/N)``; ``D^{-1}(X) = C^T X C`` (:func:`dct_matrix`). Low frequencies
  sit in the top-left corner, high frequencies in the bottom-right one.
* **Frequency-aware decomposition** (FAD): N binary base filters ``f_base^i`` split the spectrum by the
  anti-diagonal index ``u + v``, each with a learnable filter ``f_w^i``, and each band is brought back to
  the image domain, ``y_i = D^{-1}{D(x) ⊙ [f_base^i + σ(f_w^i)]}`` with ``σ(x) = (1 - e^{-x}) / (1 + e^{-x})``
  (= 2 sigmoid(x) - 1, squeezing into (-1, 1)); the components are stacked along channels,
  ``y = [y_1, ..., y_N]`` (3N channels) (:class:`FrequencyAwareDecomposition`). The bands: low = the first
  1/16 of the spectrum, middle = 1/16 to 1/8, high = the last 7/8; since ``#{u + v < t} ≈ t²/2``, their
  borders are ``u + v = N/√8`` and ``u + v = N/2`` (:func:`fad_base_filters`). ``fad.edges: paper``
  partitions the spectrum at those borders; ``fad.edges: dfb`` uses DeepfakeBench's closed intervals
  ``[0, ⌊N/2.82⌋]``, ``[⌊N/2.82⌋, ⌊N/2⌋]``, ``[⌊N/2⌋, 2N]`` (neighbouring bands share their border
  diagonal), and ``all`` (the whole spectrum) is the fourth band DeepfakeBench and the re-implementation add
  (``fad.bands: [low, middle, high, all]``: 12 channels).
* **Local frequency statistics** (LFS): a sliding-window DCT (window S = 10, stride 2) and, per window p and
  band i of M = 6, ``q_i = log10 ‖D(p) ⊙ [h_base^i + σ(h_w^i)]‖_1``; the statistics of all windows form an
  M-channel map at half the image's resolution (:class:`LocalFrequencyStatistics`). The base filters split
  ``u + v`` over ``[0, 2S)`` into M equal intervals (the re-implementation's bands, here as a partition).
  ``lfs.statistic: log_l1`` is that equation; ``mean_log`` is the re-implementation's variant (the band's
  filter-weighted sum of ``log10|D(p)|`` divided by the band's size). The windows are taken on the grey image
  (``lfs.color: gray``, ITU-R 601 weights, as the re-implementation) in 0-255 pixel units, zero-padded by
  ``(S - stride) / 2`` (``rgb``: every colour channel, 3M channels).
* **Two-stream collaborative learning**: an Xception on the FAD output (its input convolution widened to
  3N channels) and one on the LFS map (input convolution widened to M channels, stride 1, so that both
  streams have equal feature-map sizes from the first block on); the widened filters are the pretrained RGB
  filters tiled over the channels and divided by the number of copies (DeepfakeBench, the
  re-implementation).
* **MixBlock**: cross attention between the streams after Xception's block 7 and block 12 (``mix_at``): for
  every channel, 1x1-convolution queries and keys of both streams give ``A = softmax(Q_F K_F^T + Q_L K_L^T)``
  (rows of the H x H map), each stream receives the other one weighted by A, scaled by ``2 sigmoid(γ) - 1``
  (γ starts at 0, so the block starts as the identity), through a depthwise 1x1 convolution and batch norm,
  added to itself (:class:`MixBlock`, the re-implementation's operations).
* **Classifier**: both streams' last feature maps are globally pooled (after Xception's final ReLU),
  concatenated, and classified by dropout + one linear logit with binary cross-entropy (the paper's
  two-class cross-entropy has the same optimum); ``predict`` is the sigmoid.

``streams: [fad]`` with ``mix: false`` is DeepfakeBench's reduced detector (``method=f3net/dfb``: "solely
utilizing the FAD branch"); ``streams: [lfs]`` the LFS-only ablation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

FAD_BANDS = ("low", "middle", "high", "all")
FAD_EDGES = ("paper", "dfb")
LFS_STATISTICS = ("log_l1", "mean_log")
LFS_COLORS = ("gray", "rgb")
STREAMS = ("fad", "lfs")
#: The MixBlock positions of the paper for timm's ``legacy_xception`` (after its blocks 7 and 12).
XCEPTION_MIX_AT = ("block7", "block12")
#: ITU-R BT.601 luma weights (the re-implementation's grey conversion).
LUMA = (0.299, 0.587, 0.114)


def dct_matrix(n: int) -> Tensor:
    """``[n, n]`` float64 orthonormal DCT-II matrix C: ``D(x) = C x C^T``, ``D^{-1}(X) = C^T X C``."""
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (j + 0.5) * k / n)
    c[0] = np.sqrt(1.0 / n)
    return torch.from_numpy(c)


def exact(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 when it already is (tests compare in double precision)."""
    return x if x.dtype == torch.float64 else x.float()


def squeeze(x: Tensor) -> Tensor:
    """The paper's ``σ(x) = (1 - e^{-x}) / (1 + e^{-x})`` = ``2 sigmoid(x) - 1``, in (-1, 1)."""
    return 2.0 * torch.sigmoid(x) - 1.0


def fad_base_filters(n: int, bands: Sequence[str], edges: str = "paper") -> Tensor:
    """``[len(bands), n, n]`` float32 binary base filters of FAD over the anti-diagonal index ``u + v``.

    ``paper``: low ``u + v < n/√8`` (1/16 of the spectrum), middle ``n/√8 <= u + v < n/2`` (up to 1/8),
    high ``u + v >= n/2`` (the last 7/8): a partition. ``dfb``: DeepfakeBench's closed intervals
    ``[0, ⌊n/2.82⌋]``, ``[⌊n/2.82⌋, ⌊n/2⌋]``, ``[⌊n/2⌋, 2n]``. ``all``: every coefficient (both readings).
    """
    unknown = [b for b in bands if b not in FAD_BANDS]
    if unknown or not bands:
        raise ValueError(f"method.fad.bands={list(bands)}; use a non-empty list of {FAD_BANDS}")
    if edges not in FAD_EDGES:
        raise ValueError(f"method.fad.edges={edges!r}; use one of {FAD_EDGES}")
    d = np.add.outer(np.arange(n), np.arange(n)).astype(np.float64)
    if edges == "paper":
        t1, t2 = n / math.sqrt(8.0), n / 2.0
        masks = {"low": d < t1, "middle": (d >= t1) & (d < t2), "high": d >= t2}
    else:
        t1, t2 = float(n // 2.82), float(n // 2)
        masks = {"low": d <= t1, "middle": (d >= t1) & (d <= t2), "high": d >= t2}
    masks["all"] = np.ones((n, n), dtype=bool)
    return torch.from_numpy(np.stack([masks[b] for b in bands]).astype(np.float32))


def lfs_base_filters(window: int, bands: int) -> Tensor:
    """``[bands, S, S]`` float32 binary filters: band k holds ``k·2S/M <= u + v < (k+1)·2S/M``."""
    d = np.add.outer(np.arange(window), np.arange(window)).astype(np.float64)
    width = 2.0 * window / bands
    return torch.from_numpy(
        np.stack([(d >= k * width) & (d < (k + 1) * width) for k in range(bands)])
    ).float()


class FrequencyAwareDecomposition(nn.Module):
    """FAD: ``[B, C, N, N]`` -> ``[B, C·len(bands), N, N]``, band-major (the C channels of band 1, then of
    band 2, ...). Computed in float32 outside autocast (two N x N matrix products each way).
    """

    def __init__(
        self, size: int, bands: Sequence[str] = ("low", "middle", "high"), edges: str = "paper"
    ) -> None:
        super().__init__()
        self.size, self.bands, self.edges = int(size), tuple(bands), edges
        self.register_buffer("dct", dct_matrix(self.size), persistent=False)  # float64, cast at use
        self.register_buffer("base", fad_base_filters(self.size, self.bands, edges), persistent=False)
        self.learnable = nn.Parameter(torch.empty(len(self.bands), self.size, self.size).normal_(0.0, 0.1))

    def filters(self) -> Tensor:
        """``[bands, N, N]``: ``f_base^i + σ(f_w^i)``."""
        return self.base + squeeze(self.learnable)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.size, self.size):
            raise ValueError(
                f"FAD was built for {self.size}x{self.size} images (backbone.input_size) but got "
                f"{tuple(x.shape[-2:])}: feed F3-Net images at its input size"
            )
        with torch.autocast(device_type=x.device.type, enabled=False):
            xe = exact(x)
            c = self.dct.to(xe.dtype)
            spectrum = c @ xe @ c.T  # [B, C, N, N]
            filtered = spectrum.unsqueeze(1) * self.filters()[None, :, None]  # [B, bands, C, N, N]
            out = c.T @ filtered @ c
        return out.flatten(1, 2).to(x.dtype)


class LocalFrequencyStatistics(nn.Module):
    """LFS: ``[B, 3, H, W]`` (normalised images) -> ``[B, M (or 3M), H', W']`` window statistics,
    ``H' = ⌊(H + 2·pad - S) / stride⌋ + 1`` with ``pad = (S - stride) // 2``; channel-major for ``rgb``."""

    def __init__(
        self,
        window: int = 10,
        stride: int = 2,
        bands: int = 6,
        statistic: str = "log_l1",
        color: str = "gray",
        eps: float = 1e-6,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        if statistic not in LFS_STATISTICS:
            raise ValueError(f"method.lfs.statistic={statistic!r}; use one of {LFS_STATISTICS}")
        if color not in LFS_COLORS:
            raise ValueError(f"method.lfs.color={color!r}; use one of {LFS_COLORS}")
        if window < 2 or stride < 1 or bands < 1 or bands > 2 * window - 1:
            raise ValueError(f"method.lfs: window={window}, stride={stride}, bands={bands} do not fit")
        self.window, self.stride, self.bands = int(window), int(stride), int(bands)
        self.padding = (self.window - self.stride) // 2
        self.statistic, self.color, self.eps = statistic, color, float(eps)
        self.register_buffer("dct", dct_matrix(self.window), persistent=False)  # float64, cast at use
        self.register_buffer("base", lfs_base_filters(self.window, self.bands), persistent=False)
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.learnable = nn.Parameter(torch.empty(self.bands, self.window, self.window).normal_(0.0, 0.1))

    @property
    def in_channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def output_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.window) // self.stride + 1

    def filters(self) -> Tensor:
        """``[M, S, S]``: ``h_base^i + σ(h_w^i)``."""
        return self.base + squeeze(self.learnable)

    def pixels(self, x: Tensor) -> Tensor:
        """Normalised images -> 0-255 pixel units, grey (``[B, 1, H, W]``) or RGB."""
        x = (exact(x) * self.std + self.mean) * 255.0
        return (x * self.luma).sum(dim=1, keepdim=True) if self.color == "gray" else x

    def window_spectra(self, x: Tensor) -> Tensor:
        """``[B, C, L, S, S]``: the DCT of every window (row-major over the H' x W' positions)."""
        b, c, _, _ = x.shape
        s = self.window
        patches = F.unfold(x, s, padding=self.padding, stride=self.stride)  # [B, C·S·S, L]
        patches = patches.view(b, c, s, s, -1).permute(0, 1, 4, 2, 3)
        c = self.dct.to(patches.dtype)
        return c @ patches @ c.T

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            spectra = self.window_spectra(self.pixels(x))  # [B, C, L, S, S]
            filt = self.filters().to(spectra.dtype)
            if self.statistic == "log_l1":  # log10 ‖D(p) ⊙ h‖_1 = log10 Σ |D(p)|·|h|
                stats = torch.log10(torch.einsum("bclij,kij->bckl", spectra.abs(), filt.abs()) + self.eps)
            else:  # Σ log10|D(p)| ⊙ h / #band
                logs = torch.log10(spectra.abs() + self.eps)
                stats = torch.einsum("bclij,kij->bckl", logs, filt) / self.base.sum(dim=(1, 2))[:, None]
            out = stats.reshape(b, -1, self.output_size(h), self.output_size(w))
        return out.to(x.dtype)


class MixBlock(nn.Module):
    """Cross attention of the FAD and LFS streams' ``[B, C, H, H]`` maps (square maps)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.query_fad, self.query_lfs = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.key_fad, self.key_lfs = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.gamma_fad, self.gamma_lfs = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        self.out_fad = nn.Sequential(nn.Conv2d(c, c, 1, groups=c), nn.BatchNorm2d(c))
        self.out_lfs = nn.Sequential(nn.Conv2d(c, c, 1, groups=c), nn.BatchNorm2d(c))

    def attention(self, x_fad: Tensor, x_lfs: Tensor) -> Tensor:
        """``[B, C, H, H]``: per channel, ``softmax(Q_F K_F^T + Q_L K_L^T)`` over the last axis."""
        if x_fad.shape != x_lfs.shape or x_fad.shape[-1] != x_fad.shape[-2]:
            raise ValueError(
                f"MixBlock needs two equal square maps, got {tuple(x_fad.shape)}, {tuple(x_lfs.shape)}"
            )
        energy = self.query_fad(x_fad) @ self.key_fad(x_fad).transpose(-1, -2)
        energy = energy + self.query_lfs(x_lfs) @ self.key_lfs(x_lfs).transpose(-1, -2)
        return torch.softmax(exact(energy), dim=-1).to(x_fad.dtype)

    def forward(self, x_fad: Tensor, x_lfs: Tensor) -> tuple[Tensor, Tensor]:
        att = self.attention(x_fad, x_lfs)
        y_fad = x_fad + self.out_fad(x_lfs * att * squeeze(self.gamma_lfs))
        y_lfs = x_lfs + self.out_lfs(x_fad * att * squeeze(self.gamma_fad))
        return y_fad, y_lfs


def tile_input_conv(body: StagedBackbone, in_chans: int) -> str:
    """Widen the input convolution to ``in_chans`` channels, channel c = pretrained RGB filter ``c mod 3``
    divided by the number of copies ``in_chans / 3`` (DeepfakeBench's and the re-implementation's
    initialisation); returns the convolution's name."""
    if in_chans < 3:
        raise ValueError(f"F3-Net stream with {in_chans} input channels: need at least 3 (method.lfs.bands)")
    name = body.widen_input(in_chans)
    conv = body.backbone.model.get_submodule(name)
    with torch.no_grad():
        rgb = conv.weight[:, :3].clone()
        conv.weight.copy_(rgb[:, [c % 3 for c in range(in_chans)]] * (3.0 / in_chans))
    return name


def auto_mix_at(body: StagedBackbone) -> list[str]:
    """The paper's MixBlock positions for Xception; else the middle layer at stride 16 and the last layer."""
    if body.backbone.timm_name == "legacy_xception":
        return list(XCEPTION_MIX_AT)
    at16 = body.run_at(16)
    if not at16:
        raise NotImplementedError(
            f"{body.backbone.timm_name}: no stride-16 layer for the MixBlock; set method.mix_at"
        )
    return [body.names[at16[len(at16) // 2]], body.names[-1]]


class F3Net(Method):
    """Two-stream FAD + LFS Xception with MixBlocks, one logit, BCE (Qian et al., ECCV 2020)."""

    name = "f3net"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        streams: Sequence[str] = ("fad", "lfs"),
        mix: bool = True,
        mix_at: Sequence[str] | None = None,
        fad: Mapping | None = None,
        lfs: Mapping | None = None,
        lfs_stem_stride: int = 1,
        dropout: float = 0.5,
        name: str = "f3net",
    ) -> None:
        super().__init__()
        streams = tuple(streams)
        if not streams or len(set(streams)) != len(streams) or any(s not in STREAMS for s in streams):
            raise ValueError(f"method.streams={list(streams)}; use [fad, lfs], [fad] or [lfs]")
        if mix and streams != STREAMS:
            raise ValueError(
                "method.mix=true needs method.streams=[fad, lfs] (the MixBlock joins the two streams)"
            )
        self.streams, self.mix_enabled = streams, bool(mix)
        self.bodies = nn.ModuleDict()
        self.input_conv: dict[str, str] = {}
        if "fad" in streams:
            body = StagedBackbone(build_backbone(backbone))
            self.fad = FrequencyAwareDecomposition(body.input_size, **dict(fad or {}))
            self.input_conv["fad"] = tile_input_conv(body, 3 * len(self.fad.bands))
            self.bodies["fad"] = body
        if "lfs" in streams:
            body = StagedBackbone(build_backbone(backbone))
            b = body.backbone
            self.lfs = LocalFrequencyStatistics(**{"mean": b.mean, "std": b.std, **dict(lfs or {})})
            conv_name = tile_input_conv(body, self.lfs.in_channels * self.lfs.bands)
            conv = b.model.get_submodule(conv_name)
            conv.stride = (int(lfs_stem_stride), int(lfs_stem_stride))
            self.input_conv["lfs"] = conv_name
            self.bodies["lfs"] = body
        first = self.bodies[streams[0]]
        self.mix_at = list(mix_at) if mix_at else (auto_mix_at(first) if self.mix_enabled else [])
        self.mix_index = [first.index(n) for n in self.mix_at]
        self.mix = nn.ModuleList(MixBlock(first.shape(i)[0]) for i in self.mix_index)
        self.num_features = sum(b.shape(len(b) - 1)[0] for b in self.bodies.values())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, 1))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def stream_inputs(self, images: Tensor) -> dict[str, Tensor]:
        """The FAD components and/or the LFS map of ``images``."""
        out = {}
        if "fad" in self.streams:
            out["fad"] = self.fad(images)
        if "lfs" in self.streams:
            out["lfs"] = self.lfs(images)
        return out

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Each stream's last feature map, MixBlocks applied between them."""
        x = self.stream_inputs(images)
        if not self.mix_enabled:
            return {s: self.bodies[s].run(x[s]) for s in self.streams}
        f, lf, start = x["fad"], x["lfs"], 0
        for block, i in zip(self.mix, self.mix_index, strict=True):
            f, lf = self.bodies["fad"].run(f, start, i + 1), self.bodies["lfs"].run(lf, start, i + 1)
            if lf.shape[-2:] != f.shape[-2:]:  # stem arithmetic can leave the LFS map a pixel off
                lf = F.interpolate(lf, size=f.shape[-2:], mode="bilinear", align_corners=False)
            f, lf = block(f, lf)
            start = i + 1
        return {"fad": self.bodies["fad"].run(f, start), "lfs": self.bodies["lfs"].run(lf, start)}

    def logits(self, images: Tensor) -> Tensor:
        maps = self.feature_maps(images)
        pooled = torch.cat([self.bodies[s].backbone.pool(maps[s]) for s in self.streams], dim=1)
        return self.head(pooled).squeeze(1)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample BCE of a batch and its log (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logits = self.logits(batch["image"])
        ce = F.binary_cross_entropy_with_logits(logits.float(), batch["label"].float(), reduction="none")
        return ce, {"ce": ce.mean().detach()}

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(images).float())

    def run_info(self) -> dict:
        return {"streams": list(self.streams), "mix_at": self.mix_at, "input_conv": self.input_conv}
