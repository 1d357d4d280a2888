"""Backbone factory over timm: one ``conf/backbone/<name>.yaml`` -> a :class:`Backbone` (feature extractor).

A backbone config holds ``name``, ``timm_name``, ``pretrained`` (``false`` or a local weights file, see
:mod:`detect.models.weights`), ``allow_missing`` / ``allow_unexpected`` (weight-loading leniency, default
false), ``input_size`` (the resolution methods train at), ``mean`` / ``std`` (input normalisation, for the
data pipeline), ``kwargs`` (extra ``timm.create_model`` kwargs, e.g. ``drop_rate``, ``drop_path_rate``) and
optionally ``static_same_padding`` (a resolution: fix "same" pads as ``efficientnet_pytorch`` does for it) and
``stem_padding`` (the first convolution's pad; DeepfakeBench's EfficientNet-B4: 0), see
:mod:`detect.models.static_padding`.

The model is always built with ``pretrained=False, num_classes=0`` (timm never downloads); methods put their
own heads on :meth:`Backbone.forward_features` (always NCHW) or :meth:`Backbone.forward` (pooled ``[B, C]``).

Fixed-size models (timm's ``fixed_input_size``, e.g. Swin / Swin-V2) get ``img_size=input_size`` passed
automatically when ``input_size`` differs from timm's default (or set ``kwargs.img_size`` yourself); such a
model then only accepts that resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch import Tensor, nn

from detect.models.static_padding import freeze_same_padding
from detect.models.weights import LoadReport, load_pretrained, resolve_pretrained

log = logging.getLogger(__name__)

#: timm kwargs the factory owns (a config must not set them).
_RESERVED_KWARGS = ("pretrained", "num_classes", "features_only", "pretrained_cfg_overlay")


class Backbone(nn.Module):
    """A timm model without classifier, exposing an NCHW feature map and its pooled vector.

    ``num_features`` is both the channel count of :meth:`forward_features` and the size of :meth:`pool`'s
    output. ``name``, ``timm_name``, ``input_size``, ``mean``, ``std`` come from the config;
    ``load_report`` says what was loaded (``None`` for random init).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        timm_name: str,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.timm_name = timm_name
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.num_features: int = int(model.num_features)
        self.nhwc = getattr(model, "output_fmt", "NCHW") == "NHWC"  # timm Swin / Swin-V2
        self.load_report: LoadReport | None = None
        self._shapes: dict[int, tuple[int, int, int]] = {}

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map, ``[B, C, H, W]`` (NHWC models are permuted)."""
        fmap = self.model.forward_features(x)
        if self.nhwc:
            fmap = fmap.permute(0, 3, 1, 2).contiguous()
        return fmap

    def pool(self, fmap: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C]`` through the timm model's own pooling / pre-logits path."""
        if self.nhwc:
            fmap = fmap.permute(0, 2, 3, 1)
        return self.model.forward_head(fmap, pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features ``[B, num_features]``."""
        return self.pool(self.forward_features(x))

    def feature_shape(self, resolution: int | None = None) -> tuple[int, int, int]:
        """``(C, H, W)`` of :meth:`forward_features` at ``resolution`` (default ``input_size``), by a dry run.

        The dry run uses a ``1x3xRxR`` zero tensor under ``torch.no_grad`` in eval mode (BatchNorm statistics
        are untouched; each module's train/eval flag is restored), on the parameters' device (CPU unless the
        backbone was moved). Cached per resolution.
        """
        r = int(resolution or self.input_size)
        if r not in self._shapes:
            modes = {m: m.training for m in self.modules()}
            device = next(self.parameters()).device
            try:
                self.eval()
                with torch.no_grad():
                    fmap = self.forward_features(torch.zeros(1, 3, r, r, device=device))
            finally:
                for m, mode in modes.items():
                    m.training = mode
            c, h, w = (int(s) for s in fmap.shape[1:])
            if c != self.num_features:
                raise RuntimeError(
                    f"{self.timm_name}: feature map has {c} channels, expected {self.num_features}"
                )
            self._shapes[r] = (c, h, w)
        return self._shapes[r]

    def extra_repr(self) -> str:
        return f"name={self.name}, timm_name={self.timm_name}, input_size={self.input_size}"


def _plain(cfg: Any) -> Any:
    """A DictConfig / ListConfig -> plain containers (resolved); anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, DictConfig | ListConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return cfg


#: Modules some timm models apply *after* global pooling, widening the pooled vector beyond the map's
#: channels: VGG's 4096-wide ConvMlp (fc6/fc7) and MobileNetV3 / LCNet / GhostNet's 1x1 ``conv_head``.
_POST_POOL = ("pre_logits", "conv_head", "norm_head", "act2")


def _drop_post_pool(model: nn.Module, timm_name: str) -> list[str]:
    """Make the pooled vector as wide as the feature map; return the names of the modules removed.

    When timm's pre-logits width (``head_hidden_size``) differs from ``num_features``, the post-pooling
    modules are replaced by identities, so :meth:`Backbone.pool` is a plain global average over the
    ``num_features``-channel map (their checkpoint keys are then reported as ignored on load).
    """
    hidden = getattr(model, "head_hidden_size", model.num_features)
    if hidden == model.num_features:
        return []
    dropped = [n for n in _POST_POOL if isinstance(getattr(model, n, None), nn.Module)]
    for n in dropped:
        setattr(model, n, nn.Identity())
    model.head_hidden_size = model.num_features
    with torch.no_grad():  # pooling a 2x2 map is cheap: check the result
        fmt = getattr(model, "output_fmt", "NCHW")
        shape = (1, 2, 2, model.num_features) if fmt == "NHWC" else (1, model.num_features, 2, 2)
        width = model.forward_head(torch.zeros(shape), pre_logits=True).shape[-1]
    if width != model.num_features:
        raise NotImplementedError(
            f"{timm_name}: pooled size {hidden} != feature channels {model.num_features}; not supported"
        )
    log.info(
        "%s: dropped post-pooling %s (%d -> %d), pool() is %d-d",
        timm_name,
        dropped,
        model.num_features,
        hidden,
        model.num_features,
    )
    return [n for n in dropped if n != "act2"]


def build_backbone(cfg: Mapping[str, Any]) -> Backbone:
    """Build a :class:`Backbone` from a backbone config mapping (see the module docstring)."""
    cfg = dict(_plain(cfg))
    if "timm_name" in cfg and cfg["timm_name"] is None:
        raise ValueError(
            f"backbone={cfg.get('name')} describes the input only (conf/backbone/{cfg.get('name')}.yaml has "
            "timm_name: null, for methods with their own network such as MesoNet): this method builds a timm "
            "backbone, choose one with backbone=... (e.g. backbone=effb4)"
        )
    for key in ("name", "timm_name", "input_size"):
        if key not in cfg or cfg[key] is None:
            raise ValueError(f"backbone config lacks '{key}': {cfg}")
    timm_name = str(cfg["timm_name"])
    if not timm.is_model(timm_name):
        raise ValueError(
            f"unknown timm model '{timm_name}' (timm {timm.__version__}); see timm.list_models()"
        )
    weights = resolve_pretrained(cfg.get("pretrained", False), timm_name)  # fails before any building

    kwargs = dict(_plain(cfg.get("kwargs")) or {})
    bad = [k for k in _RESERVED_KWARGS if k in kwargs]
    if bad:
        raise ValueError(f"backbone.kwargs must not set {bad}: use backbone.pretrained for weights")
    input_size = int(cfg["input_size"])
    default = timm.models.get_pretrained_cfg(timm_name)
    fixed = default is not None and default.fixed_input_size and "img_size" not in kwargs
    if fixed and tuple(default.input_size[-2:]) != (input_size, input_size):
        kwargs["img_size"] = input_size
        log.info("%s: fixed-size model, building with img_size=%d", timm_name, input_size)

    model = timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    dropped = _drop_post_pool(model, timm_name)
    if cfg.get("static_same_padding") or cfg.get("stem_padding") is not None:
        size = int(cfg.get("static_same_padding") or input_size)
        freeze_same_padding(model, size, cfg.get("stem_padding"))
    mean = cfg.get("mean") or model.pretrained_cfg.get("mean")
    std = cfg.get("std") or model.pretrained_cfg.get("std")
    backbone = Backbone(
        model, name=str(cfg["name"]), timm_name=timm_name, input_size=input_size, mean=mean, std=std
    )
    if weights is not None:
        backbone.load_report = load_pretrained(
            model,
            weights,
            allow_missing=bool(cfg.get("allow_missing", False)),
            allow_unexpected=bool(cfg.get("allow_unexpected", False)),
            ignore={"unused post-pooling head": dropped} if dropped else None,
        )
    else:
        log.info("%s (%s): random init", backbone.name, timm_name)
    return backbone
