"""Checkpoint trust: a checkpoint's saved config may only name classes the project itself configures.

A checkpoint carries its resolved config, and rebuilding the method means ``hydra.utils.instantiate``
on it; ``torch.load(weights_only=True)`` protects the tensors, not that config. So before anything is
instantiated, every ``_target_`` anywhere in the tree (nested ones included) must be an exact name from
the allow-list: the ``_target_`` strings of this project's ``conf/`` (launchers excepted) plus the
user's ``trusted_targets`` list. No prefix rules: ``torch.optim.Adam`` is allowed, ``torch.hub.load``
is not. No path stored in a checkpoint's config is opened either: :func:`checkpoint_build_config`
replaces weight files, caches and data paths with the current run's values.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_PATH_SUFFIXES = ("_path", "_file", "_dir", "_weights", "checkpoint", "pretrained")


class UntrustedTarget(ValueError):
    """A config names a ``_target_`` outside the allow-list."""


def _targets_in(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_":
                yield where, value
            else:
                yield from _targets_in(value, where)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _targets_in(value, f"{prefix}[{i}]")


@functools.cache
def project_targets(conf_dir: str | None = None) -> frozenset[str]:
    """Every ``_target_`` string in the project's ``conf/`` (``conf/hydra`` launchers excluded)."""
    root = Path(conf_dir) if conf_dir else CONF_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"the project's config folder {root} is missing; run from the repository")
    found: set[str] = set()
    for path in sorted(root.rglob("*.yaml")):
        if "hydra" in path.relative_to(root).parts[:1]:
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found.update(str(t) for _, t in _targets_in(doc) if isinstance(t, str) and "${" not in t)
    return frozenset(found)


def allowed_targets(extra: Iterable[str] | None = None) -> frozenset[str]:
    """The allow-list: the project's own targets plus ``extra`` (the config key ``trusted_targets``)."""
    return project_targets() | frozenset(str(t) for t in (extra or ()))


def check_targets(config: Any, allowed: Iterable[str], source: str = "config") -> None:
    """Raise :class:`UntrustedTarget` listing every ``_target_`` in ``config`` (a plain container or a
    DictConfig, checked whole) that is not exactly in ``allowed``."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(config, DictConfig | ListConfig):
        config = OmegaConf.to_container(config, resolve=False)
    allowed = frozenset(allowed)
    bad = [(k, t) for k, t in _targets_in(config) if not isinstance(t, str) or t not in allowed]
    if bad:
        listed = "; ".join(f"{k}={t!r}" for k, t in bad)
        raise UntrustedTarget(
            f"{source} names targets outside the allow-list, refused before building anything: {listed}. "
            "Only the _target_s of this project's conf/ are trusted; if you trust this file's author, "
            "list each exact name in trusted_targets=[...]"
        )


def _replace_paths(node: Any, current: Any, cache_dir: str | None) -> Any:
    """A copy of ``node`` whose path-like keys take ``current``'s value (``pretrained`` → False,
    ``cache_dir`` → the current ``paths.cache_dir``)."""
    if not isinstance(node, Mapping):
        return node
    out = {}
    for key, value in node.items():
        mine = current.get(key) if isinstance(current, Mapping) else None
        if key == "pretrained":
            out[key] = False
        elif key == "cache_dir":
            out[key] = cache_dir
        elif str(key).endswith(_PATH_SUFFIXES) and not isinstance(value, Mapping | list):
            out[key] = mine if not isinstance(mine, Mapping | list) else None
        else:
            out[key] = _replace_paths(value, mine, cache_dir)
    return out


def checkpoint_build_config(saved: Mapping, current: Mapping, extra_trusted: Iterable[str] = ()) -> dict:
    """The ``method``/``backbone``/``curriculum``/``input`` sections of a checkpoint's saved config,
    checked against the allow-list and with every stored path replaced by the current config's value
    (the weights come from the checkpoint itself, so ``backbone.pretrained`` is off)."""
    saved = dict(saved)
    check_targets(saved, allowed_targets(extra_trusted), source="the checkpoint's saved config")
    cache_dir = (current.get("paths") or {}).get("cache_dir")
    out = {}
    for section in ("method", "backbone", "curriculum", "input"):
        value = saved.get(section)
        out[section] = (
            _replace_paths(value, current.get(section), cache_dir) if isinstance(value, Mapping) else value
        )
    return out
