"""predict.py (detect.inference): faces of a real-face H.264 video, failures listed, face-crop inputs,
face tracking and video aggregation.

The face video is built from scikit-image's astronaut photo (a real face shipped with the package): a
320x240 window around the face, shifted and scaled a little per frame, encoded with H.264 by PyAV.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from helpers import compose, face_video_frames, save_random_checkpoint, write_h264

from detect.data.preprocess.face_detection import Detection
from detect.inference.aggregate import aggregate_scores
from detect.inference.face_sampling import FaceTracker
from detect.inference.load import load_detector
from detect.inference.prediction import run_predict
from detect.inference.sources import find_sources

REPO = Path(__file__).resolve().parents[1]
W, H, N_FRAMES = 320, 240, 12


def astronaut_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """A window onto the astronaut's face, moving and zooming slightly from frame to frame."""
    img = skimage.data.astronaut()
    out = []
    for t in range(n):
        s = 1.0 + 0.06 * np.sin(t)
        cx, cy = 220.0 + 8.0 * np.cos(0.7 * t), 140.0 + 5.0 * np.sin(0.5 * t)
        m = np.array([[1 / s, 0, W / 2 - cx / s], [0, 1 / s, H / 2 - cy / s]])
        out.append(cv2.warpAffine(img, m, (W, H)))
    return out


def run_predict_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "predict.py"), "progress=false", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """astronaut.mp4 (a face in every frame), flat.mp4 (no face), broken.mp4 (not a video)."""
    root = tmp_path_factory.mktemp("inputs")
    write_h264(root / "astronaut.mp4", astronaut_frames())
    write_h264(root / "sub" / "flat.mp4", [np.full((H, W, 3), (90, 140, 60), np.uint8)] * N_FRAMES)
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    return root


