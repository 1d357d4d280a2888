"""Time in the synthetic benchmark (generator version 6): real videos move smoothly, fakes flicker, and
the optional clips of consecutive frames reach the index and the clip view."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.data.clip_view import ClipDataset
from detect.data.index import DatasetSpec, frame_number, load_split
from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic
from detect.data.synthetic import generator as G
from detect.data.synthetic import temporal as T
from detect.data.synthetic.codec import h264_roundtrip
from detect.data.synthetic.standins import FF_NAME, FF_STYLE, STAND_INS
from detect.data.transforms import Pipeline

PARAMETERS = {
    "dx": lambda f: f.pose.dx,
    "dy": lambda f: f.pose.dy,
    "scale": lambda f: f.pose.scale,
    "yaw": lambda f: f.pose.yaw,
    "mouth": lambda f: f.expression.open,
    "smile": lambda f: f.expression.smile,
    "brow": lambda f: f.expression.brow,
    "blink": lambda f: f.expression.blink,
    "gaze": lambda f: f.gaze[0],
    "exposure": lambda f: f.exposure,
}


def test_smooth_track_has_unit_variance_and_its_slope_bound() -> None:
    rng = np.random.default_rng(0)
    track = T.smooth_track(rng, range(30000), (20.0, 100.0))
    assert abs(track.mean()) < 0.1 and 0.9 < track.std() < 1.1
    # slope <= 2 pi sqrt(2 * 3) / 20 = 0.770 per frame (3 waves, shortest period 20 frames)
    assert np.abs(np.diff(track)).max() <= 2 * np.pi * np.sqrt(6) / 20
    with pytest.raises(ValueError, match="periods"):
        T.smooth_track(rng, range(3), (0.0, 10.0))


def test_consecutive_frames_differ_little_and_distant_frames_a_lot() -> None:
    # every frame parameter over the nominal 300-frame clip of three videos: the mean change between
    # consecutive frames is under a quarter of the mean change over 60 frames (independent draws per frame,
    # generator version 5's dx, dy, blink, brow, gaze and exposure, would give a ratio near 1)
    for index in range(3):
        video = G.make_video(0, FF_NAME, index, range(300), 256, FF_STYLE)
        for name, get in PARAMETERS.items():
            p = np.array([get(f) for f in video.frames])
            near = np.abs(np.diff(p)).mean()
            far = np.abs(p[60:] - p[:-60]).mean()
            assert far > 0 and near < 0.25 * far, (index, name, near, far)


def test_a_frame_is_the_same_whatever_else_the_video_stores() -> None:
    alone = G.make_video(0, FF_NAME, 5, [150], 256, FF_STYLE).frames[0]
    among = G.make_video(0, FF_NAME, 5, [0, 149, 150, 151, 299], 256, FF_STYLE).frames[2]
    assert (alone.pose, alone.expression, alone.gaze, alone.exposure, alone.noise_offset) == (
        among.pose,
        among.expression,
        among.gaze,
        among.exposure,
        among.noise_offset,
    )
    assert np.array_equal(alone.light, among.light)


def flicker(frames: list[np.ndarray], mask: np.ndarray) -> float:
    """Mean absolute second difference in time of the frames blurred with sigma 2 (smooth motion has
    nearly none; sensor noise is blurred away), over ``mask``'s pixels."""
    blurred = np.array([cv2.GaussianBlur(f.astype(np.float32), (0, 0), 2.0) for f in frames])
    second = np.abs(blurred[2:] - 2 * blurred[1:-1] + blurred[:-2])
    return float(second[:, mask].mean())


CLIP = SyntheticConfig(clips=1, clip_len=6)


@pytest.mark.parametrize("method", ["DF", "F2F", "FS", "NT", "FSh", "DFDC", "FakeAVCeleb"])
def test_a_fake_flickers_more_than_its_real_video(method: str) -> None:
    # one clip of 6 consecutive frames of two target videos, after the codec, inside the fake's mask
    for video in (0, 1):
        if method in STAND_INS:
            s = STAND_INS[method]
            cfg = SyntheticConfig(clips=1, clip_len=6, standins=(method,))
            pr = G.prepare(cfg, s.pool_name, video, {s.fakes[0].method})
            fakes = G.standin_fakes(cfg, s, 0, pr.target, pr.reals, pr.lms, pr.sources)
            crf = s.crf
        else:
            pr = G.prepare(CLIP, FF_NAME, video, {G.FF_NEEDS[method]})
            fakes = G.ff_fakes(CLIP, method, pr.target, pr.reals, pr.lms, pr.sources)
            crf = CLIP.crf_c23
        assert list(pr.target.numbers) == list(range(6)) and pr.clips == [list(range(6))]
        mask = np.max([f.mask for f in fakes], axis=0) > 0
        real = flicker(h264_roundtrip(pr.reals, crf, CLIP.x264_preset), mask)
        fake = flicker(h264_roundtrip([f.image for f in fakes], crf, CLIP.x264_preset), mask)
        assert fake > 1.5 * real, (method, video, real, fake)


def test_jitter_draws_are_independent_per_frame_and_seeded() -> None:
    video = G.make_video(0, FF_NAME, 2, [10, 11], 64, FF_STYLE)
    a, b = (T.draw_jitter(G.frame_rng(0, video, "DF", k)) for k in (0, 1))
    assert a != b and a == T.draw_jitter(G.frame_rng(0, video, "DF", 0))
    assert abs(a.grow) <= T.DEFAULT_JITTER.grow and max(map(abs, a.shift)) <= 2 * T.DEFAULT_JITTER.shift


def test_clip_option_stores_clips_of_consecutive_frames_for_the_clip_view(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        n_source_videos=4,
        image_size=64,
        standin_videos=2,
        standins=("DFDC",),
        methods=("DF",),
        clips=2,
        clip_len=3,
    )
    # preprocessing's placement over the 300-frame video: starts floor(linspace(0, 297, 2)) = 0, 297
    assert G.stored_frames(8, 2, 3) == ([0, 1, 2, 297, 298, 299], [[0, 1, 2], [297, 298, 299]])
    root = ensure_synthetic(tmp_path, cfg, workers=1)
    for name in ("FF-DF", "DFDC"):
        table = load_split(DatasetSpec.from_config(dataset_config(name, root)), "test")
        assert sorted(set(table["frame"])) == [0, 1, 2, 297, 298, 299]
        ds = ClipDataset(table, Pipeline(32, [0.5] * 3, [0.5] * 3), clip_len=3, train=False)
        assert len(ds) == 2 * table["video"].nunique()
        for i in range(len(ds)):
            rows = table.iloc[ds[i]["indices"].numpy()]
            assert rows["video"].nunique() == 1 and np.all(np.diff(rows["frame"].to_numpy()) == 1)
            assert ds[i]["clip"].shape == (3, 3, 32, 32)
    import json

    index = json.loads((root / "dataset_json" / "FaceForensics++.json").read_text())
    video = index["FaceForensics++"]["FF-DF"]["test"]["c23"]
    node = next(iter(video.values()))
    assert node["clips"] == [[0, 1, 2], [297, 298, 299]]
    assert sorted(frame_number(f) for f in node["frames"]) == [0, 1, 2, 297, 298, 299]
    with pytest.raises(ValueError, match="clip_len"):
        SyntheticConfig(clips=2, clip_len=0)
