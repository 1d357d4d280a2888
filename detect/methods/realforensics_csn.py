"""RealForensics' visual backbone: a channel-separated 3D ResNet (CSN; Tran, Wang, Feiszli and Torresani,
"Video Classification with Channel-Separated Convolutional Networks", ICCV 2019) without temporal
downsampling, as the authors' code builds it (``stage2/models/backbones/csn.py``: pytorchvideo's
``create_csn`` with a stem max-pooling and temporal stride 1 in every stage; read, not copied).

Layout (ir-CSN, "interaction-reduced"): a stem ``Conv3d(C_in, 64, (3, 7, 7), stride (1, 2, 2))`` + BN +
ReLU + ``MaxPool3d((1, 3, 3), stride (1, 2, 2))``; four stages of bottleneck blocks (ResNet-101: 3, 4,
23, 3 blocks; inner widths 64/128/256/512, outputs 256/512/1024/2048; spatial stride 2 in the first block
of stages 2-4, no temporal stride), each block ``1x1x1 -> depthwise 3x3x3 -> 1x1x1`` (the middle
convolution has one group per channel: the channel-separated part) with a ``1x1x1`` projection shortcut
where the width or the stride changes; the output is averaged over space: ``[B, 2048, T]``.

Parameter names follow the authors' state dicts (``blocks.0.conv``, ``blocks.<s>.res_blocks.<i>.branch2.
conv_b``, ...), so their files load by name (:func:`read_stage1_checkpoint`). Every convolution with a
temporal kernel > 1 is a :class:`~detect.methods.clip_method.TimeConv3d` (float32 under CPU autocast).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.methods.clip_method import TimeConv3d

#: Blocks per stage of the CSN depths pytorchvideo defines (the authors use 101).
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Stem(nn.Module):
    """``conv (3, 7, 7) / (1, 2, 2)`` -> BN -> ReLU -> ``max-pool (1, 3, 3) / (1, 2, 2)``."""

    def __init__(self, c_in: int, width: int) -> None:
        super().__init__()
        self.conv = TimeConv3d(c_in, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(width)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class SeparatedBottleneck(nn.Module):
    """The residual branch: ``1x1x1`` (c_in -> inner) -> depthwise ``3x3x3`` (groups = inner, spatial
    stride ``stride``) -> ``1x1x1`` (inner -> c_out), BN after each, ReLU after the first two."""

    def __init__(self, c_in: int, inner: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv_a, self.norm_a = nn.Conv3d(c_in, inner, 1, bias=False), nn.BatchNorm3d(inner)
        self.conv_b = TimeConv3d(
            inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False
        )
        self.norm_b = nn.BatchNorm3d(inner)
        self.conv_c, self.norm_c = nn.Conv3d(inner, c_out, 1, bias=False), nn.BatchNorm3d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = F.relu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """``ReLU(shortcut(x) + branch2(x))``; the shortcut is a strided ``1x1x1`` conv + BN where the width
    or the stride changes, the identity otherwise."""

    def __init__(self, c_in: int, inner: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.project = c_in != c_out or stride != 1
        if self.project:
            self.branch1_conv = nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_norm = nn.BatchNorm3d(c_out)
        self.branch2 = SeparatedBottleneck(c_in, inner, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.branch1_norm(self.branch1_conv(x)) if self.project else x
        return F.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, blocks: int, c_in: int, inner: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, inner, c_out, stride if i == 0 else 1) for i in range(blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class CSN(nn.Module):
    """``[B, C_in, T, H, W] -> [B, 32 * stem_width, T]`` (the spatial mean of the last stage); ``blocks``:
    blocks per stage (ResNet-101: ``DEPTHS[101]``), ``stem_width``: 64 in the authors' network."""

    def __init__(
        self, blocks: Sequence[int] = DEPTHS[101], stem_width: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"CSN blocks={list(blocks)}: four stages of at least one block each")
        self.blocks_per_stage = [int(n) for n in blocks]
        layers: list[nn.Module] = [Stem(in_channels, stem_width)]
        c_in, c_out = stem_width, 4 * stem_width
        for s, n in enumerate(self.blocks_per_stage):
            layers.append(ResStage(n, c_in, c_out // 4, c_out, 1 if s == 0 else 2))
            c_in, c_out = c_out, 2 * c_out
        self.blocks = nn.ModuleList(layers)
        self.out_channels = c_in

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.blocks:
            x = layer(x)
        return x.mean(dim=(3, 4))


def csn_from(cfg: Mapping) -> CSN:
    """A CSN from ``{depth: 50 | 101 | 152}`` or ``{blocks: [4 ints]}``, plus ``stem_width``."""
    if cfg.get("blocks") is not None:
        blocks = tuple(int(n) for n in cfg["blocks"])
    else:
        depth = int(cfg.get("depth", 101))
        if depth not in DEPTHS:
            raise ValueError(f"method.backbone.depth={depth}: use one of {sorted(DEPTHS)} or give blocks")
        blocks = DEPTHS[depth]
    return CSN(blocks, int(cfg.get("stem_width", 64)), int(cfg.get("in_channels", 3)))


#: Where the authors' stage-1 checkpoint (a Lightning file, tensors under ``state_dict``) keeps the parts
#: stage 2 starts from: the online visual backbone, and the EMA target network's backbone and projector
#: (the stage-2 code asks for ``model.model1.target_encoder``, a name the released stage-1 model does not
#: define; both layouts are read).
STAGE1_BACKBONE = "model.model1.backbone."
STAGE1_TARGET = {
    "backbone": ("model.model1.target_backbone.", "model.model1.target_encoder.0."),
    "projector": ("model.model1.target_projector.", "model.model1.target_encoder.1."),
}


def _part(state: Mapping[str, Tensor], prefixes: Sequence[str]) -> dict[str, Tensor]:
    for prefix in prefixes:
        part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if part:
            return part
    return {}


def read_stage1_checkpoint(path: str | Path) -> dict[str, dict[str, Tensor]]:
    """The parts of an authors' stage-1 file: ``{"backbone", "target_backbone", "target_projector"}``
    (each a state dict, empty where the file lacks it). Read with ``weights_only`` (runs no code); a
    missing file is a ``FileNotFoundError`` naming it, a file without a backbone a ``ValueError``."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"method.backbone_checkpoint={path}: no such file. RealForensics' detector stage starts from the "
            "audio-visual stage-1 network (a local stage-1 checkpoint of ahaliassos/RealForensics, keys "
            f"'{STAGE1_BACKBONE}*'); nothing is downloaded. Pass null for a seeded random stand-in"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    parts = {
        "backbone": _part(state, (STAGE1_BACKBONE,)),
        "target_backbone": _part(state, STAGE1_TARGET["backbone"]),
        "target_projector": _part(state, STAGE1_TARGET["projector"]),
    }
    if not parts["backbone"]:
        heads = sorted({k.split(".")[0] for k in state})[:8]
        raise ValueError(
            f"{path}: no '{STAGE1_BACKBONE}*' tensors (top-level names {heads}): not a RealForensics "
            "stage-1 checkpoint"
        )
    return parts
