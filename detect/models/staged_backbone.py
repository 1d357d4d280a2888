"""A backbone as an ordered list of layers, for detectors that work *between* a backbone's layers: SRM's two
streams exchange features after given layers (:mod:`detect.methods.srm`), SPSL drops layers and widens the
input convolution (:mod:`detect.methods.spsl`), MAT reads a shallow and a middle feature map
(:mod:`detect.methods.mat`).

:class:`StagedBackbone` finds, by a dry run of ``forward_features`` with forward hooks, which of the timm
model's children (``nn.Sequential`` / ``nn.ModuleList`` children expanded one level: ``blocks.3``,
``layer3.1``, ``stages.2``) run, in which order, and checks that applying them one after the other
reproduces ``forward_features`` exactly. Models whose ``forward_features`` is not such a chain (a ViT adds
its position embedding outside any module) are refused with ``NotImplementedError``. Every layer's output
shape at ``input_size`` is recorded, so a method can name the points it needs by output stride
(:meth:`StagedBackbone.last_at`) or by layer name.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from detect.models.backbone import Backbone


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child) > 0:
            out += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            out.append((name, child))
    return out


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, leaf = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    if isinstance(parent, nn.Sequential | nn.ModuleList) and leaf.isdigit():
        parent[int(leaf)] = module
    else:
        setattr(parent, leaf, module)


class StagedBackbone(nn.Module):
    """``backbone`` (a :class:`~detect.models.backbone.Backbone`) run layer by layer.

    ``names[i]`` and ``shape(i)`` (``(C, H, W)`` at ``input_size``) describe layer ``i``; ``run(x, a, b)``
    applies layers ``a .. b-1``. The layers stay registered inside ``backbone`` (one copy of each parameter,
    pretrained weights as loaded by :func:`~detect.models.backbone.build_backbone`).
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_size = backbone.input_size
        self.nhwc = backbone.nhwc
        units, shapes = self._discover()
        self._units: list[tuple[str, nn.Module]] = units  # plain list: not registered twice
        self._shapes: list[tuple[int, int, int]] = shapes

    # -- discovery -----------------------------------------------------------------------------------
    def _discover(self) -> tuple[list[tuple[str, nn.Module]], list[tuple[int, int, int]]]:
        model, name = self.backbone.model, self.backbone.timm_name
        cands = _candidates(model)
        calls: list[str] = []
        hooks = [m.register_forward_hook(lambda _m, _i, _o, n=n: calls.append(n)) for n, m in cands]
        modes = {m: m.training for m in model.modules()}
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, self.input_size, self.input_size, generator=gen).to(device)
        try:
            model.eval()
            with torch.no_grad():
                reference = model.forward_features(x)
                for h in hooks:
                    h.remove()
                hooks = []
                if len(set(calls)) != len(calls):
                    raise NotImplementedError(f"{name}: a layer runs twice in forward_features ({calls})")
                by_name = dict(cands)
                units = [(n, by_name[n]) for n in calls]
                shapes, y = [], x
                for _, m in units:
                    y = m(y)
                    s = tuple(int(v) for v in y.shape)
                    if len(s) != 4:
                        raise NotImplementedError(f"{name}: a layer returns a {len(s)}-d tensor, not a map")
                    shapes.append((s[3], s[1], s[2]) if self.nhwc else (s[1], s[2], s[3]))
                if y.shape != reference.shape or not torch.allclose(y, reference, rtol=1e-4, atol=1e-5):
                    raise NotImplementedError(
                        f"{name}: forward_features is not the chain of its layers {calls}; "
                        "this detector needs a backbone that is (CNNs: Xception, EfficientNet, ResNet, ...)"
                    )
        finally:
            for h in hooks:
                h.remove()
            for m, mode in modes.items():
                m.training = mode
        return units, shapes

    # -- layout ------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [n for n, _ in self._units]

    def __len__(self) -> int:
        return len(self._units)

    def index(self, name: str) -> int:
        """Position of the layer called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(
                f"{self.backbone.timm_name} has no layer {name!r}; layers: {self.names}"
            ) from None

    def shape(self, i: int) -> tuple[int, int, int]:
        """``(C, H, W)`` of layer ``i``'s output at ``input_size``."""
        return self._shapes[i]

    def reduction(self, i: int) -> int:
        """Output stride of layer ``i`` (a power of two: 2**round(log2(input_size / H)))."""
        return 2 ** round(math.log2(self.input_size / self._shapes[i][1]))

    def last_at(self, stride: int) -> int:
        """The last layer whose output stride is at most ``stride``."""
        found = [i for i in range(len(self)) if self.reduction(i) <= stride]
        if not found:
            raise ValueError(f"{self.backbone.timm_name}: no layer at output stride <= {stride}")
        return found[-1]

    def run_at(self, stride: int) -> list[int]:
        """The layers whose output stride is exactly ``stride`` (in order)."""
        return [i for i in range(len(self)) if self.reduction(i) == stride]

    # -- surgery -------------------------------------------------------------------------------------
    def drop(self, names: list[str]) -> None:
        """Remove layers (replaced by ``nn.Identity`` in the model, so their parameters go)."""
        missing = set(names) - {n for n, _ in self._units}
        if missing:
            raise ValueError(f"cannot drop unknown layers {sorted(missing)}")
        keep = []
        for n, m in self._units:
            if n in names:
                _set_module(self.backbone.model, n, nn.Identity())
            else:
                keep.append((n, m))
        self._shapes = [s for (n, _), s in zip(self._units, self._shapes, strict=True) if n not in names]
        self._units = keep

    def truncate(self, stop: int) -> None:
        """Keep layers ``0 .. stop-1`` only."""
        self.drop([n for n, _ in self._units[stop:]])

    def widen_input(self, in_chans: int) -> str:
        """Give the first convolution ``in_chans`` input channels; returns its name.

        The pretrained RGB filters are kept for channels 0-2 and every added channel starts from their
        mean over RGB (DeepfakeBench's SPSL initialises all four channels with that mean instead).
        """
        model = self.backbone.model
        first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
        conv = model.get_submodule(first) if isinstance(first, str) else None
        if not isinstance(conv, nn.Conv2d):
            first, conv = next(
                ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
                (None, None),
            )
        if conv is None or conv.groups != 1 or conv.in_channels != 3:
            raise NotImplementedError(f"{self.backbone.timm_name}: no 3-channel input convolution found")
        wide = copy.deepcopy(conv)
        with torch.no_grad():
            w = conv.weight
            extra = w.mean(dim=1, keepdim=True).expand(-1, in_chans - 3, -1, -1)
            wide.weight = nn.Parameter(torch.cat([w, extra], dim=1).contiguous())
        wide.in_channels = in_chans
        _set_module(model, first, wide)
        self._units = [(n, wide if m is conv else m) for n, m in self._units]
        return first

    # -- running -------------------------------------------------------------------------------------
    def run(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Apply layers ``start .. stop-1`` (``stop=None``: to the end)."""
        for _, m in self._units[start:stop]:
            x = m(x)
        return x

    def nchw(self, x: Tensor) -> Tensor:
        """A layer output as ``[B, C, H, W]`` (NHWC models are permuted)."""
        return x.permute(0, 3, 1, 2).contiguous() if self.nhwc else x

    def extra_repr(self) -> str:
        return f"{self.backbone.timm_name}: {len(self)} layers"
