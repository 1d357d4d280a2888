"""ProDet's robustness perturbations (Sec. 4.4, Table 4) and its mPD feature-regularity metric (App. 7.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detect.evaluation.perturbations import (
    DRAW_STRIDE,
    ProdetBlockwise,
    ProdetNoise,
    ProdetShift,
    available_perturbations,
    build_perturbation,
    draw_keys,
)
from detect.evaluation.regularity import feature_std, mean_perturbed_distance, perturbed_distance


def _tiny(h: int = 8, w: int = 8) -> np.ndarray:
    """An HxWx3 image whose every value is distinct-ish and non-zero (so a zeroed pixel shows)."""
    vals = np.arange(h * w * 3).reshape(h, w, 3) % 250 + 1
    return vals.astype(np.uint8)


# ------------------------------------------------------------------ registry


def test_registry_names_and_defaults() -> None:
    names = available_perturbations()
    for name in ("prodet_blockwise", "prodet_noise", "prodet_shift"):
        assert name in names
    assert build_perturbation({"name": "prodet_noise"}) == ProdetNoise(10.0, 50.0, 0)
    assert build_perturbation({"name": "prodet_blockwise"}) == ProdetBlockwise(0.1, 4, 0)
    assert build_perturbation({"name": "prodet_shift"}) == ProdetShift(50, 0, None)
    assert build_perturbation({"name": "prodet_shift", "shift": [2, -1]}).fixed == (2, -1)


def test_registry_rejects_unknown_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match="unknown parameters"):
        build_perturbation({"name": "prodet_shift", "max_shfit": 3})
    with pytest.raises(ValueError, match="unknown parameters"):
        build_perturbation({"name": "prodet_noise", "std": 3})
    with pytest.raises(ValueError, match="unknown parameters"):
        build_perturbation({"name": "prodet_blockwise", "grids": 4})
    bad = [
        {"name": "prodet_blockwise", "ratio": 0},
        {"name": "prodet_blockwise", "ratio": 1.5},
        {"name": "prodet_blockwise", "grid": 0},
        {"name": "prodet_blockwise", "grid": 2.5},
        {"name": "prodet_noise", "variance": [50, 10]},
        {"name": "prodet_noise", "variance": [1, 2, 3]},
        {"name": "prodet_noise", "variance": -1},
        {"name": "prodet_noise", "seed": -1},
        {"name": "prodet_shift", "max_shift": -1},
        {"name": "prodet_shift", "shift": [1]},
        {"name": "prodet_shift", "shift": [1.5, 0]},
    ]
    for cfg in bad:
        with pytest.raises(ValueError):
            build_perturbation(cfg)


def test_omegaconf_list_parameters() -> None:
    from omegaconf import OmegaConf

    p = build_perturbation(OmegaConf.create({"name": "prodet_noise", "variance": [20, 30], "seed": 2}))
    assert p == ProdetNoise(20.0, 30.0, 2)
    s = build_perturbation(OmegaConf.create({"name": "prodet_shift", "shift": [3, 4]}))
    assert s.offset(0) == (3, 4)


def test_rejects_non_uint8_images() -> None:
    for name in ("prodet_blockwise", "prodet_noise", "prodet_shift"):
        with pytest.raises(ValueError, match="uint8"):
            build_perturbation({"name": name})(np.zeros((8, 8, 3), np.float32), 0)


# ------------------------------------------------------------------ block-wise masking


def test_blockwise_zeroes_exactly_the_drawn_2x2_blocks() -> None:
    img = _tiny()
    p = build_perturbation({"name": "prodet_blockwise"})  # ratio 0.1, 4x4 grid -> round(1.6) = 2 blocks
    assert p.n_blocks == 2
    for key in range(20):
        out = p(img, key)
        blocks = p.blocks(key)
        assert len(set(blocks)) == 2
        zeroed = set()
        for r in range(4):
            for c in range(4):
                blk, orig = (
                    out[2 * r : 2 * r + 2, 2 * c : 2 * c + 2],
                    img[2 * r : 2 * r + 2, 2 * c : 2 * c + 2],
                )
                if (r, c) in blocks:
                    assert not blk.any()
                    zeroed.add((r, c))
                else:
                    assert np.array_equal(blk, orig)
        assert zeroed == set(blocks)
        assert (out == 0).all(axis=2).sum() == 2 * 4  # two 2x2 blocks, every channel
    assert np.array_equal(img, _tiny())  # input untouched


def test_blockwise_counts_and_uneven_sizes() -> None:
    assert ProdetBlockwise(0.5, 4).n_blocks == 8
    assert ProdetBlockwise(0.01, 4).n_blocks == 1  # at least one block
    assert ProdetBlockwise(1.0, 4).n_blocks == 16
    assert ProdetBlockwise(0.125, 4).n_blocks == 2
    assert ProdetBlockwise(0.1, 5).n_blocks == 3  # 2.5 rounds half up
    # 10x9 image, 4x4 grid: row edges floor(j*10/4) = 0,2,5,7,10; column edges floor(j*9/4) = 0,2,4,6,9
    img = _tiny(10, 9)
    full = ProdetBlockwise(1.0, 4)
    assert not full(img, 0).any()
    p = ProdetBlockwise(0.1, 4, seed=5)
    ys, xs = [0, 2, 5, 7, 10], [0, 2, 4, 6, 9]
    for key in range(10):
        expected = img.copy()
        for r, c in p.blocks(key):
            expected[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = 0
        assert np.array_equal(p(img, key), expected)


def test_blockwise_deterministic_and_varies_with_key() -> None:
    img = _tiny()
    a = build_perturbation({"name": "prodet_blockwise", "seed": 1})
    b = build_perturbation({"name": "prodet_blockwise", "seed": 1})
    assert np.array_equal(a(img, 3), b(img, 3))
    choices = {tuple(sorted(a.blocks(k))) for k in range(50)}
    assert len(choices) > 20
    assert not all(np.array_equal(a(img, 0), a(img, k)) for k in range(1, 5))
    other = build_perturbation({"name": "prodet_blockwise", "seed": 2})
    assert [other.blocks(k) for k in range(10)] != [a.blocks(k) for k in range(10)]


# ------------------------------------------------------------------ Gaussian noise


def test_noise_variance_in_drawn_range() -> None:
    grey = np.full((256, 256, 3), 128, np.uint8)
    p = build_perturbation({"name": "prodet_noise"})
    variances = [p.variance(k) for k in range(40)]
    assert all(10 <= v <= 50 for v in variances) and max(variances) - min(variances) > 20
    for key in (0, 1, 7):
        out = p(grey, key)
        assert out.dtype == np.uint8 and out.shape == grey.shape
        diff = out.astype(np.float64) - 128
        v = p.variance(key)
        # rounding to integers adds ~1/12 of variance; 196608 draws -> relative s.e. of the variance ~0.3 %
        assert abs(diff.var() - (v + 1 / 12)) < 0.03 * v
        assert abs(diff.mean()) < 0.05
        assert 10 <= diff.var() <= 51


def test_noise_fixed_variance_and_clipping() -> None:
    p = build_perturbation({"name": "prodet_noise", "variance": 25})
    assert {p.variance(k) for k in range(10)} == {25.0}
    grey = np.full((128, 128, 3), 100, np.uint8)
    assert abs((p(grey, 4).astype(np.float64) - 100).var() - 25 - 1 / 12) < 1.0
    white = np.full((64, 64, 3), 255, np.uint8)
    out = build_perturbation({"name": "prodet_noise", "variance": 400})(white, 0)
    assert out.dtype == np.uint8 and out.max() == 255 and out.mean() < 255 and (out < 250).any()
    black = np.zeros((64, 64, 3), np.uint8)
    out = build_perturbation({"name": "prodet_noise", "variance": 400})(black, 0)
    assert out.min() == 0 and out.mean() > 0  # clipped, not wrapped around


def test_noise_deterministic_and_varies_with_key() -> None:
    img = _tiny(32, 32)
    a, b = build_perturbation({"name": "prodet_noise"}), build_perturbation({"name": "prodet_noise"})
    assert np.array_equal(a(img, 11), b(img, 11))
    assert not np.array_equal(a(img, 11), a(img, 12))
    c = build_perturbation({"name": "prodet_noise", "seed": 1})
    assert not np.array_equal(a(img, 11), c(img, 11))


# ------------------------------------------------------------------ shift


def _shift_by_hand(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = img[y - dy, x - dx]
    return out


def test_shift_fixed_exact_positions() -> None:
    img = _tiny()
    out = build_perturbation({"name": "prodet_shift", "shift": [2, -1]})(img, 0)
    # content moves 2 px right and 1 px up: out[y, x] = img[y + 1, x - 2]
    assert np.array_equal(out[0, 2], img[1, 0])
    assert np.array_equal(out[6, 7], img[7, 5])
    assert np.array_equal(out[:7, 2:], img[1:, :6])
    assert not out[:, :2].any()  # the two left columns shifted in
    assert not out[7].any()  # the bottom row shifted in
    assert np.array_equal(out, _shift_by_hand(img, 2, -1))
    assert np.array_equal(build_perturbation({"name": "prodet_shift", "shift": [0, 0]})(img, 3), img)
    assert not build_perturbation({"name": "prodet_shift", "shift": [8, 0]})(img, 3).any()


def test_shift_moves_by_drawn_amount() -> None:
    img = _tiny()
    p = build_perturbation({"name": "prodet_shift", "max_shift": 3})
    offsets = []
    for key in range(60):
        dx, dy = p.offset(key)
        offsets.append((dx, dy))
        assert -3 <= dx <= 3 and -3 <= dy <= 3
        assert np.array_equal(p(img, key), _shift_by_hand(img, dx, dy))
    xs, ys = {o[0] for o in offsets}, {o[1] for o in offsets}
    assert xs == set(range(-3, 4)) and ys == set(range(-3, 4))  # every integer in range drawn (60 draws)
    default = build_perturbation({"name": "prodet_shift"})
    big = [default.offset(k) for k in range(200)]
    assert all(-50 <= v <= 50 for o in big for v in o)
    assert min(v for o in big for v in o) < -40 and max(v for o in big for v in o) > 40


def test_shift_deterministic_and_varies_with_key() -> None:
    img = _tiny(32, 32)
    a, b = build_perturbation({"name": "prodet_shift"}), build_perturbation({"name": "prodet_shift"})
    assert a.offset(5) == b.offset(5) and np.array_equal(a(img, 5), b(img, 5))
    assert len({a.offset(k) for k in range(20)}) > 15
    c = build_perturbation({"name": "prodet_shift", "seed": 9})
    assert [c.offset(k) for k in range(10)] != [a.offset(k) for k in range(10)]


# ------------------------------------------------------------------ draw_keys


def test_draw_keys() -> None:
    assert draw_keys(0, 3) == [0, 1, 2]
    assert draw_keys(2, 3) == [2 * DRAW_STRIDE, 2 * DRAW_STRIDE + 1, 2 * DRAW_STRIDE + 2]
    assert draw_keys(7, 10)[:4] == draw_keys(7, 4)  # prefix stable in n
    keys = [k for s in range(50) for k in draw_keys(s, 10)]
    assert len(set(keys)) == len(keys)  # distinct within and across samples
    assert draw_keys(3, 10) == draw_keys(3, 10)
    for bad in [(-1, 3), (0, 0), (0, DRAW_STRIDE + 1), (1.5, 2)]:
        with pytest.raises(ValueError):
            draw_keys(*bad)
    img = _tiny(128, 128)  # larger than the default shift range, so a shift never blanks it
    for name in ("prodet_blockwise", "prodet_noise", "prodet_shift"):
        p = build_perturbation({"name": name})
        versions = [p(img, k) for k in draw_keys(4, 10)]
        distinct = {v.tobytes() for v in versions}
        assert len(distinct) >= 8, name  # ten draws; blockwise/shift could repeat by chance, rarely


# ------------------------------------------------------------------ mPD


def _toy() -> tuple[torch.Tensor, torch.Tensor]:
    # N=2 samples, D=2, n=2 perturbed versions.
    # clean: F^1 = (0, 0), F^2 = (2, 0). Population std per dim: dim0 {0, 2} -> 1, dim1 {0, 0} -> 0;
    # F_std = (1 + 0) / 2 = 0.5.
    # sample 1: perturbed (3, 4), (0, 1) -> distances 5, 1 -> mean 3 -> PD 3 / 0.5 = 6
    # sample 2: perturbed (2, 0), (8, 8) -> distances 0, ||(6, 8)|| = 10 -> mean 5 -> PD 5 / 0.5 = 10
    # mPD = (6 + 10) / 2 = 8 = (5 + 1 + 0 + 10) / (2 * 2 * 0.5)
    clean = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    perturbed = torch.tensor([[[3.0, 4.0], [0.0, 1.0]], [[2.0, 0.0], [8.0, 8.0]]])
    return clean, perturbed


def test_mpd_hand_computation() -> None:
    clean, perturbed = _toy()
    assert feature_std(clean) == pytest.approx(0.5)
    pd = perturbed_distance(clean, perturbed)
    assert pd.shape == (2,) and pd.dtype == torch.float64
    assert torch.allclose(pd, torch.tensor([6.0, 10.0], dtype=torch.float64))
    assert mean_perturbed_distance(clean, perturbed) == pytest.approx(8.0)
    # population (not sample) std: the unbiased std of dim0 would be sqrt(2), giving F_std ~0.707
    assert mean_perturbed_distance(clean, perturbed) != pytest.approx(4.0 / (math.sqrt(2) / 2))


def test_mpd_explicit_std() -> None:
    clean, perturbed = _toy()
    # F_std = 2: PD = (3/2, 5/2), mPD = 2
    assert torch.allclose(
        perturbed_distance(clean, perturbed, 2.0), torch.tensor([1.5, 2.5], dtype=torch.float64)
    )
    assert mean_perturbed_distance(clean, perturbed, 2.0) == pytest.approx(2.0)
    assert mean_perturbed_distance(clean, perturbed, torch.tensor(2.0)) == pytest.approx(2.0)
    # a [D] tensor of per-dimension stds is averaged: (1 + 3) / 2 = 2
    assert mean_perturbed_distance(clean, perturbed, torch.tensor([1.0, 3.0])) == pytest.approx(2.0)
    # a distribution's F_std from other (e.g. all) features: std of dim0 over {0, 2, 4, 6} = sqrt(5), dim1 0
    dist = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [6.0, 0.0]])
    assert feature_std(dist) == pytest.approx(math.sqrt(5) / 2)
    assert mean_perturbed_distance(clean, perturbed, feature_std(dist)) == pytest.approx(
        4.0 / (math.sqrt(5) / 2)
    )
    # numpy inputs and float32 work the same
    assert mean_perturbed_distance(clean.numpy(), perturbed.numpy()) == pytest.approx(8.0)
    assert mean_perturbed_distance(clean.half(), perturbed.half()) == pytest.approx(8.0)


def test_mpd_zero_for_identical_and_scale_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(16, 5, generator=gen)
    same = clean[:, None, :].expand(16, 3, 5)
    assert torch.equal(perturbed_distance(clean, same), torch.zeros(16, dtype=torch.float64))
    perturbed = clean[:, None, :] + 0.1 * torch.randn(16, 3, 5, generator=gen)
    # standardising by F_std makes mPD invariant to a global feature scale
    assert mean_perturbed_distance(10 * clean, 10 * perturbed) == pytest.approx(
        mean_perturbed_distance(clean, perturbed)
    )


def test_mpd_errors() -> None:
    clean, perturbed = _toy()
    shape_errors = [
        (clean, perturbed[:, :, :1]),  # D mismatch
        (clean, perturbed[:1]),  # N mismatch
        (clean, perturbed[:, :0]),  # n = 0
        (clean, perturbed[:, 0]),  # 2-D perturbed
        (clean[0], perturbed),  # 1-D clean
        (clean[:0], perturbed[:0]),  # empty
    ]
    for c, p in shape_errors:
        with pytest.raises(ValueError, match="clean|perturbed"):
            perturbed_distance(c, p)
    with pytest.raises(ValueError, match="F_std"):  # all clean features identical
        perturbed_distance(torch.ones(3, 2), torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="F_std"):  # a single sample has no spread
        mean_perturbed_distance(clean[:1], perturbed[:1])
    for bad in (0.0, -1.0, float("nan"), float("inf"), torch.tensor(0.0)):
        with pytest.raises(ValueError, match="F_std"):
            perturbed_distance(clean, perturbed, bad)
    with pytest.raises(ValueError, match="f_std"):
        perturbed_distance(clean, perturbed, torch.ones(3))
    with pytest.raises(ValueError, match="features"):
        feature_std(torch.ones(4))