@pytest.fixture(scope="module")
def predicted(ckpt: Path, inputs: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("predict")
    args = (f"ckpt={ckpt}", f"input={inputs}", "frames=6", f"out_dir={out}", "visualize=true")
    proc = run_predict_script(*args)
    return proc, out


def test_one_face_in_every_sampled_frame_and_both_csvs(predicted, inputs: Path) -> None:
    proc, out = predicted
    assert proc.returncode == 0, proc.stderr[-3000:]
    faces = pd.read_csv(out / "predictions.csv")
    videos = pd.read_csv(out / "videos.csv")
    astro = str(inputs / "astronaut.mp4")
    mine = faces[faces["path"] == astro]
    assert sorted(mine["frame"]) == [0, 2, 4, 6, 8, 11]  # floor(linspace(0, 11, 6))
    assert (mine["face"] == 0).all()
    # the face sits in the middle of the 320x240 window: boxes there, of a face's size
    cx, cy = (mine["x0"] + mine["x1"]) / 2, (mine["y0"] + mine["y1"]) / 2
    assert ((cx - W / 2).abs() < 60).all() and ((cy - H / 2).abs() < 50).all()
    assert ((mine["x1"] - mine["x0"]).between(50, 160)).all()
    assert mine["score"].between(0, 1).all()
    row = videos[videos["path"] == astro].iloc[0]
    assert (row["n_frames"], row["n_faces"], row["n_frames_with_face"]) == (6, 6, 6)
    assert row["score"] == pytest.approx(mine["score"].mean(), abs=1e-6)
    assert list(videos["path"]) == [astro]
    assert (out / "visualized" / (str(inputs / "astronaut").strip("/").replace("/", "__") + ".mp4")).is_file()


def test_failures_are_listed_and_the_run_exits_0(predicted, inputs: Path) -> None:
    proc, out = predicted
    assert proc.returncode == 0
    failures = pd.read_csv(out / "failures.csv").set_index("path")
    assert failures.loc[str(inputs / "broken.mp4"), "reason"] == "unreadable"
    assert failures.loc[str(inputs / "sub" / "flat.mp4"), "reason"] == "no_face"
    assert len(failures) == 2
    assert "broken.mp4" in proc.stdout and "flat.mp4" in proc.stdout
    assert str(inputs / "astronaut.mp4") in set(pd.read_csv(out / "videos.csv")["path"])


def test_faces_crops_scores_each_image(ckpt: Path, tmp_path: Path) -> None:
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(images):
        cv2.imwrite(str(crops / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"  # what predict.py runs, in this process (its command line: the tests above)
    run_predict(compose([f"ckpt={ckpt}", f"input={crops}", "faces=crops", "progress=false"], "predict"), out)
    videos = pd.read_csv(out / "videos.csv")
    assert list(videos["path"]) == [str(crops / f"{i}.png") for i in range(3)]
    assert (videos["n_faces"] == 1).all()
    det = load_detector(ckpt)
    with torch.no_grad():
        direct = det.method.predict(torch.stack([det.pipeline(im, augment=False) for im in images])).numpy()
    np.testing.assert_allclose(videos["score"].to_numpy(), direct, atol=1e-5)
    assert len(pd.read_csv(out / "failures.csv")) == 0


def test_a_crafted_checkpoint_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    """predict.py builds from a checkpoint under eval.py's trust rule: a target outside the project's
    conf/ is refused with the key named, exit 2, and the code it names never runs."""
    victim, ckpt = tmp_path / "created_by_checkpoint.txt", tmp_path / "crafted.pt"
    target = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    method = {"_target_": "detect.methods.baseline.Baseline", "name": "baseline", "optim": target}
    cfg = {"method": method, "backbone": {"name": "tiny"}, "input": {"size": 32}, "seed": 0}
    torch.save({"method": {}, "config": cfg, "epoch": 1}, ckpt)
    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(str(crops / "0.png"), np.zeros((64, 64, 3), np.uint8))
    proc = run_predict_script(f"ckpt={ckpt}", f"input={crops}", "faces=crops", f"out_dir={tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "method.optim._target_='builtins.open'" in proc.stderr
    assert not victim.exists()


def test_tracker_keeps_ids_across_frames() -> None:
    tracker = FaceTracker()
    left, right = (10, 10, 50, 50), (100, 10, 140, 50)
    assert tracker.assign([Detection(left, 1), Detection(right, 1)]) == [0, 1]
    moved = [Detection((104, 12, 144, 52), 1), Detection((12, 11, 52, 51), 1)]
    assert tracker.assign(moved) == [1, 0]
    assert tracker.assign([Detection((300, 300, 340, 340), 1)]) == [2]


def test_aggregation_rules() -> None:
    faces = pd.DataFrame({"frame": [0, 0, 1, 2], "score": [0.2, 0.8, 0.4, 0.6]})
    assert aggregate_scores(faces, "mean") == pytest.approx((0.2 + 0.8 + 0.4 + 0.6) / 4)
    assert aggregate_scores(faces, "mean_of_frame_max") == pytest.approx((0.8 + 0.4 + 0.6) / 3)
    with pytest.raises(ValueError, match="aggregate"):
        aggregate_scores(faces, "median")


def test_sources_folders_globs_and_missing(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.mp4", "a/b/y.JPG", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"0")
    found = find_sources(tmp_path / "a")
    assert [(Path(s.path).name, s.kind) for s in found] == [("y.JPG", "image"), ("x.mp4", "video")]
    assert [Path(s.path).name for s in find_sources(str(tmp_path / "a" / "*.mp4"))] == ["x.mp4"]
    with pytest.raises(FileNotFoundError, match="nope"):
        find_sources(tmp_path / "nope")


def test_visualize_cam_draws_a_heat_map_inside_the_face_box(ckpt: Path, tmp_path: Path) -> None:
    """``visualize_cam=true``: the PNG differs from the boxes-only one inside the face box and nowhere
    outside the face's crop; the Grad-CAM maps are finite in [0, 1] and leave the weights' gradients alone;
    without the flag the PNG is exactly the boxes and scores drawn on the frame."""
    from detect.inference.class_activation import heat_maps
    from detect.inference.visualize import annotate

    frame = face_video_frames(0.0, 1)[0]
    image = tmp_path / "in" / "astronaut.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    drawn = {}
    for flag in ("false", "true"):  # what predict.py runs, in this process (its command line: tests above)
        out = tmp_path / f"cam_{flag}"
        overrides = [
            f"ckpt={ckpt}",
            f"input={image}",
            "visualize=true",
            f"visualize_cam={flag}",
            "progress=false",
        ]
        run_predict(compose(overrides, "predict"), out)
        (png,) = (out / "visualized").glob("*.png")
        drawn[flag] = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(np.int16)
    faces = pd.read_csv(tmp_path / "cam_true" / "predictions.csv")
    assert len(faces) == 1
    np.testing.assert_array_equal(drawn["false"], annotate(frame, faces))  # without the flag: boxes only
    x0, y0, x1, y1 = (int(round(v)) for v in faces.iloc[0][["x0", "y0", "x1", "y1"]])
    diff = np.abs(drawn["true"] - drawn["false"]).sum(-1)
    assert diff[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean() > 20  # the heat map is blended in over the face
    grown = 0.5 * max(x1 - x0, y1 - y0)  # the crop is 1.3x the box: nothing changes beyond that
    far = np.ones(diff.shape, bool)
    far[max(0, int(y0 - grown)) : int(y1 + grown), max(0, int(x0 - grown)) : int(x1 + grown)] = False
    assert far.any() and (diff[far] == 0).all()
    det = load_detector(ckpt)
    crop = cv2.resize(frame[y0:y1, x0:x1], (64, 64))
    (heat,) = heat_maps(det.method, det.pipeline, [crop])
    assert heat.shape == (64, 64) and np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert all(p.grad is None for p in det.method.parameters()) and not det.method.training
