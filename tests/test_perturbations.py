"""Test-time perturbations: registry, determinism per (seed, sample key), quality actually applied."""

from __future__ import annotations

import zlib

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


def _dpl_draws(per: str, seed: int, stream: str, keys: list[int]) -> np.ndarray:
    """Qualities of DPL's three random-JPEG ranges (rows: images, columns: ranges)."""
    ranges = ((30, 99), (13, 29), (8, 12))
    fns = [
        build_perturbation(
            {"name": "random_jpeg", "low": lo, "high": hi, "seed": seed, "per": per, "stream": stream}
        )
        for lo, hi in ranges
    ]
    return np.array([[f.quality(k) for f in fns] for k in keys])


def test_random_jpeg_per_image_draws_are_independent_across_images_and_ranges() -> None:
    keys = [
        zlib.crc32(f"rgb/FaceForensics++/frames/{v:03d}/{f:03d}.png".encode())
        for v in range(25)
        for f in range(8)
    ]
    q = _dpl_draws("image", 0, "FF++", keys)
    assert len(keys) == 200 and len({tuple(r) for r in q}) > 150  # two images of a set differ
    assert len(set(q[:, 0])) > 40 and set(q[:, 2]) == set(range(8, 13))
    corr = np.corrcoef(q.T.astype(np.float64))
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.2  # no range is a function of another
    # keyed by (seed, set, range, path): the same key in another set or seed draws anew
    assert not np.array_equal(q, _dpl_draws("image", 0, "CDFv2", keys))
    assert not np.array_equal(q, _dpl_draws("image", 1, "FF++", keys))
    assert np.array_equal(q, _dpl_draws("image", 0, "FF++", keys))


def test_random_jpeg_per_set_one_quality_per_set_and_range_from_independent_streams() -> None:
    per_set = np.array([_dpl_draws("set", s, "FF++", [0, 1, 2]) for s in range(200)])
    assert (per_set == per_set[:, :1]).all()  # one quality for every image of a set
    q = per_set[:, 0, :].astype(np.float64)  # 200 seeds x 3 ranges
    corr = np.corrcoef(q.T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.2
    # the released-code reproduction ("run") shares one stream: its ranges move together
    run = np.array([_dpl_draws("run", s, "", [0])[0] for s in range(200)]).astype(np.float64)
    assert np.corrcoef(run.T)[0, 1] > 0.9


def test_random_jpeg_records_its_draws() -> None:
    per_set = build_perturbation(
        {"name": "random_jpeg", "low": 8, "high": 12, "seed": 2, "per": "set", "stream": "a"}
    )
    assert per_set.record([5, 6]) == {"jpeg_low": 8, "jpeg_high": 12, "jpeg_quality": per_set.quality(0)}
    per_image = build_perturbation(
        {"name": "random_jpeg", "low": 8, "high": 12, "per": "image", "stream": "a"}
    )
    rec = per_image.record(list(range(50)))
    assert rec["jpeg_quality_min"] == 8 and rec["jpeg_quality_max"] == 12
    assert rec["jpeg_quality_mean"] == pytest.approx(np.mean([per_image.quality(k) for k in range(50)]))
    with pytest.raises(ValueError, match="per must be one of"):
        build_perturbation({"name": "random_jpeg", "low": 8, "high": 12, "per": "video"})


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
