"""The frozen StyleGAN encoder of style-latent flows (Choi et al., CVPR 2024): pSp's ``GradualStyleEncoder``
(Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation", CVPR 2021, Sec. 3:
a ResNet-IR-SE-50 body, a feature pyramid of three levels, and one ``map2style`` block per W+ style vector).

Each face is mapped to ``n_styles`` style vectors of ``style_dim`` (W+: 18 x 512 for a 1024-px StyleGAN2):
styles 0-2 (coarse) come from the 16x16 level, 3-6 (middle) from the 32x32 level (upsampled coarse +
lateral 1x1 of the 256-channel stage), 7-17 (fine) from the 64x64 level (the same with the 128-channel
stage), at pSp's 256-px input. pSp adds the generator's average latent ``latent_avg`` to the codes
(``start_from_latent_avg``).

Layer names follow pSp's released ``psp_ffhq_encode.pt`` (``encoder.*`` keys of its ``state_dict``), so its
encoder loads strictly (:func:`load_style_encoder`); a missing file is an error naming it, and ``null``
builds a seeded random stand-in of a small size, recorded as ``random_init: true``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: pSp's IR-SE-50 body: units per stage and widths; the input layer has ``widths[0]`` channels.
PSP_UNITS, PSP_WIDTHS = (3, 4, 14, 3), (64, 128, 256, 512)
#: W+ of a 1024-px StyleGAN2: 18 styles, coarse 0-2, middle 3-6, fine 7-17 (pSp's coarse/middle indices).
N_STYLES, COARSE_END, MIDDLE_END = 18, 3, 7


class SqueezeExcite(nn.Module):
    """SE gating (reduction 16, no biases): ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(w)


