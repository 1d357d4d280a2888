"""A small fixed random convolutional encoder-decoder: the "generator" of the identity swaps.

No training: seeded weights turn an input face into a residual with generative traces (strided
down-sampling, transposed-convolution checkerboards), which the swaps add to a low-resolution face.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RandomAutoencoder(nn.Module):
    """Conv encoder (two stride-2 convs) + transposed-conv decoder, weights drawn from ``seed``."""

    def __init__(self, seed: int, width: int = 16, checkerboard: bool = True) -> None:
        super().__init__()
        up_kernel = 3 if checkerboard else 4
        pad_out = 1 if checkerboard else 0
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * width, width, up_kernel, 2, 1, output_padding=pad_out),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(width, 3, up_kernel, 2, 1, output_padding=pad_out),
        )
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()
        self.eval()

    @torch.no_grad()
    def residual(self, face: np.ndarray, strength: float) -> np.ndarray:
        """Zero-mean residual of std ``strength`` for a float RGB face (H×W×3 in [0, 1], H, W % 4 == 0)."""
        x = torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1)))[None].float() * 2 - 1
        r = self.net(x)[0]
        r = r - r.mean(dim=(1, 2), keepdim=True)
        r = r / (r.std() + 1e-6) * strength
        return r.numpy().transpose(1, 2, 0)
