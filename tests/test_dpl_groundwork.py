"""DPL groundwork: DeeperForensics-style robustness perturbations (``dpl_*``) and indicator binning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.evaluation.perturbations import (
    DPL_BLOCK_COUNTS,
    DPL_CONTRAST_FACTORS,
    DPL_NOISE_VARIANCES,
    DPL_SATURATION_FACTORS,
    DplBlockwise,
    DplContrast,
    DplNoise,
    DplSaturation,
    ProdetBlockwise,
    ProdetNoise,
    available_perturbations,
    build_perturbation,
    luma,
)
from detect.quality.binning import (
    DESCENDING,
    FII_EDGES,
    VQI_EDGES,
    QuantileBinner,
    bin_by_intervals,
)

NAMES = ("dpl_saturation", "dpl_contrast", "dpl_blockwise", "dpl_noise")
LEVELS = (1, 2, 3, 4, 5)


def _image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _mac(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# ------------------------------------------------------------------ registry


def test_registry_builds_by_name_with_published_levels() -> None:
    names = available_perturbations()
    for name in NAMES:
        assert name in names
    for lv in LEVELS:
        assert build_perturbation({"name": "dpl_saturation", "level": lv}) == DplSaturation(
            DPL_SATURATION_FACTORS[lv - 1]
        )
        assert build_perturbation({"name": "dpl_contrast", "level": lv}) == DplContrast(
            DPL_CONTRAST_FACTORS[lv - 1], "zero"
        )
        assert build_perturbation({"name": "dpl_blockwise", "level": lv, "seed": 3}) == DplBlockwise(
            DPL_BLOCK_COUNTS[lv - 1], 3
        )
        assert build_perturbation({"name": "dpl_noise", "level": lv}) == DplNoise(
            DPL_NOISE_VARIANCES[lv - 1], 0
        )
    assert DPL_SATURATION_FACTORS == (0.4, 0.3, 0.2, 0.1, 0.0)
    assert DPL_CONTRAST_FACTORS == (0.85, 0.725, 0.6, 0.475, 0.35)
    assert DPL_BLOCK_COUNTS == (16, 32, 48, 64, 80)
    assert DPL_NOISE_VARIANCES == (0.001, 0.002, 0.005, 0.01, 0.05)
    # ProDet's perturbations are untouched.
    assert build_perturbation({"name": "prodet_noise"}) == ProdetNoise(10.0, 50.0, 0)
    assert build_perturbation({"name": "prodet_blockwise"}) == ProdetBlockwise(0.1, 4, 0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("level", [0, 6, -1, 2.5, "3", True, None])
def test_bad_levels_raise_naming_the_value(name: str, level: object) -> None:
    with pytest.raises(ValueError, match=rf"{name}\.level.*{level!r}"):
        build_perturbation({"name": name, "level": level})


def test_bad_parameters_raise() -> None:
    with pytest.raises(TypeError, match="level"):
        build_perturbation({"name": "dpl_noise"})  # level is required (as jpeg's quality)
    with pytest.raises(ValueError, match="unknown parameters"):
        build_perturbation({"name": "dpl_noise", "level": 1, "variance": 0.1})
    with pytest.raises(ValueError, match="seed"):
        build_perturbation({"name": "dpl_blockwise", "level": 1, "seed": -1})
    with pytest.raises(ValueError, match="center"):
        build_perturbation({"name": "dpl_contrast", "level": 1, "center": "median"})
    with pytest.raises(ValueError, match="8x8"):
        DplBlockwise(16)(np.zeros((7, 20, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="uint8"):
        DplNoise(0.01)(np.zeros((8, 8, 3), np.float32), 0)


def test_omegaconf_config() -> None:
    from omegaconf import OmegaConf

    fn = build_perturbation(OmegaConf.create({"name": "dpl_blockwise", "level": 2, "seed": 1}))
    assert fn == DplBlockwise(32, 1)


# ------------------------------------------------------------------ hand computations


@pytest.mark.parametrize("level", LEVELS)
def test_saturation_hand_computation(level: int) -> None:
    img = np.array([[[200, 40, 10], [0, 255, 128]], [[10, 20, 30], [90, 90, 90]]], np.uint8)
    f = DPL_SATURATION_FACTORS[level - 1]
    out = build_perturbation({"name": "dpl_saturation", "level": level})(img, 0)
    x = img.astype(np.float64)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    want = np.clip(np.rint(y[..., None] + f * (x - y[..., None])), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(out[1, 1], [90, 90, 90])  # grey stays grey
    if f == 0.0:  # level 5: R = G = B = luma
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        np.testing.assert_array_equal(out[..., 0], np.rint(y).astype(np.uint8))
    # luma is kept (up to rounding)
    assert np.abs(luma(out) - y).max() <= 0.5 + 1e-9


def test_saturation_matches_ycbcr_chroma_scaling() -> None:
    """Scaling OpenCV's Cr/Cb about their zero point by f, then back, is the same up to rounding."""
    import cv2

    img = _image(16, 16, 3)
    for f in DPL_SATURATION_FACTORS:
        ycc = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2YCrCb)
        ycc[..., 1:] = 0.5 + (ycc[..., 1:] - 0.5) * f
        ref = np.clip(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB) * 255, 0, 255)
        out = DplSaturation(f)(img, 0).astype(np.float64)
        assert np.abs(out - ref).max() <= 1.0