class IRSEUnit(nn.Module):
    """pSp's ``bottleneck_IR_SE``: BN -> 3x3 conv -> PReLU -> 3x3 conv (stride) -> BN -> SE, plus a shortcut
    (a strided 1x1 max-pool when the width is kept, else a strided 1x1 conv + BN)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_in == c_out:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            SqueezeExcite(c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """StyleGAN2's equalised-learning-rate linear layer (lr multiplier 1): ``x W^T / sqrt(in) + b``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = 1.0 / math.sqrt(c_in)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class MapToStyle(nn.Module):
    """pSp's ``map2style`` (``GradualStyleBlock``): log2(spatial) stride-2 3x3 convs with LeakyReLU(0.01) down
    to 1x1, then an :class:`EqualLinear`."""

    def __init__(self, channels: int, spatial: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(max(int(math.log2(spatial)), 1)):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        return self.linear(x.mean(dim=(2, 3)))  # 1x1 after the convs; the mean only drops the dimensions


def upsample_add(top: Tensor, lateral: Tensor) -> Tensor:
    """FPN merge: bilinear (align_corners) upsampling of ``top`` to ``lateral``'s size, plus ``lateral``."""
    size = lateral.shape[-2:]
    return F.interpolate(top, size=size, mode="bilinear", align_corners=True) + lateral


class GradualStyleEncoder(nn.Module):
    """pSp's encoder: ``[B, 3, S, S]`` (in [-1, 1]) -> ``[B, n_styles, widths[-1]]`` W+ codes, plus
    ``latent_avg`` (a buffer; zeros unless loaded). pSp's sizes by default; smaller ``units``/``widths`` make
    the random stand-in."""

    def __init__(
        self,
        units: Sequence[int] = PSP_UNITS,
        widths: Sequence[int] = PSP_WIDTHS,
        input_size: int = 256,
        n_styles: int = N_STYLES,
    ) -> None:
        super().__init__()
        if len(units) != 4 or len(widths) != 4:
            raise ValueError(f"units={list(units)}, widths={list(widths)}: pSp's body has 4 stages")
        if input_size % 16 or n_styles <= MIDDLE_END:
            raise ValueError(
                f"input_size={input_size} (a multiple of 16), n_styles={n_styles} (> {MIDDLE_END})"
            )
        self.input_size, self.n_styles, self.style_dim = int(input_size), int(n_styles), int(widths[-1])
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        body, c_in = [], widths[0]
        for n, width in zip(units, widths, strict=True):
            for i in range(n):
                body.append(IRSEUnit(c_in, width, 2 if i == 0 else 1))
                c_in = width
        self.body = nn.Sequential(*body)
        ends = [sum(units[: k + 1]) - 1 for k in range(4)]
        self.taps = (ends[1], ends[2], ends[3])  # c1 (stride 4), c2 (stride 8), c3 (stride 16)
        sizes = {0: input_size // 16, 1: input_size // 8, 2: input_size // 4}
        self.styles = nn.ModuleList(
            MapToStyle(self.style_dim, sizes[0 if j < COARSE_END else 1 if j < MIDDLE_END else 2])
            for j in range(n_styles)
        )
        self.latlayer1 = nn.Conv2d(widths[2], self.style_dim, 1)
        self.latlayer2 = nn.Conv2d(widths[1], self.style_dim, 1)
        self.register_buffer("latent_avg", torch.zeros(self.n_styles, self.style_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[self.taps.index(i)] = x
        c1, c2, c3 = feats[0], feats[1], feats[2]
        codes = [self.styles[j](c3) for j in range(COARSE_END)]
        p2 = upsample_add(c3, self.latlayer1(c2))
        codes += [self.styles[j](p2) for j in range(COARSE_END, MIDDLE_END)]
        p1 = upsample_add(p2, self.latlayer2(c1))
        codes += [self.styles[j](p1) for j in range(MIDDLE_END, self.n_styles)]
        return torch.stack(codes, dim=1) + self.latent_avg.to(x.dtype)

    @torch.no_grad()
    def encode_frames(self, frames: Tensor) -> Tensor:
        """``[N, 3, H, W]`` frames normalised to [-1, 1] -> ``[N, n_styles, style_dim]``, resized (bilinear)
        to the encoder's input size as pSp's test transform does."""
        if frames.shape[-2:] != (self.input_size, self.input_size):
            frames = F.interpolate(frames, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        return self(frames)


def _read_psp_state(path: Path) -> dict[str, Tensor]:
    """The encoder's tensors of a pSp checkpoint (``state_dict`` with ``encoder.*`` keys and ``latent_avg``)
    or of a bare encoder state dict; read with ``weights_only`` (runs no code)."""
    source = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise ValueError(f"{path}: not a state dict (a {type(source).__name__})")
    state = source.get("state_dict", source)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("encoder.") for k in state):
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    avg = source.get("latent_avg", state.pop("latent_avg", None))
    if avg is not None:  # pSp stores one W vector [512] (added to all 18 styles) or one per style [18, 512]
        avg = avg.reshape(-1, avg.shape[-1])
        if avg.shape[0] not in (1, N_STYLES):
            raise ValueError(f"{path}: latent_avg of shape {tuple(avg.shape)} is neither [512] nor [18, 512]")
        state["latent_avg"] = avg.expand(N_STYLES, -1).clone()
    return state


def load_style_encoder(
    checkpoint: str | None,
    seed: int = 0,
    input_size: int = 256,
    stand_in: Mapping | None = None,
) -> tuple[GradualStyleEncoder, dict]:
    """The frozen encoder: ``checkpoint`` a local pSp file (e.g. ``psp_ffhq_encode.pt``), or null for a seeded
    (``seed``) random stand-in of ``stand_in`` size (``units``, ``widths``); returns it and what was
    loaded."""
    if checkpoint in (None, "", "none", "random"):
        size = dict(stand_in or {})
        units, widths = tuple(size.get("units", PSP_UNITS)), tuple(size.get("widths", PSP_WIDTHS))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = GradualStyleEncoder(units, widths, int(input_size))
        info = {
            "checkpoint": None,
            "random_init": True,
            "seed": int(seed),
            "units": list(units),
            "widths": list(widths),
        }
    else:
        path = Path(str(checkpoint)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"method.encoder={path}: no such file (the pSp StyleGAN encoder of style-latent "
                "flows, e.g. pSp's psp_ffhq_encode.pt; nothing is downloaded). Give a local file, or null "
                "for a seeded random stand-in"
            )
        net = GradualStyleEncoder(input_size=int(input_size))
        state = _read_psp_state(path)
        if "latent_avg" not in state:
            state["latent_avg"] = torch.zeros(net.n_styles, net.style_dim)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not pSp's GradualStyleEncoder (IR-SE-50): missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        info = {"checkpoint": str(path), "random_init": False, "seed": None}
    net.requires_grad_(False)
    return net.eval(), info
