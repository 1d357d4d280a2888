"""Local backbone weights: resolve ``backbone.pretrained`` and load a state-dict file, checked key by key.

Nothing is ever downloaded here (no hub access). ``backbone.pretrained`` is either

- ``false`` / ``null`` (random init), or
- a path to a local ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file, e.g. one downloaded elsewhere
  from the timm / Hugging Face page of the model (``https://huggingface.co/timm/<timm_name>.<tag>``).

Anything else (``true``, ``imagenet``, ``timm/efficientnet_b4.ra2_in1k``, a missing path) fails at once.

The loader (:func:`load_pretrained`) unwraps common containers (``state_dict`` / ``model`` entries,
``module.`` prefixes), drops the classifier head (the backbone has ``num_classes=0``; the head is named by
the timm model's ``default_cfg['classifier']``), then compares with the model's state dict: shape mismatches
always raise, missing / unexpected keys raise unless ``allow_missing`` / ``allow_unexpected`` is set, and a
summary is logged. It never loads with ``strict=False`` silently.

An alternative route is timm's own: ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=PATH))`` loads a local file through timm's filters (which also adapt
e.g. ``in_chans``), but it is less explicit about what was dropped; this module is what the runner uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detect.utils.torch_files import UnreadableFile, load_safetensors_file, load_torch_file

log = logging.getLogger(__name__)

#: Strings that mean "no pretrained weights" (Hydra gives real booleans for ``false``/``null``).
_RANDOM_INIT = {"", "false", "none", "null", "no", "0", "random"}
#: Container entries that hold the actual state dict, tried in this order.
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
#: Key prefixes stripped when *every* key carries them (and the model's own keys do not).
_WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")


class WeightsError(ValueError):
    """A ``backbone.pretrained`` value that cannot be honoured, or a checkpoint that does not fit."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did (also logged)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    ignored: dict[str, list[str]] = field(default_factory=dict)  # reason -> keys
    missing: list[str] = field(default_factory=list)  # allowed missing keys (left at random init)
    unexpected: list[str] = field(default_factory=list)  # allowed unexpected keys (not loaded)
    reshaped: list[str] = field(default_factory=list)  # linear [o, i] -> 1x1 conv [o, i, 1, 1]

    def summary(self) -> str:
        """One line per category."""
        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        for reason, keys in self.ignored.items():
            lines.append(f"ignored ({reason}): {_short(keys)}")
        if self.reshaped:
            lines.append(f"reshaped linear -> 1x1 conv: {_short(self.reshaped)}")
        if self.missing:
            lines.append(f"missing, allowed (kept at random init): {_short(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected, allowed (not loaded): {_short(self.unexpected)}")
        return "\n  ".join(lines)


def _short(keys: Iterable[str], limit: int = 20) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _hub_hint(timm_name: str) -> str:
    """Where the user could download the weights by hand (the timm / Hugging Face page)."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(timm_name)
        if cfg is not None and cfg.hf_hub_id:
            return f"https://huggingface.co/{cfg.hf_hub_id}"
        if cfg is not None and cfg.url:
            return cfg.url
    except Exception:  # noqa: BLE001 - a hint only
        pass
    return f"https://huggingface.co/timm (search '{timm_name}')"


def _cannot_fetch(value: Any, timm_name: str, why: str) -> WeightsError:
    return WeightsError(
        f"backbone.pretrained={value!r} for timm model '{timm_name}': {why}. Weights cannot be fetched "
        "here (no hub access; nothing is downloaded). Pass a local file instead: "
        "backbone.pretrained=/path/to/weights.safetensors (e.g. downloaded elsewhere from the "
        f"timm/Hugging Face page of '{timm_name}': {_hub_hint(timm_name)}), "
        "or set backbone.pretrained=false to train from random init on purpose."
    )


def resolve_pretrained(value: Any, timm_name: str) -> Path | None:
    """Return ``None`` for random init or the local weights file; raise :class:`WeightsError` otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        raise _cannot_fetch(value, timm_name, "'true' asks for hub weights")
    if not isinstance(value, str | os.PathLike):
        raise WeightsError(f"backbone.pretrained must be false, null or a file path, got {value!r}")
    text = os.fspath(value).strip()
    if text.lower() in _RANDOM_INIT:
        return None
    if text.lower() in {"true", "yes", "imagenet"}:
        raise _cannot_fetch(value, timm_name, f"'{text}' asks for hub weights")
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    if path.is_file():
        return path.resolve()
    if path.exists():
        raise _cannot_fetch(value, timm_name, f"{path.resolve()} is not a regular file")
    raise _cannot_fetch(value, timm_name, f"no such local file: {path.absolute()}")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file on CPU and unwrap common containers into a flat ``{key: tensor}`` dict."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            obj: Any = load_safetensors_file(path, "weights file")
        else:
            obj = load_torch_file(path, "cpu", "weights file")
    except UnreadableFile as exc:
        raise WeightsError(str(exc)) from None
    for _ in range(4):  # nested containers, e.g. {'model': {'state_dict': ...}}
        if not isinstance(obj, Mapping) or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    others = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not tensors:
        raise WeightsError(
            f"{path} holds no tensors at the top level nor under {list(_CONTAINER_KEYS)} "
            f"(keys: {_short(others)})"
        )
    if others:
        log.warning("%s: skipping non-tensor entries %s", path, _short(others))
    return tensors


