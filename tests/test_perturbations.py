"""Test-time perturbations: registry, determinism per (seed, sample key), quality actually applied."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detect.data.jpeg import jpeg_compress
from detect.evaluation.perturbations import (
    RandomJpeg,
    apply_perturbation,
    available_perturbations,
    build_perturbation,
    register_perturbation,
)


def _image(seed: int = 0) -> np.ndarray:
    """A smooth image with texture and a coloured gradient (so chroma errors show)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_none_is_identity() -> None:
    assert build_perturbation(None) is None
    assert build_perturbation({"name": "none"}) is None
    img = _image()
    assert apply_perturbation(None, img, 3) is img


def test_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match="random_jpeg"):
        build_perturbation({"name": "blurr"})
    with pytest.raises(ValueError, match="unknown parameters"):
        build_perturbation({"name": "jpeg", "quality": 50, "qualty": 3})
    with pytest.raises(ValueError, match="\\[1, 100\\]"):
        build_perturbation({"name": "jpeg", "quality": 0})
    with pytest.raises(ValueError, match="low <= high"):
        build_perturbation({"name": "random_jpeg", "low": 60, "high": 30})


def test_jpeg_quality_ordering_and_rgb() -> None:
    img = _image()
    psnrs = [_psnr(img, build_perturbation({"name": "jpeg", "quality": q})(img, 0)) for q in (10, 50, 95)]
    assert psnrs[0] < psnrs[1] < psnrs[2]
    sizes = [len(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1]) for q in (10, 50, 95)]
    assert sizes[0] < sizes[1] < sizes[2]
    out = jpeg_compress(img, 95)
    assert out.shape == img.shape and out.dtype == np.uint8
    # channel order kept: each channel's mean stays close to the input's (a swap would move R and B)
    assert np.allclose(out.reshape(-1, 3).mean(0), img.reshape(-1, 3).mean(0), atol=2)


def test_jpeg_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        jpeg_compress(np.zeros((8, 8, 3), np.float32), 50)


def test_random_jpeg_deterministic_across_calls_and_orders() -> None:
    cfg = {"name": "random_jpeg", "low": 30, "high": 99, "seed": 0}
    a, b = build_perturbation(cfg), build_perturbation(dict(cfg))
    keys = list(range(40))
    qa = [a.quality(k) for k in keys]
    qb = [b.quality(k) for k in reversed(keys)][::-1]
    assert qa == qb
    assert all(30 <= q <= 99 for q in qa) and len(set(qa)) > 10
    img = _image()
    assert np.array_equal(a(img, 7), b(img, 7))
    assert np.array_equal(a(img, 7), jpeg_compress(img, a.quality(7)))
    other = build_perturbation({**cfg, "seed": 1})
    assert [other.quality(k) for k in keys] != qa


def test_random_jpeg_per_run() -> None:
    p = build_perturbation({"name": "random_jpeg", "low": 8, "high": 12, "seed": 3, "per": "run"})
    assert isinstance(p, RandomJpeg)
    assert len({p.quality(k) for k in range(20)}) == 1


def test_registry_is_open() -> None:
    name = "test_invert"
    if name not in available_perturbations():

        @register_perturbation(name)
        def _invert() -> object:
            return lambda img, key: 255 - img

    fn = build_perturbation({"name": name})
    assert np.array_equal(fn(np.zeros((2, 2, 3), np.uint8), 0), np.full((2, 2, 3), 255, np.uint8))
    with pytest.raises(ValueError, match="already registered"):
        register_perturbation("jpeg")(lambda quality: None)


def test_omegaconf_config() -> None:
    from omegaconf import OmegaConf

    fn = build_perturbation(OmegaConf.create({"name": "jpeg", "quality": 50}))
    img = _image()
    assert np.array_equal(fn(img, 0), jpeg_compress(img, 50))
