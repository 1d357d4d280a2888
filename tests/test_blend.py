"""SBI and CBI blendfakes (``detect.data.blend``): masks, geometry, source transforms, determinism, the
landmark index and its cache, colour transfer, and the two scripts. A small synthetic set is generated once
for the module; the rest runs on hand-made arrays."""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections import Counter
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from detect.data.blend import (
    HULL_TYPES,
    BlendConfig,
    CrossBlender,
    LandmarkIndex,
    SelfBlender,
    colour_transfer,
    cross_blend,
    index_cache,
    landmark_features,
    load_landmark_index,
    self_blend,
    source_transforms,
)
from detect.data.blend.masks import (
    MaskParams,
    blend_mask,
    draw_mask_params,
    draw_ratio,
    elastic_fields,
    hull_mask,
    hull_parts,
    random_hull_mask,
    warp_affine,
    warp_source_and_mask,
)
from detect.data.blend.sbi import seed_transforms, source_transform_list
from detect.data.images import read_landmarks, read_rgb
from detect.data.index import DatasetSpec, load_split
from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic

REPO = Path(__file__).resolve().parents[1]
CFG = BlendConfig()


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    cfg = SyntheticConfig(n_source_videos=6, frames_per_video=2, methods=("DF",), standins=())
    return ensure_synthetic(tmp_path_factory.mktemp("blend_synthetic"), cfg, workers=1)


@pytest.fixture(scope="module")
def train_table(synthetic_root) -> pd.DataFrame:
    spec = DatasetSpec.from_config(dataset_config("FaceForensics++", synthetic_root))
    return load_split(spec, "train")


@pytest.fixture(scope="module")
def face(train_table) -> tuple[np.ndarray, np.ndarray]:
    row = train_table[train_table["label"] == 0].iloc[0]
    return read_rgb(row["path"]), read_landmarks(row["landmark_path"])


def inside_landmarks(lm: np.ndarray, size: int = 256) -> np.ndarray:
    """The landmarks shrunk about the image centre until all lie inside (for coverage checks)."""
    c = np.float32(size / 2)
    out = (lm - c) * 0.8 + c
    assert out.min() >= 0 and out.max() < size
    return out


# ---------------------------------------------------------------- hulls


@pytest.mark.parametrize("kind", HULL_TYPES)
@pytest.mark.parametrize("n_points", [68, 81])
def test_each_hull_is_inside_and_covers_its_landmarks(face, kind, n_points):
    lm = inside_landmarks(face[1])[:n_points]
    mask = hull_mask(lm, kind, (256, 256))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert 0.05 < mask.mean() < 0.9  # non-empty, not the whole image
    for part in hull_parts(lm, kind):
        assert (part >= 0).all() and (part < 256).all()
        assert mask[part[:, 1], part[:, 0]].all(), f"{kind} misses one of its points"
    # the hull is drawn from (integer-truncated) landmark positions
    ys, xs = np.nonzero(mask)
    assert xs.min() >= int(lm[:, 0].min()) and xs.max() <= int(lm[:, 0].max()) + 1


def test_full_hull_takes_the_forehead_points_of_81_landmarks(face):
    lm = inside_landmarks(face[1])
    forehead = lm[68:].astype(np.int32)
    with_fh = hull_mask(lm, "full", (256, 256), forehead_in_full=True)
    without = hull_mask(lm, "full", (256, 256), forehead_in_full=False)
    assert with_fh[forehead[:, 1], forehead[:, 0]].all()
    assert not without[forehead[:, 1], forehead[:, 0]].all()
    assert with_fh.sum() > without.sum()
    assert np.array_equal(hull_mask(lm[:68], "full", (256, 256)), without)


def test_first_68_points_with_p_one_quarter(face):
    lm = inside_landmarks(face[1])
    cfg = BlendConfig(hull_types=("facehull",))
    top = lm[68:].astype(np.int32)
    rng = np.random.default_rng(0)
    n = 800
    dropped = sum(
        not random_hull_mask(lm, (256, 256), rng, cfg)[0][top[:, 1], top[:, 0]].all() for _ in range(n)
    )
    assert abs(dropped / n - 0.25) < 0.05
    kinds = Counter(random_hull_mask(lm, (256, 256), rng, CFG)[1] for _ in range(n))
    assert set(kinds) == set(HULL_TYPES) and min(kinds.values()) > n / 4 * 0.75


