"""ProDet's aligned anchor tuples (detect/data/anchor_tuples.py) on a small synthetic set: alignment with
the real frame, CBI foregrounds from other videos, deepfakes of the same source frame cycling over the
manipulations, determinism per seed, and one augmentation draw shared by the tuple."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from detect.data.anchor_tuples import AnchorTupleDataset
from detect.data.images import ImageReadError, read_landmarks
from detect.data.index import DatasetSpec, load_split
from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic
from detect.data.transforms import Pipeline

PLAIN = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    cfg = SyntheticConfig(n_source_videos=6, frames_per_video=2, methods=("DF", "F2F"), standins=())
    root = ensure_synthetic(tmp_path_factory.mktemp("tuples"), cfg, workers=1)
    return load_split(DatasetSpec.from_config(dataset_config("FaceForensics++", root)), "train")


def dataset(table, tmp_path: Path, augment=None, **kw) -> AnchorTupleDataset:
    return AnchorTupleDataset(table, Pipeline(augment=augment, **PLAIN), cache_dir=tmp_path, **kw)


def test_items_are_aligned_four_tuples(table, tmp_path):
    ds = dataset(table, tmp_path)
    item = ds[0]
    assert item["images"].shape == (4, 3, 64, 64)
    assert item["anchors"].tolist() == [0, 1, 2, 3] and item["labels"].tolist() == [0, 1, 1, 1]
    real, *_, fake = (int(r) for r in item["indices"])
    assert table.at[real, "label"] == 0 and table.at[fake, "label"] == 1
    assert table.at[real, "source_video"] == table.at[fake, "source_video"]
    assert table.at[real, "frame"] == table.at[fake, "frame"]
    assert len(ds) == int((table["label"] == 0).sum())


def test_blends_change_only_the_face_region(table, tmp_path):
    ds = dataset(table, tmp_path)
    for i in range(len(ds)):
        (real, sbi, cbi, _), rows = ds.raw_tuple(i)
        lm = read_landmarks(table.at[rows[0], "landmark_path"])
        x0, y0 = np.maximum(lm.min(0).astype(int) - 40, 0)
        x1, y1 = lm.max(0).astype(int) + 40
        outside = np.ones(real.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert sbi.shape == cbi.shape == real.shape
        # CBI's background is the real frame itself
        assert np.array_equal(cbi[outside], real[outside]) and not np.array_equal(cbi, real)
        # SBI's source-target transforms may recolour the whole target: aligned, not identical
        corr = np.corrcoef(sbi[outside].astype(float).ravel(), real[outside].astype(float).ravel())[0, 1]
        assert corr > 0.9 and not np.array_equal(sbi, real)


def test_cbi_foreground_comes_from_another_video(table, tmp_path):
    ds = dataset(table, tmp_path)
    picked = []
    pick = ds.cbi.pick_foreground

    def spy(path, rng=None):
        picked.append((path, pick(path, rng=rng)))
        return picked[-1][1]

    ds.cbi.pick_foreground = spy
    for i in range(len(ds)):
        ds.raw_tuple(i)
    video = dict(zip(table["path"], table["video_id"], strict=True))
    assert picked and all(video[bg] != video[fg] for bg, fg in picked)


def test_deterministic_per_seed_and_epoch(table, tmp_path):
    a, b = dataset(table, tmp_path, seed=3), dataset(table, tmp_path, seed=3)
    for x, y in zip(a.raw_tuple(1)[0], b.raw_tuple(1)[0], strict=True):
        assert np.array_equal(x, y)
    other_seed = dataset(table, tmp_path, seed=4).raw_tuple(1)[0]
    assert not np.array_equal(a.raw_tuple(1)[0][1], other_seed[1])
    first = a.raw_tuple(1)[0]
    a.set_epoch(1)
    assert not np.array_equal(first[1], a.raw_tuple(1)[0][1])  # fresh blends each epoch


def test_deepfake_cycles_through_the_manipulations(table, tmp_path):
    ds = dataset(table, tmp_path)
    assert ds.domains == ["DF", "F2F"]
    seen = set()
    for epoch in range(2):
        ds.set_epoch(epoch)
        seen.add(table.at[ds.deepfake_row(0), "domain"])
    assert seen == {"DF", "F2F"}


def test_one_augmentation_draw_is_shared_by_the_tuple(table, tmp_path):
    flip = [{"_target_": "albumentations.HorizontalFlip", "p": 0.5}]
    plain, aug = dataset(table, tmp_path), dataset(table, tmp_path, augment=flip)
    flipped_counts = set()
    for seed in range(12):
        aug.reseed(seed)
        got, ref = aug[seed % len(aug)]["images"], plain[seed % len(plain)]["images"]
        flipped = [
            bool(torch.equal(g, r.flip(-1))) and not torch.equal(g, r) for g, r in zip(got, ref, strict=True)
        ]
        same = [bool(torch.equal(g, r)) for g, r in zip(got, ref, strict=True)]
        assert all(flipped) or all(same)
        flipped_counts.add(all(flipped))
    assert flipped_counts == {True, False}  # both outcomes occurred, each for the whole tuple


def test_blendfake_only_tuples_hold_no_deepfake(table, tmp_path):
    ds = dataset(table, tmp_path, anchors=["real", "sbi", "cbi"])
    item = ds[0]
    assert item["anchors"].tolist() == [0, 1, 2] and item["images"].shape[0] == 3
    assert all(table.at[int(r), "label"] == 0 for r in item["indices"])


def test_missing_landmarks_are_named(table, tmp_path):
    broken = table.copy()
    broken["landmark_path"] = None
    ds = dataset(broken, tmp_path, anchors=["real", "sbi"])
    with pytest.raises(ImageReadError, match="no landmark file"):
        ds.raw_tuple(0)
