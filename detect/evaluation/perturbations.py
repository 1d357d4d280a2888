"""Test-time perturbations chosen by config, e.g. ``{name: jpeg, quality: 50}``.

A perturbation is ``fn(image, sample_key) -> image`` on HWC uint8 RGB arrays. Random ones draw their
parameters from a generator seeded by ``(config seed, sample_key)``, so every method and every loader
order sees the same perturbed test set (``sample_key``: the sample's row in the test table).

Register more kinds with::

    @register_perturbation("noise")
    def _noise(std: float, seed: int = 0) -> Perturbation: ...

the factory takes the config's parameters (everything but ``name``) as keyword arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

Perturbation = Callable[[np.ndarray, int], np.ndarray]
PerturbationFactory = Callable[..., Perturbation]

_REGISTRY: dict[str, PerturbationFactory] = {}
NONE_NAMES = ("none", "identity")


def register_perturbation(name: str) -> Callable[[PerturbationFactory], PerturbationFactory]:
    """Decorator: register ``factory(**params) -> Perturbation`` under ``name``."""

    def deco(factory: PerturbationFactory) -> PerturbationFactory:
        if name in _REGISTRY or name in NONE_NAMES:
            raise ValueError(f"perturbation {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_perturbations() -> list[str]:
    """Names accepted by :func:`build_perturbation` (besides ``none``)."""
    return sorted(_REGISTRY)


def _to_dict(cfg: Mapping) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


def build_perturbation(cfg: Mapping | None) -> Perturbation | None:
    """Build the perturbation a config names; ``None`` or ``{name: none}`` gives ``None`` (no-op)."""
    if cfg is None:
        return None
    params = _to_dict(cfg)
    name = params.pop("name", None)
    if name is None:
        raise ValueError(
            f"perturbation config {params} has no 'name' (known: none, {available_perturbations()})"
        )
    if str(name).lower() in NONE_NAMES:
        if params:
            raise ValueError(f"perturbation 'none' takes no parameters, got {sorted(params)}")
        return None
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown perturbation {name!r}; known: none, {', '.join(available_perturbations())}"
        )
    factory = _REGISTRY[name]
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"perturbation {name!r} got unknown parameters {unknown}; it accepts {list(accepted)}"
        )
    return factory(**params)


def apply_perturbation(fn: Perturbation | None, image: np.ndarray, sample_key: int) -> np.ndarray:
    """``fn(image, sample_key)``, or ``image`` unchanged when ``fn`` is None."""
    return image if fn is None else fn(image, sample_key)


def sample_rng(seed: int, sample_key: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, sample_key)`` (both non-negative integers)."""
    if seed < 0 or sample_key < 0:
        raise ValueError(f"seed and sample_key must be non-negative, got {seed}, {sample_key}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(sample_key)]))


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"perturbations take HWC uint8 RGB images, got {image.dtype} {image.shape}")


def _check_quality(q: int, what: str) -> int:
    if not 1 <= int(q) <= 100 or int(q) != q:
        raise ValueError(f"{what} must be an integer JPEG quality in [1, 100], got {q}")
    return int(q)


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode ``image`` (HWC uint8 RGB) as JPEG at ``quality`` with OpenCV (which works in BGR)."""
    _check_image(image)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV failed to JPEG-encode an image of shape {image.shape}")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@register_perturbation("jpeg")
def _jpeg(quality: int) -> Perturbation:
    """JPEG compression at a fixed quality."""
    q = _check_quality(quality, "jpeg.quality")

    def fn(image: np.ndarray, sample_key: int) -> np.ndarray:
        return jpeg_compress(image, q)

    return fn


@dataclass(frozen=True)
class RandomJpeg:
    """JPEG at a quality drawn uniformly from the integers ``[low, high]``.

    ``per="sample"`` draws one quality per sample from ``(seed, sample_key)``; ``per="run"`` draws one
    quality for the whole set from ``seed`` (DPL's released test script: one quality per interval).
    """

    low: int
    high: int
    seed: int = 0
    per: str = "sample"

    def quality(self, sample_key: int) -> int:
        """The quality this sample gets."""
        rng = (
            np.random.default_rng(int(self.seed)) if self.per == "run" else sample_rng(self.seed, sample_key)
        )
        return int(rng.integers(self.low, self.high + 1))

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        return jpeg_compress(image, self.quality(sample_key))


@register_perturbation("random_jpeg")
def _random_jpeg(low: int, high: int, seed: int = 0, per: str = "sample") -> Perturbation:
    """See :class:`RandomJpeg`."""
    lo, hi = _check_quality(low, "random_jpeg.low"), _check_quality(high, "random_jpeg.high")
    if lo > hi:
        raise ValueError(f"random_jpeg needs low <= high, got low={lo}, high={hi}")
    if per not in ("sample", "run"):
        raise ValueError(f"random_jpeg.per must be 'sample' or 'run', got {per!r}")
    return RandomJpeg(lo, hi, int(seed), per)
