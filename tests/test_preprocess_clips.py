"""Preprocessing clips of consecutive frames (``clips=K clip_len=L``, issue 18): one crop box per clip, the
union of the tracked face's boxes, recorded in the index; the clips read back as ``(T, C, H, W)`` clips.

The videos are the moving window onto scikit-image's astronaut photo of tests/test_preprocess.py, with a
drift of 6 px per frame added so that the detector's (quantised) box moves within every clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from helpers import CONF, FACE_VIDEO_FRAMES, FACE_VIDEO_H, FACE_VIDEO_W, photo_to_frame, write_h264
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from detect.data.clip_view import ClipDataset
from detect.data.index import DatasetSpec, load_split
from detect.data.preprocess.clips import clip_starts, track_face, union_box
from detect.data.preprocess.crop import apply_affine, square_around
from detect.data.preprocess.face_detection import Detection
from detect.data.preprocess.pipeline import Settings, run_preprocess
from detect.data.transforms import Pipeline

CLIPS, CLIP_LEN = 2, 4
EXPECTED_CLIPS = [[0, 1, 2, 3], [8, 9, 10, 11]]  # floor(linspace(0, 12 - 4, 2)) = 0, 8
REAL_REL, FAKE_REL = "original_sequences/youtube/c23", "manipulated_sequences/Deepfakes/c23"


def drifting_face_frames(phase: float, drift: float = 6.0) -> list[np.ndarray]:
    """The astronaut window of tests/helpers.py, moved ``drift`` px right and down per frame."""
    img = skimage.data.astronaut()
    out = []
    for t in range(FACE_VIDEO_FRAMES):
        m = photo_to_frame(t, phase) + np.array(
            [[0, 0, drift * (t % 4) - 9], [0, 0, drift * (t % 4) / 2 - 4]]
        )
        out.append(cv2.warpAffine(img, m, (FACE_VIDEO_W, FACE_VIDEO_H)))
    return out


def test_clip_starts_spread_without_overlap() -> None:
    assert clip_starts(12, 2, 4) == [0, 8]
    assert clip_starts(100, 4, 10) == [0, 30, 60, 90]
    assert clip_starts(12, 5, 4) == [0, 4, 8]  # only three clips of 4 fit side by side
    assert clip_starts(3, 2, 4) == []
    for n, k, length in ((37, 5, 7), (64, 3, 16), (33, 4, 8)):
        starts = clip_starts(n, k, length)
        assert np.all(np.diff(starts) >= length) and starts[-1] + length <= n


def test_track_follows_the_overlapping_face_and_union_holds_every_box() -> None:
    a = [Detection((10, 10, 50, 50), 1.0), Detection((100, 0, 200, 100), 1.0)]  # a small face, a big one
    b = [Detection((12, 11, 52, 53), 1.0), Detection((100, 0, 200, 100), 1.0)]
    c = [Detection((14, 12, 55, 54), 1.0)]
    got = track_face([a, b, [], c])
    assert [d.box if d else None for d in got] == [
        (100, 0, 200, 100),
        (100, 0, 200, 100),
        None,
        (14, 12, 55, 54),
    ]
    # starting on the small face (the big one absent), the track stays on it
    got = track_face([[a[0]], b, c])
    assert [d.box for d in got] == [(10, 10, 50, 50), (12, 11, 52, 53), (14, 12, 55, 54)]
    assert union_box([d.box for d in got]) == (10, 10, 55, 54)


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("raw_clips")
    ff = root / "FaceForensics++"
    write_h264(
        ff / "original_sequences" / "youtube" / "c23" / "videos" / "000.mp4", drifting_face_frames(0.0)
    )
    write_h264(
        ff / "manipulated_sequences" / "Deepfakes" / "c23" / "videos" / "000_001.mp4",
        drifting_face_frames(1.0),
    )
    splits = root / "splits"
    splits.mkdir()
    for name, pairs in (("train", [["000", "001"]]), ("val", [["002", "003"]]), ("test", [["004", "005"]])):
        (splits / f"{name}.json").write_text(json.dumps(pairs))
    out = tmp_path_factory.mktemp("out_clips")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="preprocess",
            overrides=[
                "dataset=ff",
                "dataset.manipulations=[DF]",
                f"input_dir={ff}",
                f"splits_dir={splits}",
                f"paths.data_dir={out}",
                f"clips={CLIPS}",
                f"clip_len={CLIP_LEN}",
                "masks=false",
                "workers=0",
                "progress=false",
            ],
        )
    summary = run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    return cfg, out, summary


def _state(out: Path, rel: str, video: str) -> dict:
    return json.loads((out / "preprocess_state" / "FaceForensics++" / rel / f"{video}.json").read_text())


def test_one_crop_box_per_clip_the_union_of_the_tracked_boxes(clip_run) -> None:
    _, out, summary = clip_run
    assert summary["counts"]["clips"] == 2 * CLIPS and summary["counts"]["frames"] == 2 * CLIPS * CLIP_LEN
    for rel, vid in ((REAL_REL, "000"), (FAKE_REL, "000_001")):
        state = _state(out, rel, vid)
        assert state["status"] == "ok" and state["clips"] == EXPECTED_CLIPS
        assert sorted(int(n) for n in state["frames"]) == [i for c in EXPECTED_CLIPS for i in c]
        matrices = []
        for k, clip in enumerate(EXPECTED_CLIPS):
            recs = [state["frames"][f"{i:03d}"] for i in clip]
            assert all(r["clip"] == k for r in recs)
            m = np.array(recs[0]["matrix"])
            assert all(np.array_equal(np.array(r["matrix"]), m) for r in recs), "the crop moved within a clip"
            # the frames' own boxes differ (the face moves), the crop holds every one of them
            assert len({tuple(r["box"]) for r in recs}) > 1
            for r in recs:
                x0, y0, x1, y1 = r["box"]
                corners = apply_affine(m, np.array([[x0, y0], [x1, y1]]))
                assert (corners >= -1e-3).all() and (corners <= 256 + 1e-3).all()
            # at least scale x the union's side: the square around the union, grown only to hold landmarks
            box = union_box([r["box"] for r in recs])
            side = 256 / m[0, 0]
            assert side >= square_around(box, 1.3)[2] - 0.05
            matrices.append(m)
        assert not np.array_equal(matrices[0], matrices[1])  # each clip its own box


def test_clips_read_back_from_the_index(clip_run) -> None:
    cfg, _, _ = clip_run
    spec = DatasetSpec.from_config(OmegaConf.to_container(cfg.dataset, resolve=True))
    train = load_split(spec, "train")
    assert sorted(train.groupby("video").size().tolist()) == [CLIPS * CLIP_LEN] * 2
    ds = ClipDataset(train, Pipeline(32, [0.5] * 3, [0.5] * 3), clip_len=CLIP_LEN, train=False)
    assert len(ds) == 2 * CLIPS
    for i in range(len(ds)):
        rows = ds.clips[i]
        frames = train.iloc[rows]["frame"].tolist()
        assert frames in EXPECTED_CLIPS and train.iloc[rows]["video"].nunique() == 1
        assert ds[i]["clip"].shape == (CLIP_LEN, 3, 32, 32)
    # a frame budget of one clip keeps one whole clip per video
    one = load_split(spec, "train", frames_per_video=CLIP_LEN)
    assert sorted(one.groupby("video")["frame"].apply(list).tolist()) == [EXPECTED_CLIPS[0]] * 2


def test_clip_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="crop.mode=box"):
        Settings(clips=2, clip_len=4, crop_mode="align").validate()
    with pytest.raises(ValueError, match="at least 1"):
        Settings(clips=0, clip_len=4).validate()
    # frame-wise settings keep their fingerprint (finished videos of earlier runs are still skipped)
    assert "clips" not in Settings().fingerprint() and "clips" in Settings(clips=2).fingerprint()
    assert FACE_VIDEO_FRAMES == 12  # EXPECTED_CLIPS assumes 12-frame videos


def test_a_second_run_resumes_with_the_clips(clip_run) -> None:
    cfg, out, _ = clip_run
    again = run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    assert again["counts"]["resumed"] == 2 and again["counts"]["clips"] == 2 * CLIPS
    index = json.loads((out / "dataset_json" / "FaceForensics++.json").read_text())
    assert index["FaceForensics++"]["FF-real"]["train"]["c23"]["000"]["clips"] == EXPECTED_CLIPS
