"""LipForensics' spatiotemporal network (Haliassos, Vougioukas, Petridis and Pantic, "Lips Don't Lie: A
Generalisable and Robust Approach to Face Forgery Detection", CVPR 2021, Sec. 3 "Approach"): the lipreading
network of Martinez et al. (ICASSP 2020, ResNet-18 + multi-scale temporal convolutional network), with a
one-logit head. Sizes are readings of the authors' ``models/spatiotemporal_net.py``, ``resnet.py``,
``tcn.py`` and ``configs/lrw_resnet18_mstcn.json`` (docs/methods/lipforensics.md); the code is our own.

* :class:`Frontend3D`: grayscale clip ``[B, 1, T, H, W]`` -> Conv3d(1 -> 64, kernel (5, 7, 7), stride
  (1, 2, 2), padding (2, 3, 3), no bias) + BatchNorm3d + PReLU(64) + MaxPool3d((1, 3, 3), (1, 2, 2),
  (0, 1, 1)): the only layer that sees several frames before the temporal network.
* :class:`FrameResNet`: the four ResNet-18 stages (2 basic blocks each, widths 64/128/256/512, strides
  1/2/2/2, PReLU per channel instead of ReLU, 1x1 convolution + BN projections), applied to each time step
  as an image, then global average pooling: one 512-d vector per frame.
* :class:`MultiscaleTCN`: 4 blocks, block ``i`` with dilation ``2**i``; each block is two multi-branch
  convolution sets (kernels 3, 5, 7, 256 channels per branch, concatenated to 768), every branch
  Conv1d (bias) -> BatchNorm1d -> symmetric trim -> PReLU, dropout 0.2 after each set, a 1x1 Conv1d
  residual projection and a final PReLU. The convolutions pad ``(k - 1) d`` on both sides and trim
  ``(k - 1) d / 2`` from each end after the batch normalisation, so a step's output sees ``(k - 1) d / 2``
  steps on each side: NOT causal, and the length ``T`` is kept.
* Head: the temporal network's output averaged over the clip's ``T`` steps, then Linear(768, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detect.methods.clip_method import TimeConv3d

#: ITU-R BT.601 luma weights (PIL's ``convert("L")``, which the authors' loader applies).
LUMA = (0.299, 0.587, 0.114)


def to_grayscale(clips: Tensor) -> Tensor:
    """``[B, T, 3, H, W]`` (or already ``[B, T, 1, H, W]``) -> ``[B, 1, T, H, W]`` luma. With the same
    mean and std on the three channels, the luma of normalised channels is the normalised luma."""
    if clips.dim() != 5 or clips.shape[2] not in (1, 3):
        raise ValueError(f"clips of shape {tuple(clips.shape)}: expected [B, T, 3 or 1, H, W]")
    if clips.shape[2] == 3:
        w = torch.tensor(LUMA, dtype=clips.dtype, device=clips.device).view(1, 1, 3, 1, 1)
        clips = (clips * w).sum(dim=2, keepdim=True)
    return clips.transpose(1, 2)


class Frontend3D(nn.Module):
    """Conv3d (5, 7, 7) + BN + PReLU + spatial max-pooling: ``[B, 1, T, H, W] -> [B, w, T, H/4, W/4]``."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        # float32 under CPU autocast (oneDNN's bf16 Conv3d with a temporal kernel gives NaN gradients)
        self.conv = TimeConv3d(1, width, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(width)
        self.act = nn.PReLU(width)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class PReLUBasicBlock(nn.Module):
    """ResNet basic block with per-channel PReLUs: conv3x3(stride) BN PReLU conv3x3 BN (+ shortcut) PReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(c_out), nn.PReLU(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(c_out), nn.PReLU(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


class FrameResNet(nn.Module):
    """ResNet-18's four stages without its stem (the 3D frontend replaces it), then global average pooling:
    ``[N, w0, H, W] -> [N, widths[-1]]``. Convolutions start as He-normal (std sqrt(2 / (k^2 c_out))) and
    batch norms at (1, 0), as the authors' ``ResNet`` initialises them."""

    def __init__(self, c_in: int = 64, widths: Sequence[int] = (64, 128, 256, 512), blocks: int = 2) -> None:
        super().__init__()
        stages, c = [], int(c_in)
        for i, w in enumerate(widths):
            layers = [
                PReLUBasicBlock(c if b == 0 else w, w, (1 if i == 0 else 2) if b == 0 else 1)
                for b in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            c = w
        self.stages = nn.Sequential(*stages)
        self.out_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x).mean(dim=(2, 3))


class TemporalBranch(nn.Module):
    """One branch: Conv1d(kernel ``k``, dilation ``d``, padding ``(k-1)d`` both sides, bias) -> BatchNorm1d
    (over the padded length) -> trim ``(k-1)d/2`` steps from each end -> PReLU. Output length = input's."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel size {kernel}: the symmetric trim needs an odd kernel")
        self.trim = (kernel - 1) * dilation // 2
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=(kernel - 1) * dilation)
        self.bn = nn.BatchNorm1d(c_out)
        self.act = nn.PReLU(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv(x))
        if self.trim:
            y = y[:, :, self.trim : y.shape[2] - self.trim]
        return self.act(y)


class MultiscaleTemporalBlock(nn.Module):
    """Two multi-branch sets (one :class:`TemporalBranch` per kernel size, outputs concatenated), dropout
    after each, plus a residual (a 1x1 Conv1d projection where the authors' test ``c_in // n_kernels !=
    c_out`` holds — every block at the paper's sizes — or where the widths differ), then PReLU."""

    def __init__(self, c_in: int, c_out: int, kernels: Sequence[int], dilation: int, dropout: float) -> None:
        super().__init__()
        if c_out % len(kernels):
            raise ValueError(f"{c_out} channels do not split over {len(kernels)} kernel sizes")
        branch = c_out // len(kernels)
        self.first = nn.ModuleList(TemporalBranch(c_in, branch, k, dilation) for k in kernels)
        self.second = nn.ModuleList(TemporalBranch(c_out, branch, k, dilation) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        project = c_in // len(kernels) != c_out or c_in != c_out
        self.residual: nn.Module = nn.Conv1d(c_in, c_out, 1) if project else nn.Identity()
        self.act = nn.PReLU(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dropout(torch.cat([b(x) for b in self.first], dim=1))
        y = self.dropout(torch.cat([b(y) for b in self.second], dim=1))
        return self.act(y + self.residual(x))


class MultiscaleTCN(nn.Module):
    """``layers`` multi-scale blocks, dilation ``2**i`` in block ``i``: ``[B, c_in, T] -> [B, width, T]``."""

    def __init__(
        self, c_in: int, width: int, kernels: Sequence[int] = (3, 5, 7), layers: int = 4, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                MultiscaleTemporalBlock(c_in if i == 0 else width, width, kernels, 2**i, dropout)
                for i in range(int(layers))
            )
        )
        self.out_channels = int(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class LipForensicsNet(nn.Module):
    """Frontend3D -> per-frame ResNet-18 -> multi-scale TCN -> mean over time -> Linear(width, 1)."""

    def __init__(
        self,
        frontend_width: int = 64,
        trunk_widths: Sequence[int] = (64, 128, 256, 512),
        tcn_branch_width: int = 256,
        tcn_kernels: Sequence[int] = (3, 5, 7),
        tcn_layers: int = 4,
        tcn_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        kernels = tuple(int(k) for k in tcn_kernels)
        self.frontend = Frontend3D(int(frontend_width))
        self.trunk = FrameResNet(int(frontend_width), tuple(int(w) for w in trunk_widths))
        width = int(tcn_branch_width) * len(kernels)
        self.tcn = MultiscaleTCN(self.trunk.out_channels, width, kernels, int(tcn_layers), float(tcn_dropout))
        self.head = nn.Linear(width, 1)

    def frame_features(self, gray: Tensor) -> Tensor:
        """``[B, 1, T, H, W]`` -> ``[B, C, T]``: the frontend, then the ResNet on every time step."""
        x = self.frontend(gray)
        b, c, t, h, w = x.shape
        feats = self.trunk(x.transpose(1, 2).reshape(b * t, c, h, w))
        return feats.view(b, t, -1).transpose(1, 2)

    def forward(self, gray: Tensor) -> Tensor:
        """``[B, 1, T, H, W]`` grayscale clips -> ``[B]`` logits."""
        out = self.tcn(self.frame_features(gray))
        return self.head(out.mean(dim=2)).squeeze(1)
