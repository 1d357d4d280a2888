"""The DeepfakeBench index reader: path forms, counts, evenly spaced frames, keys, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_ff_fixture

from detect.data.index import (
    DatasetSpec,
    IndexError_,
    evenly_spaced,
    landmark_path_for,
    load_split,
    resolve_frame_path,
)

LABELS = {
    "FF-real": {"label": 0, "domain": "real"},
    "FF-DF": {"label": 1, "domain": "DF"},
    "FF-F2F": {"label": 1, "domain": "F2F"},
}


def spec(root: Path, **kw) -> DatasetSpec:
    cfg = {
        "name": "FaceForensics++",
        "index": str(root / "dataset_json" / "FaceForensics++.json"),
        "root": str(root / "rgb"),
        "compression": "c23",
        "pairing": "ff",
        "labels": LABELS,
    }
    cfg.update(kw)
    return DatasetSpec.from_config(cfg)


@pytest.fixture(scope="module", params=["relative", "dfb", "absolute"])
def fixture_root(request, tmp_path_factory) -> Path:
    return write_ff_fixture(tmp_path_factory.mktemp(request.param), path_form=request.param)


def test_all_three_path_forms_give_exact_counts(fixture_root):
    train = load_split(spec(fixture_root), "train", frames_per_video=None)
    # 4 train source videos x (1 real + DF + F2F) x 10 frames
    assert len(train) == 4 * 3 * 10
    assert (train["label"] == 0).sum() == 40
    assert set(train["domain"]) == {"real", "DF", "F2F"}
    assert all(Path(p).is_file() for p in train["path"])
    assert all(p.startswith(str(fixture_root / "rgb")) for p in train["path"])
    assert all(Path(p).is_file() for p in train["landmark_path"])
    for split, n_videos in (("val", 1), ("test", 1)):
        assert load_split(spec(fixture_root), split)["video"].nunique() == n_videos * 3


def test_frames_evenly_spaced_not_first_n(fixture_root):
    table = load_split(spec(fixture_root), "test", frames_per_video=4)
    for _, grp in table.groupby("video"):
        assert sorted(grp["frame"]) == [0, 3, 6, 9]  # floor(linspace(0, 9, 4))
    assert list(evenly_spaced(32, 8)) == [0, 4, 8, 13, 17, 22, 26, 31]
    assert list(evenly_spaced(5, 10)) == [0, 1, 2, 3, 4]


def test_video_keys_distinct_across_manipulations(fixture_root):
    table = load_split(spec(fixture_root), "train")
    fakes = table[table["label"] == 1]
    same_id = fakes.groupby("video_id")["video"].nunique()
    assert (same_id == 2).all()  # DF 000_001 and F2F 000_001 are different videos
    # pairing: a fake's source video is its target real's key
    real_keys = set(table.loc[table["label"] == 0, "source_video"])
    assert set(fakes["source_video"]) <= real_keys
    row = fakes[fakes["video_id"] == "000_001"].iloc[0]
    assert row["source_video"] == "FaceForensics++/c23/000"


def test_manipulation_filter(fixture_root):
    table = load_split(spec(fixture_root, manipulations=["DF"]), "train")
    assert set(table["domain"]) == {"real", "DF"}


def test_path_helpers():
    assert resolve_frame_path("./datasets/rgb/A/frames/0/000.png", "/r") == "/r/A/frames/0/000.png"
    assert resolve_frame_path("A\\frames\\0\\000.png", "/r") == "/r/A/frames/0/000.png"
    assert resolve_frame_path("/abs/x.png", "/r") == "/abs/x.png"
    assert landmark_path_for("/r/A/c23/frames/0/007.png") == "/r/A/c23/landmarks/0/007.npy"


def _copy_json(root: Path, tmp_path: Path, edit) -> DatasetSpec:
    data = json.loads((root / "dataset_json" / "FaceForensics++.json").read_text())
    edit(data)
    p = tmp_path / "edited.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return spec(root, index=str(p))


def test_malformed_json_names_file(ff_fixture, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(IndexError_, match=str(bad)):
        load_split(spec(ff_fixture, index=str(bad)), "train")


def test_unknown_label_names_file_and_key(ff_fixture, tmp_path):
    def edit(d):
        d["FaceForensics++"]["FF-XYZ"] = {"train": {}}

    s = _copy_json(ff_fixture, tmp_path, edit)
    with pytest.raises(IndexError_, match=r"edited\.json.*'FF-XYZ'"):
        load_split(s, "train")


def test_missing_compression_and_frames_key(ff_fixture, tmp_path):
    with pytest.raises(IndexError_, match=r"no compression 'c40'.*FF-real"):
        load_split(spec(ff_fixture, compression="c40"), "train")

    def edit(d):
        node = d["FaceForensics++"]["FF-real"]["train"]["c23"]["000"]
        del node["frames"]

    with pytest.raises(IndexError_, match=r"edited\.json.*'000'.*frames"):
        load_split(_copy_json(ff_fixture, tmp_path, edit), "train")


def test_missing_file_is_named(ff_fixture, tmp_path):
    def edit(d):
        d["FaceForensics++"]["FF-real"]["train"]["c23"]["000"]["frames"].append("nowhere/frames/000/099.png")

    with pytest.raises(FileNotFoundError, match=r"nowhere/frames/000/099\.png"):
        load_split(_copy_json(ff_fixture, tmp_path, edit), "train", frames_per_video=None)


def test_missing_index_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess"):
        load_split(spec(tmp_path), "train")


def test_test_list_and_ltw_subset(ff_fixture, tmp_path):
    lst = tmp_path / "List_of_testing_videos.txt"
    lst.write_text("1 YouTube-real/005.mp4\n")
    table = load_split(spec(ff_fixture, test_list=str(lst)), "test")
    assert set(table["video_id"]) == {"005"}
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"005_000.mp4": {"label": "FAKE", "original": "005.mp4"}}))
    sub = {"kind": "last_real_videos", "n": 1, "metadata": str(meta), "split": "test"}
    table = load_split(spec(ff_fixture, subset=sub, manipulations=["DF"]), "test")
    assert sorted(table["video_id"].unique()) == ["005", "005_000"]
    assert np.all(table.groupby("video_id")["label"].first().to_dict() == {"005": 0, "005_000": 1})
