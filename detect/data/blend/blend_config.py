"""Parameters of the SBI and CBI blendfakes (docs/blendfakes.md).

Defaults are the released code's: SBI (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended
Images", CVPR 2022, Sec. 3 and its code) and the Face X-ray style cross blend (Li et al., "Face X-ray for
More General Face Forgery Detection", CVPR 2020) as ProDet (Cheng et al., NeurIPS 2024) uses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from omegaconf import OmegaConf

HULL_TYPES = ("full", "extended", "components", "facehull")
"""Face X-ray's four landmark hulls (its ``dfl_full``, ``extended``, ``components``, ``facehull``)."""

BLEND_VERSION = "1"
"""Bump when the blending output changes for the same parameters (part of the config hash)."""


@dataclass(frozen=True)
class BlendConfig:
    """What SBI and CBI draw from. Every field is part of ``key()``.

    Mask: ``p_first_68`` (use only the 68 dlib points), ``hull_types``, ``forehead_in_full`` (the full
    hull takes the 13 forehead points of 81-point landmarks, as docs/blendfakes.md describes; Face X-ray's
    ``dfl_full`` uses 68 points only). SBI source transforms: ``p_transform_source`` (else the target),
    RGBShift ``rgb_shift``/``p_rgb_shift``, HueSaturationValue ``hsv_shift``/``p_hsv``,
    RandomBrightnessContrast ``brightness``/``contrast``/``p_brightness_contrast`` (the released SBI
    code applies the last two with p=1; only RGBShift has p=0.3), then one of downscale by
    ``downscale_factors`` or Sharpen. Geometry (source and mask): translate ``translate_x``/``y`` (fraction
    of the size), per-axis ``scale``; elastic (mask only) ``elastic_alpha``/``elastic_sigma``. Blend mask:
    resize to ``mask_size`` (each side drawn), blur (odd ``blur1_kernel``), keep the maximum, blur (odd
    ``blur2_kernel``, integer ``blur2_sigma``), ``ratios``. CBI: ``n_neighbours`` nearest reals.
    """

    p_first_68: float = 0.25
    hull_types: tuple[str, ...] = HULL_TYPES
    forehead_in_full: bool = True
    p_transform_source: float = 0.5
    rgb_shift: float = 20.0
    p_rgb_shift: float = 0.3
    hsv_shift: float = 0.3
    p_hsv: float = 1.0
    brightness: float = 0.1
    contrast: float = 0.1
    p_brightness_contrast: float = 1.0
    downscale_factors: tuple[int, ...] = (2, 4)
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)
    translate_x: float = 0.03
    translate_y: float = 0.015
    scale: tuple[float, float] = (0.95, 1 / 0.95)
    elastic_alpha: float = 50.0
    elastic_sigma: float = 7.0
    mask_size: tuple[int, int] = (192, 256)
    blur1_kernel: tuple[int, int] = (5, 25)
    blur2_kernel: tuple[int, int] = (5, 25)
    blur2_sigma: tuple[int, int] = (5, 45)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    n_neighbours: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        bad = [h for h in self.hull_types if h not in HULL_TYPES]
        if bad or not self.hull_types:
            raise ValueError(f"hull_types {list(self.hull_types)}: choose from {list(HULL_TYPES)}")
        for name in ("blur1_kernel", "blur2_kernel"):
            lo, hi = getattr(self, name)
            if lo % 2 == 0 or hi % 2 == 0 or lo > hi or lo < 1:
                raise ValueError(f"{name} must be odd bounds lo <= hi, got {(lo, hi)}")
        if not self.ratios or min(self.ratios) <= 0 or max(self.ratios) > 1:
            raise ValueError(f"ratios must lie in (0, 1], got {self.ratios}")
        if self.n_neighbours < 1:
            raise ValueError("n_neighbours must be at least 1")

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> BlendConfig:
        """Build from a (Hydra) mapping of overrides; unknown keys are an error naming them."""
        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown blend config keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in cfg.items()})

    def as_dict(self) -> dict:
        """Plain JSON-able parameters."""
        return json.loads(json.dumps(asdict(self)))

    def key(self) -> str:
        """Short hash of every parameter and ``BLEND_VERSION`` (printed beside throughput figures)."""
        text = json.dumps({"params": self.as_dict(), "version": BLEND_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]