# ---------------------------------------------------------------- blend mask and ratio


def literal_blend_mask(mask: np.ndarray, p: MaskParams) -> np.ndarray:
    """SBI's get_blend_mask step by step on the whole image (the reference for the cropped version)."""
    h, w = mask.shape
    m = cv2.resize(mask.astype(np.float32), (p.width, p.height))
    b = cv2.GaussianBlur(m, (p.kernel1, p.kernel1), 0)
    b = b / b.max()
    b[b < 1] = 0
    b = cv2.GaussianBlur(b, (p.kernel2, p.kernel2), p.sigma2)
    b = b / b.max()
    return cv2.resize(b, (w, h))


def test_blend_mask_is_the_sbi_pipeline_and_normalised(face):
    rng = np.random.default_rng(1)
    lm = face[1]
    for i in range(40):
        mask, _ = random_hull_mask(lm, (256, 256), rng, CFG)
        if i == 0:  # a mask touching the image border
            mask[:, :30] = 1
        p = draw_mask_params(rng, CFG)
        assert 192 <= p.height <= 256 and 192 <= p.width <= 256
        assert p.kernel1 % 2 == 1 and p.kernel2 % 2 == 1 and min(p.kernel1, p.kernel2) >= 5
        assert max(p.kernel1, p.kernel2) <= 25 and 5 <= p.sigma2 <= 45
        got = blend_mask(mask, p)
        assert got.dtype == np.float32 and got.shape == mask.shape
        np.testing.assert_allclose(got, literal_blend_mask(mask, p), atol=1e-6)
        assert got.min() >= 0 and got.max() <= 1 + 1e-6 and got.max() > 0.99
        assert (got[mask == 0] < 1).all()  # the hard edge is softened


def test_blend_ratio_set():
    rng = np.random.default_rng(2)
    counts = Counter(draw_ratio(rng, CFG) for _ in range(6000))
    assert set(counts) == {0.25, 0.5, 0.75, 1.0}
    for r, share in {0.25: 1 / 6, 0.5: 1 / 6, 0.75: 1 / 6, 1.0: 1 / 2}.items():
        assert abs(counts[r] / 6000 - share) < 0.03


# ---------------------------------------------------------------- geometry


def test_affine_on_source_and_mask_elastic_on_mask_only(face):
    img, lm = face
    mask = hull_mask(lm, "facehull", img.shape[:2])
    for seed in range(10):
        src, m, matrix = warp_source_and_mask(img, mask, np.random.default_rng(seed), CFG)
        # the source is the affine alone; the mask is the affine, then the elastic
        assert np.array_equal(src, warp_affine(img, matrix))
        affine_only = warp_affine(mask, matrix, nearest=True)
        assert not np.array_equal(m, affine_only)
        inter, union = np.logical_and(m, affine_only).sum(), np.logical_or(m, affine_only).sum()
        assert inter / union > 0.95
        sx, sy = matrix[0, 0], matrix[1, 1]
        assert 0.95 <= sx <= 1 / 0.95 and 0.95 <= sy <= 1 / 0.95 and matrix[0, 1] == matrix[1, 0] == 0
        c = 127.5
        tx, ty = matrix[0, 2] - (c - sx * c), matrix[1, 2] - (c - sy * c)
        assert abs(tx) <= 0.03 * 256 and abs(ty) <= 0.015 * 256
    no_elastic = BlendConfig(elastic_alpha=0)
    src, m, matrix = warp_source_and_mask(img, mask, np.random.default_rng(0), no_elastic)
    assert np.array_equal(m, warp_affine(mask, matrix, nearest=True))


def test_elastic_fields_are_alpha_times_gaussian_filtered_uniform_noise():
    from scipy.ndimage import gaussian_filter

    dx, dy = elastic_fields(np.random.default_rng(3), (64, 80), alpha=50, sigma=7)
    noise = np.random.default_rng(3).random((2, 64, 80), dtype=np.float32) * 2 - 1
    np.testing.assert_allclose(dx, gaussian_filter(noise[0].astype(np.float64), 7) * 50, atol=1e-3)
    np.testing.assert_allclose(dy, gaussian_filter(noise[1].astype(np.float64), 7) * 50, atol=1e-3)


