"""What every converter shares: reading a source file, strict key mapping, head conversion."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from detect.models.weights import read_state_dict


class ConversionError(ValueError):
    """A source checkpoint that does not map onto the project's model; the message lists the keys."""


@dataclass(frozen=True)
class Format:
    """A source format: how to map its weights and what the converted checkpoint's config records.

    ``kind``: ``checkpoint`` (a full detector: ``method`` + ``backbone`` choices and ``config`` overrides)
    or ``backbone`` (a backbone weights file for ``backbone.pretrained``).
    ``convert(source_state_dict) -> target_state_dict``.
    """

    name: str
    kind: str
    description: str
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    overrides: tuple[str, ...] = ()  # Hydra overrides composing the project's config for it
    config: Mapping = field(default_factory=dict)  # merged into the composed config (input, inference)


def read_source(path: str | os.PathLike, *wrappers: str) -> dict[str, torch.Tensor]:
    """A source file's flat state dict (``weights_only``; safetensors too), unwrapped from the first of
    ``wrappers`` (e.g. ``"model"``, ``"state_dict"``) it holds; ``module.`` (DataParallel) prefixes go."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"source checkpoint not found: {path} (src=)")
    if str(path).endswith(".safetensors"):
        sd = read_state_dict(path)
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        for w in wrappers:
            if isinstance(obj, Mapping) and w in obj and isinstance(obj[w], Mapping):
                obj = obj[w]
                break
        if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            keys = list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise ConversionError(f"{path}: no state dict of tensors found (top level: {keys})")
        sd = dict(obj)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _listing(keys, limit: int = 25) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit})" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def map_keys(
    source: Mapping[str, torch.Tensor],
    rename: Callable[[str], str | None],
    drop: Callable[[str], bool] = lambda k: False,
    what: str = "source",
) -> dict[str, torch.Tensor]:
    """Rename every key of ``source`` (``drop``ped keys excepted); a key ``rename`` cannot map is an
    error listing all such keys."""
    out, unmapped = {}, []
    for k, v in source.items():
        if drop(k):
            continue
        new = rename(k)
        if new is None:
            unmapped.append(k)
        else:
            out[new] = v
    if unmapped:
        raise ConversionError(
            f"{what}: {len(unmapped)} key(s) this format does not map: {_listing(unmapped)}"
        )
    return out


def check_against(
    mapped: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str
) -> None:
    """Strict comparison with the target model's state dict: missing, unexpected and mis-shaped keys."""
    missing = set(expected) - set(mapped)
    unexpected = set(mapped) - set(expected)
    shapes = [
        f"{k} {tuple(mapped[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(mapped) & set(expected)
        if tuple(mapped[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listing(shapes)}")
    if problems:
        raise ConversionError(f"{what} does not match the project's model: " + "; ".join(problems))


def two_logit_head(weight: torch.Tensor, bias: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``Linear(C, 2)`` read as softmax[:, 1] -> the equivalent ``Linear(C, 1)`` read as sigmoid:
    softmax(z)[1] = sigmoid(z1 - z0), so w = w1 - w0, b = b1 - b0."""
    if weight.dim() != 2 or weight.shape[0] != 2 or bias.shape != (2,):
        raise ConversionError(f"{what}: expected a two-logit Linear head, got weight {tuple(weight.shape)}")
    return (weight[1] - weight[0]).unsqueeze(0).clone(), (bias[1:] - bias[:1]).clone()


EFFB4_STAGE_DEPTHS = (2, 4, 4, 6, 6, 8, 2)  # blocks per stage of EfficientNet-B4 (depth multiplier 1.8)
_EP_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_EP_DS = {  # stage 0: depthwise-separable blocks (expansion 1)
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_EP_IR = {  # later stages: inverted residual blocks
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def efficientnet_pytorch_key(key: str, depths: tuple[int, ...] = EFFB4_STAGE_DEPTHS) -> str | None:
    """``efficientnet_pytorch`` EfficientNet key -> timm ``tf_efficientnet_*`` key (None: not a feature
    extractor key, e.g. ``_fc``). Its ``_blocks`` are numbered flat; timm's by stage and block."""
    parts = key.split(".")
    if parts[0] in _EP_TOP:
        return ".".join([_EP_TOP[parts[0]], *parts[1:]])
    if parts[0] != "_blocks" or len(parts) < 4 or not parts[1].isdigit():
        return None
    flat = int(parts[1])
    starts = [sum(depths[:i]) for i in range(len(depths))]
    stage = max(i for i, s in enumerate(starts) if s <= flat)
    if flat >= sum(depths):
        return None
    table = _EP_DS if stage == 0 else _EP_IR
    if parts[2] not in table:
        return None
    return ".".join(["blocks", str(stage), str(flat - starts[stage]), table[parts[2]], *parts[3:]])
