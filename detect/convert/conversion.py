"""Convert one source file: map its keys, check them strictly against the project's model, save."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from detect.convert import get_format
from detect.convert.common import check_against, read_source
from detect.engine.checkpoint import save_checkpoint
from detect.engine.method_builder import build_method
from detect.models.backbone import build_backbone
from detect.utils.io import atomic_write


def converted_config(cfg: DictConfig, fmt_name: str, src: str | os.PathLike) -> DictConfig:
    """``cfg`` (the training config composed with the format's overrides) plus the format's recorded
    input, face crop and aggregation, and where it came from (``converted_from``)."""
    fmt = get_format(fmt_name)
    out = cfg.copy()
    with open_dict(out):
        out.merge_with(OmegaConf.create(dict(fmt.config)))
        out.converted_from = {"format": fmt.name, "source": os.path.basename(str(src))}
    return out


def convert_file(fmt_name: str, src: str | os.PathLike, dst: str | os.PathLike, cfg: DictConfig) -> Mapping:
    """Convert ``src`` (format ``fmt_name``) into ``dst``; ``cfg`` is the project's training config
    composed with the format's overrides. Returns what was written (for the summary line)."""
    fmt = get_format(fmt_name)
    mapped = fmt.convert(read_source(src, "model", "state_dict", "net"))
    if fmt.kind == "backbone":
        backbone = build_backbone(cfg.backbone)
        check_against(mapped, backbone.model.state_dict(), f"{fmt.name} {src}")
        backbone.model.load_state_dict(mapped, strict=True)
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in backbone.model.state_dict().items()}
        atomic_write(dst, lambda tmp: save_file(tensors, tmp))
        return {"kind": "backbone", "keys": len(tensors), "dst": str(dst)}
    config = converted_config(cfg, fmt_name, src)
    method = build_method(config.method, config.backbone, config.get("curriculum"))
    check_against(mapped, method.state_dict(), f"{fmt.name} {src}")
    method.load_state_dict(mapped, strict=True)
    state = {
        "config": OmegaConf.to_container(config, resolve=True),
        "method": {k: v.detach().clone() for k, v in method.state_dict().items()},
        "epoch": None,
    }
    save_checkpoint(dst, state)
    torch.load(dst, map_location="cpu", weights_only=True)  # what eval.py/predict.py do: must load
    return {"kind": "checkpoint", "keys": len(state["method"]), "dst": str(dst)}