# ---------------------------------------------------------------- SBI


def test_sbi_changes_only_inside_the_blend_mask(face):
    img, lm = face
    blender = SelfBlender(seed=0)
    seen = set()
    for _ in range(12):
        res = blender(img, lm)
        seen.add(res.transformed)
        assert res.image.dtype == np.uint8 and res.image.shape == img.shape
        assert res.mask.dtype == np.float32 and res.mask.shape == img.shape[:2]
        assert res.mask.min() >= 0 and res.mask.max() <= 1
        assert res.ratio in CFG.ratios and abs(res.mask.max() - res.ratio) < 0.01 * res.ratio
        outside = res.mask == 0
        assert outside.any() and (~outside).any()
        assert np.array_equal(res.image[outside], res.target[outside])
        assert not np.array_equal(res.image[~outside], res.target[~outside])
        if res.transformed == "source":
            assert np.array_equal(res.target, img)  # the real frame is the target, untouched
        # out = m·src + (1 − m)·tgt
        expected = res.mask[..., None] * res.source + (1 - res.mask[..., None]) * res.target
        assert np.abs(res.image - expected).max() <= 0.5 + 1e-3
    assert seen == {"source", "target"}


def test_sbi_is_deterministic_per_seed(face):
    img, lm = face
    a = SelfBlender(seed=7)(img, lm)
    b = SelfBlender(seed=7)(img, lm)
    c = SelfBlender(seed=8)(img, lm)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    blender = SelfBlender(seed=7)
    first = blender(img, lm)
    blender.reseed(7)
    assert np.array_equal(blender(img, lm).image, first.image)
    # a per-sample generator makes the result independent of what the blender drew before
    tf = source_transforms(CFG)
    x = self_blend(img, lm, np.random.default_rng([1, 2, 3]), CFG, tf)
    self_blend(img, lm, np.random.default_rng(99), CFG, tf)
    y = self_blend(img, lm, np.random.default_rng([1, 2, 3]), CFG, tf)
    assert np.array_equal(x.image, y.image)


def _leaves(transforms):
    for t in transforms:
        if isinstance(t, A.BaseCompose):
            yield from _leaves(t.transforms)
        else:
            yield t


def test_each_source_transform_is_configured_and_changes_an_image(face):
    img = face[0]
    leaves = list(_leaves(source_transform_list(CFG)))
    names = [type(t).__name__ for t in leaves]
    assert names == [
        "RGBShift",
        "HueSaturationValue",
        "RandomBrightnessContrast",
        "Downscale",
        "Downscale",
        "Sharpen",
    ]
    rgb, hsv, bc, ds2, ds4, sharpen = leaves
    # the 2.x names took effect (1.x names would be silently ignored and defaults used)
    assert rgb.r_shift_limit == rgb.g_shift_limit == rgb.b_shift_limit == (-20, 20) and rgb.p == 0.3
    assert hsv.hue_shift_limit == hsv.sat_shift_limit == hsv.val_shift_limit == (-0.3, 0.3)
    assert bc.brightness_limit == bc.contrast_limit == (-0.1, 0.1)
    assert ds2.scale_range == (0.5, 0.5) and ds4.scale_range == (0.25, 0.25)
    assert sharpen.alpha == (0.2, 0.5) and sharpen.lightness == (0.5, 1.0)
    for t in leaves:
        t.p = 1.0
        t.set_random_seed(0)
        out = t(image=img)["image"]
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img), f"{type(t).__name__} left the image unchanged"
    # downscale ×2 is SBI's nearest-down, linear-up
    ref = cv2.resize(cv2.resize(img, (128, 128), interpolation=cv2.INTER_NEAREST), (256, 256))
    assert np.array_equal(ds2(image=img)["image"], ref)
    # the RGB shift is within ±20 per channel
    shift = rgb(image=np.full((8, 8, 3), 128, np.uint8))["image"].astype(int) - 128
    assert np.abs(shift).max() <= 20 and np.abs(shift).max() > 0


