"""Build a detector from a checkpoint: the one place ``predict.py`` and ``scripts/export.py`` load weights.

A checkpoint holds ``config`` (the resolved training config) and ``method`` (the weights), as the
trainer writes it and as :mod:`detect.convert` writes a converted published checkpoint. Besides the
method and backbone, the config says how faces must be prepared:

- ``input``: model input size, normalisation mean/std, optional centre crop (the training pipeline's);
- ``inference`` (optional; converted checkpoints write it): ``crop`` (``mode``, ``scale``, ``size``: how a
  face is cut from a frame) and ``aggregate`` (how frame scores become a video score). Checkpoints trained
  here lack it and get :data:`DEFAULT_INFERENCE`: the preprocessing's crop (box x1.3, 256 px, as
  ``conf/preprocess.yaml``) and the evaluation's video rule (mean of frame probabilities).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from detect.data.transforms import Pipeline, build_pipeline
from detect.engine.checkpoint import describe, load_checkpoint, load_method_state, require_run_checkpoint
from detect.engine.method_builder import build_method
from detect.engine.method_contract import Method
from detect.engine.trust import checkpoint_build_config

AGGREGATES = ("mean", "mean_of_frame_max")
#: box, align: :func:`detect.data.preprocess.crop.crop_matrix`; rect: the box grown x scale per axis,
#: stretched to size x size (SBI's test crop), :func:`detect.inference.face_sampling.rect_matrix`.
CROP_MODES = ("box", "align", "rect")

DEFAULT_INFERENCE: dict = {
    "crop": {"mode": "box", "scale": 1.3, "size": 256},
    "aggregate": "mean",
}


@dataclass
class FaceCrop:
    """How a face is cut from a frame (:func:`detect.data.preprocess.crop.crop_matrix`)."""

    mode: str
    scale: float
    size: int


@dataclass
class LoadedDetector:
    """A method in eval mode and what inference needs to feed it like its training data."""

    method: Method
    config: DictConfig
    pipeline: Pipeline
    crop: FaceCrop
    aggregate: str
    epoch: int | None
    path: str

    @property
    def input_size(self) -> int:
        return int(self.config.input.get("crop") or self.config.input.size)


def inference_settings(config: DictConfig | Mapping) -> tuple[FaceCrop, str]:
    """The checkpoint's face crop and video aggregation (defaults for checkpoints trained here)."""
    node = config.get("inference") or {}
    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    crop = {**DEFAULT_INFERENCE["crop"], **(node.get("crop") or {})}
    aggregate = node.get("aggregate") or DEFAULT_INFERENCE["aggregate"]
    if crop["mode"] not in CROP_MODES:
        raise ValueError(f"checkpoint config inference.crop.mode={crop['mode']!r}; use one of {CROP_MODES}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"checkpoint config inference.aggregate={aggregate!r}; use one of {AGGREGATES}")
    return FaceCrop(str(crop["mode"]), float(crop["scale"]), int(crop["size"])), str(aggregate)


def load_detector(
    ckpt_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    trusted_targets: Iterable[str] = (),
    cache_dir: str | None = None,
) -> LoadedDetector:
    """Load ``ckpt_path`` (``weights_only``), rebuild its method strictly, move it to ``device``, eval mode.

    The same steps as ``eval.py`` (:func:`detect.engine.scoring.evaluate_checkpoint`), under the same trust
    rule (:func:`detect.engine.trust.checkpoint_build_config`): only the project's own ``_target_``s (plus
    ``trusted_targets``) are built, and no path stored in the checkpoint is opened (``cache_dir`` is the
    current run's). The trained config's ``method``/``backbone``/``curriculum`` build the method, its
    ``input`` the pipeline.
    """
    state = require_run_checkpoint(load_checkpoint(ckpt_path, "cpu"), ckpt_path)
    build = checkpoint_build_config(state["config"], {"paths": {"cache_dir": cache_dir}}, trusted_targets)
    config = OmegaConf.create(state["config"])
    method = build_method(build["method"], build["backbone"], build.get("curriculum"))
    load_method_state(method, state, ckpt_path, describe(state))
    method.to(device).eval()
    crop, aggregate = inference_settings(config)
    return LoadedDetector(
        method=method,
        config=config,
        pipeline=build_pipeline(OmegaConf.create(build["input"]), None),
        crop=crop,
        aggregate=aggregate,
        epoch=state.get("epoch"),
        path=str(ckpt_path),
    )
