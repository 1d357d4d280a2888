"""A run's config before anything is built from it: paths made absolute, the pretrained-weights decision."""

from __future__ import annotations

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, open_dict


def absolute_paths(cfg: DictConfig) -> None:
    """Make ``cfg.paths.*`` absolute against the launch directory (Hydra does not chdir)."""
    with open_dict(cfg):
        for key in list(cfg.paths):
            cfg.paths[key] = to_absolute_path(str(cfg.paths[key]))


def check_pretrained(cfg: DictConfig) -> None:
    """``scale=paper`` leaves ``backbone.pretrained`` undecided (null): a path, or false on purpose."""
    if cfg.backbone.get("timm_name", "") is None:  # an input-only backbone option: no network to initialise
        return
    if cfg.backbone.get("pretrained", False) is None:
        raise ValueError(
            f"scale=paper trains from ImageNet weights, which cannot be downloaded here: pass "
            f"backbone.pretrained=/path/to/{cfg.backbone.get('timm_name', 'backbone')}.safetensors "
            "(a local file), or backbone.pretrained=false to train from scratch on purpose."
        )