def test_every_albumentations_node_gets_its_own_seed():
    tf = source_transforms(CFG)
    seed_transforms(tf, np.random.default_rng(0))
    seeds = [tf.seed] + [t.seed for t in _leaves(tf.transforms)]
    assert len(set(seeds)) == len(seeds)


# ---------------------------------------------------------------- landmark index


def hand_made_index(k: int = 3) -> tuple[LandmarkIndex, np.ndarray, list[str]]:
    """Four videos of three frames; a frame's landmarks are a base face shifted by (offset, 0) pixels."""
    base = np.stack([np.linspace(60, 190, 68), np.linspace(70, 200, 68)], axis=1).astype(np.float32)
    offsets = {"A": [0, 1, 2], "B": [3, 10, 30], "C": [4, 20, 40], "D": [6, 50, 60]}
    lms, groups, paths = [], [], []
    for g, offs in offsets.items():
        for j, o in enumerate(offs):
            lms.append(base + np.float32([o, 0]))
            groups.append(g)
            paths.append(f"{g}/{j}.png")
    lms = np.stack(lms)
    return LandmarkIndex(landmark_features(lms), groups, paths, k=k), lms, paths


def test_landmark_index_finds_the_nearest_frames_of_other_videos():
    index, lms, paths = hand_made_index()
    offset = {p: float(lm[0, 0] - 60) for p, lm in zip(paths, lms, strict=True)}
    for p in paths:
        expected = sorted(
            (q for q in paths if q[0] != p[0]), key=lambda q: (abs(offset[q] - offset[p]), paths.index(q))
        )[:3]
        got = index.candidates(p)
        assert [q[0] != p[0] for q in got] == [True] * 3
        assert [abs(offset[q] - offset[p]) for q in got] == [abs(offset[q] - offset[p]) for q in expected]
    assert index.candidates("A/0.png") == ["B/0.png", "C/0.png", "D/0.png"]
    assert index.candidates("B/1.png") == ["D/0.png", "C/0.png", "A/2.png"]  # distances 4, 6, 8
    # a query that is not indexed
    q = index.query(landmark_features(lms[:1] + np.float32([41, 0])), ["B"], k=2)
    assert [index.paths[j] for j in q[0]] == ["C/2.png", "D/1.png"]


def test_neighbour_table_agrees_with_tree_queries():
    rng = np.random.default_rng(0)
    lms = rng.uniform(40, 200, (90, 68, 2)).astype(np.float32)
    groups = np.repeat([f"v{i}" for i in range(30)], 3)
    index = LandmarkIndex(landmark_features(lms), groups, [str(i) for i in range(90)], k=3)
    assert np.array_equal(index.neighbours, index.query(index.features, groups))
    assert (index.neighbours >= 0).all()
    assert (groups[index.neighbours] != groups[:, None]).all()


def test_cbi_foreground_is_one_of_the_three_nearest_of_another_video():
    index, _, paths = hand_made_index()
    blender = CrossBlender(index, seed=0)
    for p in paths:
        picks = Counter(blender.pick_foreground(p) for _ in range(200))
        assert set(picks) == set(index.candidates(p)) and len(picks) == 3
        assert all(q.split("/")[0] != p.split("/")[0] for q in picks)