def _strip_wrappers(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DataParallel/DDP) and other wrapper prefixes that every key carries."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if (
                sd
                and all(k.startswith(prefix) for k in sd)
                and not all(k.startswith(prefix) for k in model_keys)
            ):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


def _classifier_names(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    clf = cfg.get("classifier") if isinstance(cfg, Mapping) else getattr(cfg, "classifier", None)
    if not clf:
        return []
    return [clf] if isinstance(clf, str) else list(clf)


def _matches(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
    ignore: Mapping[str, Iterable[str]] | None = None,
) -> LoadReport:
    """Load a local weights file into a timm model built with ``num_classes=0``; see the module docstring.

    ``ignore`` maps a reason to module-name prefixes whose checkpoint keys are dropped and reported (the
    classifier head named by ``default_cfg['classifier']`` is always added as "classifier head").
    """
    path = Path(path)
    report = LoadReport(path=str(path))
    own = model.state_dict()
    sd = _strip_wrappers(read_state_dict(path), set(own))

    drop: dict[str, list[str]] = {"classifier head": _classifier_names(model)}
    for reason, prefixes in (ignore or {}).items():
        drop.setdefault(reason, []).extend(prefixes)
    for reason, prefixes in drop.items():
        # Never drop a key the model actually has (e.g. convnext's ``head.norm`` next to ``head.fc``).
        keys = sorted(k for k in sd if k not in own and _matches(k, prefixes))
        if keys:
            report.ignored[reason] = keys
            for k in keys:
                del sd[k]

    mismatched: list[str] = []
    for k, v in list(sd.items()):
        if k not in own or own[k].shape == v.shape:
            continue
        target = own[k].shape
        if v.ndim == 2 and len(target) == 4 and tuple(target[2:]) == (1, 1) and tuple(target[:2]) == v.shape:
            sd[k] = v[:, :, None, None]  # a 1x1 conv stored as a linear weight (e.g. Cadene's Xception)
            report.reshaped.append(k)
        else:
            mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target)}")
    if mismatched:
        raise WeightsError(
            f"{path}: shape mismatch for {len(mismatched)} key(s):\n  " + "\n  ".join(mismatched)
        )

    missing = sorted(k for k in own if k not in sd)
    benign = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in benign]
    unexpected = sorted(k for k in sd if k not in own)
    if missing and not allow_missing:
        raise WeightsError(
            f"{path}: {len(missing)} model key(s) missing from the checkpoint "
            f"(set backbone.allow_missing=true to keep them at random init): {_short(missing, 50)}"
        )
    if unexpected and not allow_unexpected:
        raise WeightsError(
            f"{path}: {len(unexpected)} unexpected checkpoint key(s) (set backbone.allow_unexpected=true to "
            f"ignore them): {_short(unexpected, 50)}"
        )
    for k in unexpected:
        del sd[k]
    for k in benign:  # BatchNorm's step counter is not a weight; keep the model's own
        sd[k] = own[k]
    # Everything that remains is checked; strict=False only because allowed-missing keys are absent.
    result = model.load_state_dict(sd, strict=not missing)
    assert sorted(result.missing_keys) == missing and not result.unexpected_keys, result
    report.loaded = sorted(k for k in sd if k not in benign)
    report.missing, report.unexpected = missing, unexpected
    log.info("backbone weights: %s", report.summary())
    return report
