"""Build a method from its config: ``cfg.method._target_`` names the class, and ``cfg.curriculum._target_``
(DFFC, DIH, BabyStep, vanilla: ``conf/curriculum/``) a wrapper around it. The engine names no method."""

from __future__ import annotations

from collections.abc import Mapping

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from detect.engine.method_contract import Method


def _plain(cfg: Mapping) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def build_method(method_cfg: Mapping, backbone_cfg: Mapping, curriculum_cfg: Mapping | None = None) -> Method:
    """Instantiate ``method_cfg`` (its ``_target_``) with the backbone config, plain containers inside; with
    a ``curriculum_cfg``, instantiate its ``_target_`` around the method (``detector=``)."""
    method_cfg, backbone_cfg = _plain(method_cfg), _plain(backbone_cfg)
    method_cfg.pop("recipe", None)  # the training recipe is the trainer's (conf/train.yaml), not the method's
    if "_target_" not in method_cfg:
        raise ValueError(f"the method config has no _target_ (keys: {sorted(method_cfg)}): name its class")
    method = instantiate(method_cfg, backbone=backbone_cfg, _recursive_=False, _convert_="all")
    if not isinstance(method, Method):
        raise TypeError(f"method._target_ must build a {Method.__module__}.Method, got {type(method)}")
    if curriculum_cfg:
        cur = _plain(curriculum_cfg)
        cur.pop("recipe", None)
        if "_target_" not in cur:
            raise ValueError(
                "the curriculum config has no _target_ (a checkpoint saved before curricula were built "
                "from config?): add curriculum._target_ naming the wrapper class, as "
                "conf/curriculum/dffc.yaml does"
            )
        method = instantiate(cur, detector=method, _recursive_=False, _convert_="all")
        if not isinstance(method, Method):
            raise TypeError(
                f"curriculum._target_ must build a {Method.__module__}.Method, got {type(method)}"
            )
    return method