def _write_table(root: Path, n_videos: int = 3, frames: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for v in range(n_videos):
        for f in range(frames):
            lm_path = root / "landmarks" / f"{v:03d}" / f"{f:03d}.npy"
            lm_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(lm_path, rng.uniform(40, 200, (81, 2)).astype(np.float32))
            rows.append(
                {
                    "path": str(root / "frames" / f"{v:03d}" / f"{f:03d}.png"),
                    "label": 0,
                    "dataset": "FF++",
                    "video_id": f"{v:03d}",
                    "landmark_path": str(lm_path),
                }
            )
    rows.append({**rows[0], "path": str(root / "fake.png"), "label": 1, "video_id": "000_001"})
    return pd.DataFrame(rows)


def test_landmark_index_is_cached_and_rebuilt_when_the_data_change(tmp_path, monkeypatch):
    table = _write_table(tmp_path / "data")
    cache = tmp_path / "cache"
    index = load_landmark_index(table, cache)
    files = sorted(cache.glob("landmark_index-*.npz"))
    assert len(files) == 1 and len(index) == 6  # reals only
    assert not list(cache.glob(".*tmp"))

    calls = []
    real_read = index_cache.read_landmarks
    monkeypatch.setattr(index_cache, "read_landmarks", lambda p: calls.append(p) or real_read(p))
    again = load_landmark_index(table, cache)
    assert calls == [] and np.array_equal(again.neighbours, index.neighbours)
    assert list(again.paths) == list(index.paths)

    # a changed landmark file: new key, rebuilt from the files
    lm_path = Path(table.loc[0, "landmark_path"])
    np.save(lm_path, np.load(lm_path) + 1)
    os.utime(lm_path, ns=(1, 1))
    rebuilt = load_landmark_index(table, cache)
    assert len(calls) == 6 and len(sorted(cache.glob("landmark_index-*.npz"))) == 2
    np.testing.assert_allclose(rebuilt.features[0], index.features[0] + 1 / 256, atol=1e-6)

    # a changed table (one frame fewer): another key
    calls.clear()
    smaller = load_landmark_index(table.iloc[1:], cache)
    assert len(smaller) == 5 and len(calls) == 5
    assert len(sorted(cache.glob("landmark_index-*.npz"))) == 3


def test_landmark_index_groups_ignore_compression(tmp_path):
    table = _write_table(tmp_path / "data", n_videos=2, frames=2)
    c40 = table.assign(path=table["path"].str.replace("frames", "frames_c40"))
    index = load_landmark_index(pd.concat([table, c40]), tmp_path / "cache")
    for p in index.paths:
        vid = Path(p).parent.name
        assert all(Path(q).parent.name != vid for q in index.candidates(p))


# ---------------------------------------------------------------- CBI


def test_colour_transfer_matches_the_background_inside_the_mask():
    fg = np.zeros((3, 4, 3), np.uint8)
    fg[..., 0] = [[10, 20, 30, 200], [40, 50, 60, 200], [0, 0, 0, 200]]
    fg[..., 1] = 100
    fg[..., 2] = [[0, 10, 0, 7], [10, 0, 10, 7], [0, 0, 0, 7]]
    bg = np.zeros_like(fg)
    bg[..., 0] = [[100, 110, 120, 0], [130, 140, 150, 0], [0, 0, 0, 0]]
    bg[..., 1] = [[90, 90, 90, 5], [110, 110, 110, 5], [0, 0, 0, 5]]
    bg[..., 2] = [[250, 255, 250, 9], [255, 250, 255, 9], [0, 0, 0, 9]]
    mask = np.zeros((3, 4), np.float32)
    mask[:2, :3] = 0.5
    out = colour_transfer(fg, bg, mask)
    # channel 0: fg 10..60 (μ 35, σ 17.08), bg 100..150 (μ 125, σ 17.08): a shift by 90
    assert out[:2, :3, 0].tolist() == [[100, 110, 120], [130, 140, 150]]
    # channel 1: σ_fg = 0, so every pixel maps to μ_bg = 100
    assert (out[:2, :3, 1] == 100).all()
    # channel 2: fg {0, 10} (μ 5, σ 5), bg {250, 255} (μ 252.5, σ 2.5): 5 → 255, 0 → 250
    assert out[:2, :3, 2].tolist() == [[250, 255, 250], [255, 250, 255]]
    # outside the mask the foreground is unchanged
    assert np.array_equal(out[2], fg[2]) and np.array_equal(out[:, 3], fg[:, 3])
    inside = mask > 0
    for ch in range(3):
        assert abs(out[inside][:, ch].mean() - bg[inside][:, ch].mean()) < 0.5
    # clipping: a large gain saturates instead of wrapping
    fg2 = fg.copy()
    fg2[:2, :3, 2] = [[0, 1, 0], [1, 0, 1]]
    bg2 = bg.copy()
    bg2[:2, :3, 2] = [[0, 255, 0], [255, 0, 255]]
    assert set(colour_transfer(fg2, bg2, mask)[:2, :3, 2].ravel()) == {0, 255}


def test_colour_transfer_statistics_on_a_face(face):
    img, lm = face
    rng = np.random.default_rng(0)
    fg = np.clip(img.astype(int) * [1.3, 0.8, 1.0] + [10, 30, -20], 0, 255).astype(np.uint8)
    mask = hull_mask(lm, "components", img.shape[:2])
    out = colour_transfer(fg, img, mask)
    inside = mask > 0
    for ch in range(3):
        assert abs(out[inside][:, ch].mean() - img[inside][:, ch].mean()) < 1.0
        assert (
            abs(out[inside][:, ch].std() - img[inside][:, ch].std()) < 0.05 * img[inside][:, ch].std() + 0.5
        )
    assert np.array_equal(out[~inside], fg[~inside])
    del rng


def test_cbi_blends_a_colour_matched_foreground_inside_the_mask(train_table, synthetic_root, tmp_path):
    index = load_landmark_index(train_table, tmp_path / "cache")
    blender = CrossBlender(index, seed=0)
    reals = train_table[train_table["label"] == 0]
    for row in reals.itertuples():
        fg_path = blender.pick_foreground(row.path)
        fg_row = reals[reals["path"] == fg_path].iloc[0]
        assert fg_row["video_id"] != row.video_id
        bg, lm = read_rgb(row.path), read_landmarks(row.landmark_path)
        res = blender(bg, lm, read_rgb(fg_path))
        assert res.transformed == "none" and np.array_equal(res.target, bg)
        outside = res.mask == 0
        assert np.array_equal(res.image[outside], bg[outside])
        assert not np.array_equal(res.image[~outside], bg[~outside])
        assert res.mask.min() >= 0 and abs(res.mask.max() - res.ratio) < 0.01
        expected = res.mask[..., None] * res.source + (1 - res.mask[..., None]) * bg
        assert np.abs(res.image - expected).max() <= 0.5 + 1e-3
    # deterministic per seed, different across seeds
    bg, lm = read_rgb(reals.iloc[0]["path"]), read_landmarks(reals.iloc[0]["landmark_path"])
    fg = read_rgb(reals.iloc[-1]["path"])
    a = cross_blend(bg, lm, fg, np.random.default_rng(5), CFG)
    b = cross_blend(bg, lm, fg, np.random.default_rng(5), CFG)
    c = cross_blend(bg, lm, fg, np.random.default_rng(6), CFG)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


# ---------------------------------------------------------------- config and scripts


def test_blend_config_from_mapping_and_key():
    assert BlendConfig.from_mapping({"ratios": [1.0]}).ratios == (1.0,)
    hydra_node = OmegaConf.create({"ratios": [0.5, 1.0], "mask_size": [200, 256]})
    assert BlendConfig.from_mapping(hydra_node) == BlendConfig(ratios=(0.5, 1.0), mask_size=(200, 256))
    assert BlendConfig.from_mapping(None).key() == CFG.key()
    assert BlendConfig(elastic_alpha=0).key() != CFG.key()
    with pytest.raises(ValueError, match="unknown blend config keys"):
        BlendConfig.from_mapping({"ratio": [1.0]})
    with pytest.raises(ValueError, match="odd"):
        BlendConfig(blur1_kernel=(4, 25))


def _run_script(name: str, args: list[str], monkeypatch, capsys) -> str:
    """Run a script in-process (it sets one thread for OpenCV and torch: restored afterwards)."""
    monkeypatch.setattr(sys, "argv", [name, *args])
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        runpy.run_path(str(REPO / "scripts" / name), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    return capsys.readouterr().out


def test_bench_blend_prints_one_json_line(synthetic_root, tmp_path, monkeypatch, capsys):
    args = ["--root", str(synthetic_root), "--cache-dir", str(tmp_path), "--iters", "3", "--warmup", "1"]
    out = _run_script("bench_blend.py", args, monkeypatch, capsys)
    lines = out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert res["config_hash"] == CFG.key() and res["size"] == 256
    for key in ("sbi_per_s", "cbi_per_s", "cbi_read_per_s", "sbi_speedup", "cbi_speedup"):
        assert res[key] > 0


def test_blend_grid_writes_a_png(synthetic_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "grid.png"
    args = ["--root", str(synthetic_root), "--cache-dir", str(tmp_path), "--n", "2", "--out", str(out)]
    _run_script("blend_grid.py", args, monkeypatch, capsys)
    img = cv2.imread(str(out))
    assert img.shape == (2 * 2 * 256, 4 * 256, 3)
