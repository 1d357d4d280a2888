"""LTW's weight-aware network p(f; w) (Sun et al., AAAI 2021, Sec. "Overall Framework" and Fig. 2), with the
released code's layers (docs/methods/ltw.md): on the backbone's last feature map (C channels), two
depthwise-separable blocks C → C/2 → C/4 (3×3 depthwise + BN + ReLU, 1×1 pointwise + BN + ReLU), global
average pooling, dropout 0.5, Linear(C/4, 1), sigmoid; the released code adds 1 (weights in [1, 2]).
"""

from __future__ import annotations

import torch
from torch import nn


def separable(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class WeightNetwork(nn.Module):
    """Per-sample weights [N] from a feature map [N, C, h, w]: ``sigmoid(·) + offset``."""

    def __init__(self, channels: int, dropout: float = 0.5, offset: float = 0.0) -> None:
        super().__init__()
        c2, c4 = max(1, channels // 2), max(1, channels // 4)
        self.blocks = nn.Sequential(separable(channels, c2), separable(c2, c4))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c4, 1))
        self.offset = float(offset)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.blocks(feature).mean(dim=(2, 3))
        return torch.sigmoid(self.head(x).squeeze(1)) + self.offset