@pytest.mark.parametrize("level", LEVELS)
def test_contrast_hand_computation(level: int) -> None:
    img = np.array([[[200, 40, 10], [0, 255, 128]], [[10, 20, 30], [90, 91, 92]]], np.uint8)
    f = DPL_CONTRAST_FACTORS[level - 1]
    x = img.astype(np.float64)
    out = build_perturbation({"name": "dpl_contrast", "level": level})(img, 0)
    np.testing.assert_array_equal(out, np.rint(x * f).astype(np.uint8))  # released code: v * f
    out_m = build_perturbation({"name": "dpl_contrast", "level": level, "center": "mean"})(img, 0)
    m = x.mean()
    np.testing.assert_array_equal(out_m, np.clip(np.rint(m + f * (x - m)), 0, 255).astype(np.uint8))
    # the deviation from the mean is scaled by f (up to rounding)
    dev = out_m.astype(np.float64) - m
    assert np.abs(dev - f * (x - m)).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("level", LEVELS)
def test_blockwise_greys_exactly_the_drawn_blocks(level: int) -> None:
    img = np.zeros((64, 48, 3), np.uint8)
    fn = build_perturbation({"name": "dpl_blockwise", "level": level, "seed": 5})
    out = fn(img, 11)
    blocks = fn.blocks(11, 64, 48)
    assert len(blocks) == DPL_BLOCK_COUNTS[level - 1]
    want = np.zeros_like(img)
    for r, c in blocks:
        assert 0 <= r <= 64 - 8 and 0 <= c <= 48 - 8
        want[r : r + 8, c : c + 8] = 128
    np.testing.assert_array_equal(out, want)
    assert not img.any()  # input untouched


def test_blockwise_count_scales_with_size_and_single_block() -> None:
    fn = DplBlockwise(16, 0)
    assert fn.n_blocks(224, 224) == 16  # under 256 px: the level's count (released code: 0)
    assert fn.n_blocks(256, 300) == 16
    assert fn.n_blocks(1080, 1920) == 64  # released code: min(H, W) // 256 * count
    # one block on a flat image: exactly 64 pixels per channel become 128
    one = DplBlockwise(1, 2)
    img = np.full((40, 40, 3), 7, np.uint8)
    out = one(img, 3)
    assert (out == 128).all(axis=-1).sum() == 64
    ((r, c),) = one.blocks(3, 40, 40)
    assert (out[r : r + 8, c : c + 8] == 128).all()
    # an 8x8 image can only hold the block at (0, 0)
    assert DplBlockwise(3)(np.zeros((8, 8, 3), np.uint8), 0).min() == 128


@pytest.mark.parametrize("level", [1, 2, 3])
def test_noise_variance_on_flat_image(level: int) -> None:
    var = DPL_NOISE_VARIANCES[level - 1]
    img = np.full((400, 400, 3), 128, np.uint8)
    fn = build_perturbation({"name": "dpl_noise", "level": level})
    out = fn(img, 0).astype(np.float64)
    x = out - 128.0
    dy = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    dcb, dcr = (x[..., 2] - dy) / 1.772, (x[..., 0] - dy) / 1.402
    # variance on DeeperForensics' studio-range [0, 1] YCbCr scale
    tol = 0.06 if level < 3 else 0.1  # sampling error ~1%, rounding, and some clipping at level 3
    assert np.var(dy * 219 / 255 / 255) == pytest.approx(var, rel=tol)
    assert np.var(dcb * 224 / 255 / 255) == pytest.approx(var, rel=tol)
    assert np.var(dcr * 224 / 255 / 255) == pytest.approx(var, rel=tol)
    assert abs(x.mean()) < 0.5
    assert fn.luma_std == pytest.approx(np.sqrt(var) * 255 * 255 / 219)


