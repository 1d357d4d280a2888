"""predict.py with a clip detector (issue 18): a randomly initialised FTCN at smoke size (clip_len 4)
scores a synthetic face video per clip of consecutive frames, each clip cut with one box, and the video
score is the mean of its clip scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import compose, face_video_frames, save_random_checkpoint, write_h264

from detect.data.preprocess.crop import warp
from detect.data.preprocess.face_detection import build_face_models
from detect.engine.runtime import setup_runtime
from detect.inference.clip_sampling import clips_of, clips_wanted, sample_clips
from detect.inference.load import load_detector
from detect.inference.prediction import face_models_config, predict_sources
from detect.inference.sources import find_sources

N_FRAMES = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clip_predict")
    ckpt = save_random_checkpoint(root / "ftcn.pt", ("method=ftcn",))
    write_h264(root / "videos" / "face.mp4", face_video_frames(0.3, N_FRAMES))
    cfg = compose([f"ckpt={ckpt}", f"input={root / 'videos'}", "progress=false", "clips=2"], "predict")
    return root, ckpt, cfg


def test_clip_count_rule() -> None:
    assert clips_wanted(3, 5, 100, 4) == 3  # predict.yaml's clips wins
    assert clips_wanted(None, 5, 100, 4) == 5  # then the method's eval_clips_per_video
    assert clips_wanted(None, None, 14, 4) == 3  # else every clip the video holds
    with pytest.raises(ValueError, match="clips=0"):
        clips_wanted(0, None, 14, 4)


def test_ftcn_scores_consecutive_clips_and_video_mean(setup) -> None:
    root, ckpt, cfg = setup
    detector = load_detector(ckpt)
    assert detector.method.clip_len == 4
    torch.set_num_threads(1)
    result = predict_sources(
        detector, find_sources(str(root / "videos" / "face.mp4")), cfg, setup_runtime(cfg.runtime)
    )
    clips = result.faces
    # clips=2 over 12 frames: starts floor(linspace(0, 8, 2)) = 0, 8; 4 consecutive frames each
    assert clips["frame"].tolist() == [0, 8]
    assert clips["n_frames"].tolist() == [4, 4]
    assert np.all(np.isfinite(clips["score"]))
    (video,) = result.videos.to_dict("records")
    assert video["aggregate"] == "mean_of_clips" and video["n_clips"] == 2 and video["n_frames"] == 8
    assert video["score"] == pytest.approx((clips["score"][0] + clips["score"][1]) / 2, abs=1e-12)

    # the clips themselves: consecutive frame numbers, one box (one affine map) for every frame, and
    # each clip's row score is P(fake) of its stacked crops
    sampled = sample_clips(find_sources(str(root / "videos" / "face.mp4"))[0], 4, 2, None)
    models = build_face_models(face_models_config(cfg.detector))
    cut = list(clips_of(sampled, "largest", detector.crop, models))
    assert [c.frames for c in cut] == [[0, 1, 2, 3], [8, 9, 10, 11]]
    for clip, row in zip(cut, clips.itertuples(), strict=True):
        assert (row.x0, row.y0, row.x1, row.y1) == pytest.approx(clip.box)
        frames, _ = detector.pipeline.apply_shared(clip.crops, augment=False)
        with torch.no_grad():
            p = float(detector.method.predict(torch.stack(frames)[None]).reshape(()))
        assert row.score == pytest.approx(p, abs=1e-5)
        # one box per clip: every crop is the same affine cut of its frame
        for i, crop in zip(clip.frames, clip.crops, strict=True):
            assert np.array_equal(warp(sampled.sampled.frames[i], clip.matrix, detector.crop.size), crop)


def test_image_and_short_video_are_failures(setup, tmp_path: Path) -> None:
    root, ckpt, cfg = setup
    write_h264(tmp_path / "short.mp4", face_video_frames(0.0, 3))
    shutil.copy(root / "videos" / "face.mp4", tmp_path / "face.mp4")
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((32, 32, 3), np.uint8))
    detector = load_detector(ckpt)
    result = predict_sources(detector, find_sources(str(tmp_path)), cfg, setup_runtime(cfg.runtime))
    names = result.failures["path"].map(lambda p: Path(p).name)
    reasons = dict(
        zip(names, zip(result.failures["reason"], result.failures["detail"], strict=True), strict=True)
    )
    assert reasons["short.mp4"][0] == "too_short" and "fewer than one clip" in reasons["short.mp4"][1]
    assert reasons["photo.png"][0] == "image" and "is an image" in reasons["photo.png"][1]
    assert result.videos["path"].map(lambda p: Path(p).name).tolist() == ["face.mp4"]
