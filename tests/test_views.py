"""Dataset views yield what their consumers need."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import write_ff_fixture

from detect.data.datasets import AlignedGroupDataset, FrameDataset, MetaPairDataset, MultiQualityDataset
from detect.data.images import ImageReadError
from detect.data.index import DatasetSpec, load_split
from detect.data.transforms import Pipeline

LABELS = {
    "FF-real": {"label": 0, "domain": "real"},
    "FF-DF": {"label": 1, "domain": "DF"},
    "FF-F2F": {"label": 1, "domain": "F2F"},
    "FF-FS": {"label": 1, "domain": "FS"},
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = write_ff_fixture(tmp_path_factory.mktemp("views"), methods=("Deepfakes", "Face2Face", "FaceSwap"))
    s = DatasetSpec.from_config(
        {
            "name": "FaceForensics++",
            "index": str(root / "dataset_json/FaceForensics++.json"),
            "root": str(root / "rgb"),
            "compression": "c23",
            "pairing": "ff",
            "labels": LABELS,
        }
    )
    return load_split(s, "train", frames_per_video=5)


def plain(size=32, augment=None):
    return Pipeline(size, [0.5] * 3, [0.5] * 3, augment)


def test_frame_view_items_and_index(table):
    ds = FrameDataset(table, plain(), train=False)
    item = ds[7]
    assert item["image"].shape == (3, 32, 32) and item["index"] == 7
    assert item["label"].item() == table["label"].iloc[7]


def test_unreadable_image_raises_naming_file(table, tmp_path):
    t = table.copy()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    t.loc[3, "path"] = str(bad)
    with pytest.raises(ImageReadError, match="broken.png"):
        FrameDataset(t, plain(), train=True)[3]


def test_aligned_group_is_one_source_frame(table):
    ds = AlignedGroupDataset(table, plain(), train=False, domains=["DF", "F2F", "FS"])
    assert len(ds) == (table["label"] == 0).sum()
    for g in range(len(ds)):
        rows = table.iloc[ds.groups[g]]
        assert rows["source_video"].nunique() == 1 and rows["frame"].nunique() == 1
        assert list(rows["domain"]) == ["real", "DF", "F2F", "FS"]
    item = ds[0]
    assert item["images"].shape == (4, 3, 32, 32)
    assert item["labels"].tolist() == [0, 1, 1, 1]


def test_group_shares_one_augmentation_draw(table):
    import albumentations as A  # noqa: F401 - the pipeline instantiates from specs

    aug = [
        {
            "_target_": "albumentations.Affine",
            "rotate": [-40, 40],
            "translate_percent": [-0.2, 0.2],
            "p": 1.0,
        },
        {"_target_": "albumentations.RandomBrightnessContrast", "p": 1.0},
    ]
    pipe = plain(augment=aug)
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    for _ in range(5):
        out, _ = pipe.apply_shared([img, img.copy(), img.copy()])
        assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    a = pipe.apply_shared([img])[0][0]
    b = pipe.apply_shared([img])[0][0]
    assert not torch.equal(a, b)  # separate draws differ


def test_meta_pairs(table):
    ds = MetaPairDataset(table, plain(), seed=0)
    ds.set_domains(["DF", "F2F"], ["FS"], epoch=0)
    assert len(ds) > 0
    for row, partner in ds.items:
        a, b = table.iloc[row], table.iloc[partner]
        assert a["source_video"] == b["source_video"] and a["frame"] == b["frame"]
        if a["label"] == 1:
            assert a["domain"] in ("DF", "F2F") and b["label"] == 0
        else:
            assert b["domain"] == "FS"
    assert set(table.iloc[ds.items[:, 0]]["domain"]) == {"real", "DF", "F2F"}
    item = ds[0]
    assert item["meta_image"].shape == item["image"].shape
    with pytest.raises(ValueError, match="disjoint"):
        ds.set_domains(["DF"], ["DF"])


def test_multi_quality(table):
    ds = MultiQualityDataset(table, plain(), qualities=[None, [30, 99], 10], train=False, seed=1)
    item = ds[2]
    assert item["images"].shape == (3, 3, 32, 32)
    q = item["qualities"].tolist()
    assert q[0] == 100 and 30 <= q[1] <= 99 and q[2] == 10
    assert ds.draw(2) == ds.draw(2)
    assert not torch.equal(item["images"][0], item["images"][2])  # q10 really compresses


def test_missing_source_pairs_reported(table):
    only_fakes = table[table["label"] == 1]
    ds = AlignedGroupDataset(only_fakes, plain(), train=False, domains=["DF"])
    assert len(ds) == 0