def test_noise_hand_computation_tiny() -> None:
    img = np.array([[[100, 150, 200], [0, 255, 30]]], np.uint8)
    fn = DplNoise(0.005, seed=4)
    n = np.random.default_rng(np.random.SeedSequence([4, 9])).standard_normal(img.shape)
    sy, sc = np.sqrt(0.005) * 255 * 255 / 219, np.sqrt(0.005) * 255 * 255 / 224
    ny, ncb, ncr = n[..., 0] * sy, n[..., 1] * sc, n[..., 2] * sc
    dr = ny + 1.402 * ncr
    dg = ny - 0.114 * 1.772 / 0.587 * ncb - 0.299 * 1.402 / 0.587 * ncr
    db = ny + 1.772 * ncb
    want = np.clip(np.rint(img + np.stack([dr, dg, db], -1)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(fn(img, 9), want)


# ------------------------------------------------------------------ severity and determinism


@pytest.mark.parametrize("name", NAMES)
def test_severity_is_monotone(name: str) -> None:
    img = _image(128, 128, 1)
    changes = [_mac(build_perturbation({"name": name, "level": lv})(img, 7), img) for lv in LEVELS]
    assert changes[0] > 0
    assert all(a < b for a, b in zip(changes, changes[1:], strict=False)), changes


@pytest.mark.parametrize("name", ["dpl_blockwise", "dpl_noise"])
def test_random_ones_deterministic_per_key(name: str) -> None:
    img = _image(64, 64, 2)
    fn = build_perturbation({"name": name, "level": 3, "seed": 1})
    again = build_perturbation({"name": name, "level": 3, "seed": 1})
    np.testing.assert_array_equal(fn(img, 5), again(img, 5))
    np.testing.assert_array_equal(fn(img, 5), fn(img, 5))
    assert not np.array_equal(fn(img, 5), fn(img, 6))
    other_seed = build_perturbation({"name": name, "level": 3, "seed": 2})
    assert not np.array_equal(fn(img, 5), other_seed(img, 5))


@pytest.mark.parametrize("name", ["dpl_saturation", "dpl_contrast"])
def test_deterministic_ones_ignore_key(name: str) -> None:
    img = _image(16, 16, 4)
    fn = build_perturbation({"name": name, "level": 2, "seed": 9})
    np.testing.assert_array_equal(fn(img, 0), fn(img, 123))


# ------------------------------------------------------------------ binning by intervals


def test_intervals_on_exact_edges() -> None:
    assert bin_by_intervals(55, "vqi") == 1
    assert bin_by_intervals(54.99, "vqi") == 2
    assert bin_by_intervals(90, "fii") == 5
    assert bin_by_intervals(89.99, "fii") == 4
    vqi = {0: 5, 39.99: 5, 40: 4, 44.99: 4, 45: 3, 49.99: 3, 50: 2, 55: 1, 100: 1}
    fii = {0: 1, 49.99: 1, 50: 2, 64.99: 2, 65: 3, 79.99: 3, 80: 4, 90: 5, 100: 5}
    for kind, table in (("vqi", vqi), ("fii", fii)):
        got = bin_by_intervals(list(table), kind)
        np.testing.assert_array_equal(got, list(table.values()))
        assert got.dtype == np.int64
    assert VQI_EDGES == (40.0, 45.0, 50.0, 55.0) and FII_EDGES == (50.0, 65.0, 80.0, 90.0)
    assert bin_by_intervals(np.array([[0.0, 100.0]]), "fii").shape == (1, 2)


def test_intervals_reject_bad_input() -> None:
    for bad in (-0.01, 100.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="within"):
            bin_by_intervals([50, bad], "vqi")
    with pytest.raises(ValueError, match="100.5"):
        bin_by_intervals(100.5, "fii")
    with pytest.raises(ValueError, match="kind"):
        bin_by_intervals(50, "iqa")  # type: ignore[arg-type]


# ------------------------------------------------------------------ quantile binning


def test_quantile_equal_counts_large_sample() -> None:
    rng = np.random.default_rng(0)
    for n in (10_000, 10_003, 997):
        train = rng.uniform(0, 100, n)
        assert len(np.unique(train)) == n
        for descending in (False, True):
            steps = QuantileBinner().fit(train, 5, descending=descending)(train)
            counts = np.bincount(steps, minlength=6)[1:]
            assert counts.sum() == n
            assert np.all(np.abs(counts - n / 5) <= 1), counts


def test_quantile_direction() -> None:
    train = np.arange(0, 100, dtype=np.float64)  # 100 distinct scores, 20 per bin
    asc = QuantileBinner().fit(train, descending=DESCENDING["fii"])
    desc = QuantileBinner().fit(train, descending=DESCENDING["vqi"])
    np.testing.assert_array_equal(asc.edges, [20, 40, 60, 80])
    # FII: more genuine-looking (higher score) -> more steps
    np.testing.assert_array_equal(asc([0, 19.9, 20, 79.9, 80, 100]), [1, 1, 2, 4, 5, 5])
    # VQI: lower quality (lower score) -> more steps
    np.testing.assert_array_equal(desc([0, 19.9, 20, 79.9, 80, 100]), [5, 5, 4, 2, 1, 1])
    s = np.linspace(0, 100, 101)
    assert np.all(np.diff(asc(s)) >= 0) and np.all(np.diff(desc(s)) <= 0)


def test_quantile_ties_deterministic() -> None:
    train = np.array([10.0] * 6 + [20.0] * 4)  # edges: s[2]=10, s[4]=10, s[6]=20, s[8]=20
    b = QuantileBinner().fit(train, descending=False)
    np.testing.assert_array_equal(b.edges, [10, 10, 20, 20])
    # a score on an edge goes to the bin of the higher scores; equal edges leave bins empty
    np.testing.assert_array_equal(b([9.99, 10, 19.99, 20, 50]), [1, 3, 3, 5, 5])
    again = QuantileBinner().fit(train[::-1].copy(), descending=False)
    np.testing.assert_array_equal(again.edges, b.edges)


def test_quantile_save_load_round_trip() -> None:
    rng = np.random.default_rng(1)
    train = rng.uniform(0, 100, 503)
    b = QuantileBinner().fit(train, 5, descending=True)
    d = json.loads(json.dumps(b.to_dict()))
    assert d["n_bins"] == 5 and d["descending"] is True and len(d["edges"]) == 4
    loaded = QuantileBinner.from_dict(d)
    np.testing.assert_array_equal(loaded.edges, b.edges)
    test = rng.uniform(0, 100, 1000)
    np.testing.assert_array_equal(loaded(test), b(test))
    assert loaded.to_dict() == b.to_dict()
    b3 = QuantileBinner().fit(train, 3, descending=False)
    assert set(np.unique(b3(train))) == {1, 2, 3}


def test_quantile_errors() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        QuantileBinner()([50])
    with pytest.raises(ValueError, match="within"):
        QuantileBinner().fit([10, 20, 30, 40, 101], descending=False)
    with pytest.raises(ValueError, match="at least"):
        QuantileBinner().fit([10, 20, 30], 5, descending=False)
    with pytest.raises(ValueError, match="n_bins"):
        QuantileBinner().fit([10, 20, 30], 0, descending=False)
    b = QuantileBinner().fit(np.arange(10.0), descending=False)
    with pytest.raises(ValueError, match="within"):
        b([-1])
    with pytest.raises(ValueError, match="non-decreasing"):
        QuantileBinner.from_dict({"n_bins": 3, "edges": [50, 40], "descending": False})
    with pytest.raises(ValueError, match="does not match"):
        QuantileBinner.from_dict({"n_bins": 5, "edges": [40, 50], "descending": False})
    with pytest.raises(ValueError, match="lacks"):
        QuantileBinner.from_dict({"edges": [40, 50]})
    with pytest.raises(TypeError):
        QuantileBinner().fit([1, 2, 3, 4, 5], 5)  # type: ignore[call-arg]  # direction must be chosen
