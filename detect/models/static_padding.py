"""Fixed ("static same") convolution padding, as ``efficientnet_pytorch`` builds EfficientNets.

``efficientnet_pytorch`` pads each convolution with TensorFlow's "same" rule evaluated once, for the
model's nominal resolution (380 px for B4), and keeps those pads at any input size: for a stride-2
convolution of kernel ``k`` at nominal input ``n`` the pad is ``max((ceil(n/s) - 1) s + k - n, 0)``,
split left/top ``floor(p/2)``, right/bottom the rest. timm's ``tf_efficientnet_*`` recomputes the pads
for every input ("dynamic same"), which gives different feature maps at 256 px. DeepfakeBench's
EfficientNet-B4 further replaces the stem by ``Conv2d(3, 48, 3, stride=2, bias=False)`` with no padding
(``training/networks/efficientnetb4.py``): at 256 px its maps are 127/63/32/16/8 where timm gives
128/64/32/16/8.

:func:`freeze_same_padding` records, on a dry run at the nominal size, the input size of every
dynamically padded convolution, and fixes its pads; ``stem_padding`` then overrides the first one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class StaticPadConv2d(nn.Conv2d):
    """A convolution preceded by a fixed zero pad ``(left, right, top, bottom)`` (same parameter names)."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        self.load_state_dict(conv.state_dict())
        self.static_pad = tuple(int(p) for p in pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.static_pad):
            x = F.pad(x, self.static_pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, static_pad={self.static_pad}"


def same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" pads (before, after) for one spatial dimension of ``size``."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _is_dynamic(m: nn.Module) -> bool:
    """timm's dynamically padded convolution (``Conv2dSame``) or an already fixed one."""
    return isinstance(m, nn.Conv2d) and type(m).__name__ in ("Conv2dSame", "StaticPadConv2d")


def freeze_same_padding(model: nn.Module, image_size: int, stem_padding: int | None = None) -> list[str]:
    """Replace every dynamically "same"-padded convolution of ``model`` by :class:`StaticPadConv2d` with
    the pads for a ``image_size`` input; ``stem_padding`` (e.g. 0) overrides the first convolution's.
    Returns the names of the convolutions changed (the state dict keeps its keys)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []

    def record(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            sizes.setdefault(name, tuple(args[0].shape[-2:]))

        return hook

    for name, m in model.named_modules():
        if _is_dynamic(m):
            hooks.append(m.register_forward_pre_hook(record(name)))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    changed = []
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    for name, (h, w) in sizes.items():
        conv = model.get_submodule(name)
        top, bottom = same_pad(int(h), conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        left, right = same_pad(int(w), conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        pad = (left, right, top, bottom)
        if name == first and stem_padding is not None:
            pad = (int(stem_padding),) * 4
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, StaticPadConv2d(conv, pad))
        changed.append(name)
    if stem_padding is not None and first not in sizes:
        conv = model.get_submodule(first)
        parent, _, child = first.rpartition(".")
        setattr(
            model.get_submodule(parent) if parent else model,
            child,
            StaticPadConv2d(conv, (stem_padding,) * 4),
        )
        changed.append(first)
    return changed
