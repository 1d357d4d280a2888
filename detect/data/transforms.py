"""Albumentations pipelines from config: augmentations, then resize/crop, normalise, to tensor.

One pipeline serves a single image or a group sharing one augmentation draw (``apply_shared``):
the group's images are passed as additional targets, so every image gets the same parameters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import albumentations as A
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf


def _to_container(obj):
    if isinstance(obj, DictConfig | ListConfig):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def build_augmentations(specs: Sequence[Mapping] | None) -> list[A.BasicTransform]:
    """Instantiate a list of ``{_target_: albumentations.X, ...}`` specs (nested Compose/OneOf allowed)."""
    out = []
    for spec in _to_container(specs) or []:
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise ValueError(f"augmentation spec must be a mapping with '_target_', got {spec!r}")
        out.append(instantiate(spec, _convert_="all"))
    return out


class Pipeline:
    """Augment (train only) → resize to ``size`` (optionally centre-crop ``crop``) → normalise → CHW."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Sequence[Mapping] | None = None,
        crop: int | None = None,
        max_group: int = 8,
    ) -> None:
        self.size, self.crop = int(size), (int(crop) if crop else None)
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3) * 255.0
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3) * 255.0
        self.spec = {
            "augment": _to_container(augment) or [],
            "size": size,
            "crop": crop,
            "mean": list(mean),
            "std": list(std),
        }
        geometry: list[A.BasicTransform] = [A.Resize(self.size, self.size)]
        if self.crop:
            geometry.append(A.CenterCrop(self.crop, self.crop))
        extra = {f"image{i}": "image" for i in range(1, max_group)}
        extra.update({f"mask{i}": "mask" for i in range(1, max_group)})
        self.augment = A.Compose(build_augmentations(augment), additional_targets=extra)
        self.geometry = A.Compose(geometry, additional_targets=extra)
        self.max_group = max_group

    def set_seed(self, seed: int) -> None:
        """Seed the augmentation draws (albumentations 2.x keeps its own RNG, untouched by global seeds)."""
        self.augment.set_random_seed(int(seed) % (2**32))
        self.geometry.set_random_seed((int(seed) + 1) % (2**32))

    @property
    def config_hash(self) -> str:
        """A short hash of the pipeline's configuration (printed beside throughput figures)."""
        return hashlib.sha1(json.dumps(self.spec, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def _finish(self, img: np.ndarray) -> torch.Tensor:
        x = (img.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def __call__(self, image: np.ndarray, augment: bool = True) -> torch.Tensor:
        """Transform one HWC uint8 RGB image into a normalised CHW float tensor."""
        return self.apply_shared([image], augment=augment)[0][0]

    def augment_group(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One augmentation draw applied to every image (and mask) of a group; arrays stay HWC uint8."""
        return self._run(self.augment, images, masks)

    def finalize_group(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None
    ) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Resize/crop every image (and mask) of a group, then normalise the images to CHW tensors."""
        images, masks = self._run(self.geometry, images, masks)
        return [self._finish(im) for im in images], masks

    def apply_shared(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None = None,
        augment: bool = True,
    ) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Augment (one draw for the whole group, if ``augment``) and finalize a group of images."""
        if augment:
            images, masks = self.augment_group(images, masks)
        return self.finalize_group(images, masks)

    def _run(
        self, compose: A.Compose, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        masks = list(masks or [])
        if len(images) > self.max_group or len(masks) > self.max_group:
            raise ValueError(f"group of {len(images)} images exceeds max_group={self.max_group}")
        data = {("image" if i == 0 else f"image{i}"): im for i, im in enumerate(images)}
        data.update({("mask" if i == 0 else f"mask{i}"): m for i, m in enumerate(masks)})
        data = compose(**data)
        out_images = [data["image" if i == 0 else f"image{i}"] for i in range(len(images))]
        out_masks = [data["mask" if i == 0 else f"mask{i}"] for i in range(len(masks))]
        return out_images, out_masks


def build_pipeline(input_cfg: Mapping, augment: Sequence[Mapping] | None) -> Pipeline:
    """Build from the ``input`` config node (size, mean, std, crop) and an augmentation list."""
    return Pipeline(
        size=input_cfg["size"],
        mean=input_cfg["mean"],
        std=input_cfg["std"],
        augment=augment,
        crop=input_cfg.get("crop"),
    )
