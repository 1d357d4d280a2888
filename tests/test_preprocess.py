"""Preprocessing raw videos into DeepfakeBench's layout (detect.data.preprocess, scripts/preprocess.py).

The face videos are built from scikit-image's astronaut photo (a real face, shipped with the package):
a 320x240 window around the face, shifted and scaled a little per frame, encoded with H.264 by PyAV.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from helpers import (
    FACE_VIDEO_FRAMES,
    FACE_VIDEO_H,
    FACE_VIDEO_W,
    face_video_frames,
    face_window,
    photo_to_frame,
    write_h264,
)
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from detect.data.index import DatasetSpec, load_split
from detect.data.preprocess import layout as lay
from detect.data.preprocess.crop import (
    apply_affine,
    box_matrix,
    invert_affine,
    similarity,
    square_around,
    warp,
)
from detect.data.preprocess.face_detection import (
    FaceModelConfig,
    LandmarkPredictor,
    MtcnnDetector,
    build_face_models,
    largest_face,
    models_dir,
)
from detect.data.preprocess.pipeline import SUMMARY_FILE, Settings, run_preprocess
from detect.data.preprocess.video import VideoReadError, read_sampled, sample_indices

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
N_VIDEO_FRAMES = FACE_VIDEO_FRAMES
NUM_FRAMES = 8
EXPECTED_FRAMES = [0, 1, 3, 4, 6, 7, 9, 11]  # floor(linspace(0, 11, 8))
W, H = FACE_VIDEO_W, FACE_VIDEO_H
# In the 512x512 astronaut photo: the 68 landmarks' centroid, the eyes' and the mouth's mean height.
FACE_CENTRE = np.array([224.0, 127.0])
EYES_Y, MOUTH_Y = 103.0, 145.5


# ---------------------------------------------------------------- synthetic raw data


def _mask_frames(phase: float) -> list[np.ndarray]:
    out = []
    for t in range(N_VIDEO_FRAMES):
        m = np.zeros((H, W, 3), np.uint8)
        cx, cy = apply_affine(photo_to_frame(t, phase), FACE_CENTRE[None])[0]
        cv2.ellipse(m, (int(cx), int(cy)), (35, 45), 0, 0, 360, (255, 255, 255), -1)
        out.append(m)
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FF++: real 000 (face), 001 (flat colour), 002 (not a video), fake 000_001 (face + mask)."""
    root = tmp_path_factory.mktemp("raw")
    ff = root / "FaceForensics++"
    real = ff / "original_sequences" / "youtube" / "c23" / "videos"
    write_h264(real / "000.mp4", face_video_frames(0.0))
    write_h264(real / "001.mp4", [np.full((H, W, 3), (90, 140, 60), np.uint8)] * N_VIDEO_FRAMES)
    (real / "002.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    fake = ff / "manipulated_sequences" / "Deepfakes"
    write_h264(fake / "c23" / "videos" / "000_001.mp4", face_video_frames(1.0))
    write_h264(fake / "masks" / "videos" / "000_001.mp4", _mask_frames(1.0))
    splits = root / "splits"
    splits.mkdir()
    for name, pairs in (("train", [["000", "001"]]), ("val", [["002", "003"]]), ("test", [["004", "005"]])):
        (splits / f"{name}.json").write_text(json.dumps(pairs))
    return root


def _cfg(raw: Path, out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="preprocess",
            overrides=[
                "dataset=ff",
                "dataset.manipulations=[DF]",
                f"input_dir={raw / 'FaceForensics++'}",
                f"splits_dir={raw / 'splits'}",
                f"paths.data_dir={out}",
                f"num_frames={NUM_FRAMES}",
                "workers=2",
                "progress=false",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def run1(raw: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out")
    cfg = _cfg(raw, out)
    summary = run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    return cfg, out, summary


def _state(out: Path, rel: str, video: str) -> dict:
    return json.loads((out / "preprocess_state" / "FaceForensics++" / rel / f"{video}.json").read_text())


REAL_REL = "original_sequences/youtube/c23"
FAKE_REL = "manipulated_sequences/Deepfakes/c23"


# ---------------------------------------------------------------- unit tests


def test_sample_indices_evenly_spaced() -> None:
    assert sample_indices(12, 8).tolist() == EXPECTED_FRAMES
    assert sample_indices(100, 4).tolist() == [0, 33, 66, 99]
    assert sample_indices(12, 5).tolist() == [0, 2, 5, 8, 11]  # linspace 0, 2.75, 5.5, 8.25, 11
    assert sample_indices(5, 32).tolist() == [0, 1, 2, 3, 4]
    assert sample_indices(5, None).tolist() == [0, 1, 2, 3, 4]
    assert sample_indices(0, 8).tolist() == []


def test_crop_geometry_x13() -> None:
    # box 100 x 100 at (100, 50): centre (150, 100), side 130, square from (85, 35)
    assert square_around((100, 50, 200, 150), 1.3) == pytest.approx((85.0, 35.0, 130.0))
    # non-square box 60 x 100: the side follows the longer edge
    assert square_around((100, 50, 160, 150), 1.3) == pytest.approx((65.0, 35.0, 130.0))
    m = box_matrix((100, 50, 200, 150), 1.3, 256)
    k = 256 / 130
    np.testing.assert_allclose(m, [[k, 0, -85 * k], [0, k, -35 * k]])
    pts = np.array([[150.0, 100.0], [85.0, 35.0], [215.0, 165.0], [100.0, 50.0]])
    np.testing.assert_allclose(
        apply_affine(m, pts), [[128, 128], [0, 0], [256, 256], [15 * k, 15 * k]], atol=1e-9
    )
    np.testing.assert_allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-9)
    # the image goes through the same map: a dot at the box centre lands at the crop centre
    img = np.zeros((300, 300, 3), np.uint8)
    img[98:103, 148:153] = 255
    crop = warp(img, m, 256)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert crop.shape == (256, 256, 3)
    assert abs(xs.mean() - 128) < 1.5 and abs(ys.mean() - 128) < 1.5


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    a = 1.7 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    dst = src @ a.T + [12.0, -7.0]
    np.testing.assert_allclose(similarity(src, dst), np.hstack([a, [[12.0], [-7.0]]]), atol=1e-9)


def test_largest_face_ties_go_to_score() -> None:
    from detect.data.preprocess.face_detection import Detection

    small = Detection((0, 0, 10, 10), 2.0)
    big_weak = Detection((0, 0, 20, 20), 0.1)
    big_strong = Detection((50, 50, 70, 70), 1.0)
    assert largest_face([small, big_weak, big_strong]) == big_strong
    assert largest_face([]) is None


# ---------------------------------------------------------------- the pipeline end to end


def test_face_found_in_every_frame(run1) -> None:
    _, out, summary = run1
    for rel, vid in ((REAL_REL, "000"), (FAKE_REL, "000_001")):
        state = _state(out, rel, vid)
        assert state["status"] == "ok"
        assert state["n_total"] == N_VIDEO_FRAMES
        assert state["sampled"] == EXPECTED_FRAMES
        assert state["no_face_frames"] == []
        assert sorted(int(n) for n in state["frames"]) == EXPECTED_FRAMES
        names = sorted(p.name for p in (out / "rgb" / "FaceForensics++" / rel / "frames" / vid).iterdir())
        assert names == [f"{i:03d}.png" for i in EXPECTED_FRAMES]
    assert summary["counts"]["frames_without_face"] == 0
    assert summary["counts"]["frames"] == 2 * NUM_FRAMES


def test_landmarks_fall_on_the_face(run1) -> None:
    _, out, _ = run1
    for rel, vid, phase in ((REAL_REL, "000", 0.0), (FAKE_REL, "000_001", 1.0)):
        state = _state(out, rel, vid)
        for name, rec in state["frames"].items():
            lm = np.load(out / "rgb" / "FaceForensics++" / rel / "landmarks" / vid / f"{name}.npy")
            assert lm.shape == (68, 2) and lm.dtype == np.int64
            inner = lm[17:]  # brows, nose, eyes, mouth; the jaw line may reach past the x1.3 crop
            assert (inner >= 0).all() and (inner < 256).all()
            assert (lm > -26).all() and (lm < 282).all()
            assert lm[36:48, 1].mean() < lm[27:36, 1].mean() < lm[48:68, 1].mean()  # eyes, nose, mouth
            assert np.linalg.norm(lm.mean(0) - 128) < 30  # the crop is centred on the face
            # back in frame pixels: inside the detected box, on the known face of the photo
            pts = apply_affine(invert_affine(np.array(rec["matrix"])), lm)
            x0, y0, x1, y1 = rec["box"]
            pad = 0.2 * (x1 - x0)
            assert (pts[:, 0] > x0 - pad).all() and (pts[:, 0] < x1 + pad).all()
            assert (pts[:, 1] > y0 - pad).all() and (pts[:, 1] < y1 + pad).all()
            to_frame = photo_to_frame(int(name), phase)
            centre = apply_affine(to_frame, FACE_CENTRE[None])[0]
            assert np.linalg.norm(pts.mean(0) - centre) < 8.0
            s = face_window(int(name), phase)[2]
            assert abs(pts[36:48, 1].mean() - apply_affine(to_frame, [[0, EYES_Y]])[0, 1]) < 8.0 / s
            assert abs(pts[48:68, 1].mean() - apply_affine(to_frame, [[0, MOUTH_Y]])[0, 1]) < 8.0 / s


def test_crops_and_masks_are_256(run1) -> None:
    _, out, _ = run1
    pngs = sorted((out / "rgb" / "FaceForensics++").rglob("frames/*/*.png"))
    assert len(pngs) == 2 * NUM_FRAMES
    for p in pngs:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape == (256, 256, 3)
    masks = sorted((out / "rgb" / "FaceForensics++" / FAKE_REL / "masks" / "000_001").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:03d}.png" for i in EXPECTED_FRAMES]
    for m in masks:
        mask = cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
        assert mask[118:138, 118:138].mean() == 255 and mask[:20, :20].max() == 0  # face centre, corner
    assert not (out / "rgb" / "FaceForensics++" / REAL_REL / "masks").exists()


def test_index_reads_back(run1) -> None:
    cfg, out, summary = run1
    assert summary["index"] == str(out / "dataset_json" / "FaceForensics++.json")
    spec = DatasetSpec.from_config(OmegaConf.to_container(cfg.dataset, resolve=True))
    assert spec.index == summary["index"]
    train = load_split(spec, "train")
    assert sorted(train.groupby("label_name")["video_id"].unique().map(list).to_dict().items()) == [
        ("FF-DF", ["000_001"]),
        ("FF-real", ["000"]),
    ]
    assert (train.groupby("video_id").size() == NUM_FRAMES).all()
    assert sorted(train["frame"].unique().tolist()) == EXPECTED_FRAMES
    fake = train[train["label_name"] == "FF-DF"]
    assert fake["mask_path"].notna().all() and (fake["label"] == 1).all()
    assert train[train["label_name"] == "FF-real"]["mask_path"].isna().all()
    assert all(os.path.isfile(p) for p in train["landmark_path"])
    assert len(load_split(spec, "val")) == 0 and len(load_split(spec, "test")) == 0
    # DeepfakeBench's per-manipulation file: {"FF-DF": {"FF-real": ..., "FF-DF": ...}}
    per = json.loads((out / "dataset_json" / "FF-DF.json").read_text())
    assert sorted(per["FF-DF"]) == ["FF-DF", "FF-real"]
    frames = per["FF-DF"]["FF-DF"]["train"]["c23"]["000_001"]["frames"]
    assert frames[0] == "FaceForensics++/manipulated_sequences/Deepfakes/c23/frames/000_001/000.png"


def test_failures_are_in_the_summary(run1) -> None:
    _, out, summary = run1
    c = summary["counts"]
    assert (c["videos"], c["indexed"], c["no_face"], c["unreadable"], c["errors"]) == (4, 2, 1, 1, 0)
    assert [Path(p).name for p in summary["no_face_videos"]] == ["001.mp4"]
    assert [Path(v["video"]).name for v in summary["unreadable_videos"]] == ["002.mp4"]
    assert "002.mp4" in summary["unreadable_videos"][0]["error"]
    on_disk = json.loads((out / SUMMARY_FILE).read_text())["FaceForensics++"]
    assert on_disk["no_face_videos"] == summary["no_face_videos"]
    assert on_disk["unreadable_videos"] == summary["unreadable_videos"]


def test_second_run_skips_finished_videos(run1, raw: Path, capsys: pytest.CaptureFixture) -> None:
    cfg, out, _ = run1
    png = out / "rgb" / "FaceForensics++" / REAL_REL / "frames" / "000" / "000.png"
    before = png.stat().st_mtime_ns
    summary = run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    c = summary["counts"]
    assert (c["resumed"], c["processed"]) == (3, 1)  # the unreadable video is tried again
    assert (c["indexed"], c["no_face"], c["unreadable"]) == (2, 1, 1)
    assert png.stat().st_mtime_ns == before
    assert "NO FACE" in capsys.readouterr().out
    # other settings: the finished videos no longer match and are redone
    summary = run_preprocess(
        OmegaConf.to_container(_cfg(raw, out, "num_frames=4", "workers=0"), resolve=True)
    )
    assert summary["counts"]["resumed"] == 0
    names = sorted(p.name for p in png.parent.iterdir())
    assert names == ["000.png", "003.png", "007.png", "011.png"]  # floor(linspace(0, 11, 4)); stale ones gone


# ---------------------------------------------------------------- errors and options


def test_clear_errors(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input_dir"):
        run_preprocess(OmegaConf.to_container(_cfg(tmp_path / "nope", tmp_path), resolve=True))
    missing = tmp_path / "shape_predictor_81_face_landmarks.dat"
    cfg = _cfg(raw, tmp_path, f"landmarks.predictor_path={missing}")
    with pytest.raises(FileNotFoundError, match=r"landmarks\.predictor_path"):
        run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    cfg = _cfg(raw, tmp_path, "splits_dir=null")
    with pytest.raises(lay.LayoutError, match="splits_dir"):
        run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    with pytest.raises(VideoReadError, match="002.mp4"):
        read_sampled(raw / "FaceForensics++" / "original_sequences/youtube/c23/videos/002.mp4", 8)
    with pytest.raises(FileNotFoundError, match=r"manipulations"):
        cfg = _cfg(raw, tmp_path, "dataset.manipulations=[DF,NT]")
        run_preprocess(OmegaConf.to_container(cfg, resolve=True))
    with pytest.raises(ValueError, match="compression"):
        cfg = _cfg(raw, tmp_path, "dataset.compression=null", "compressions=[c23,c40]")
        run_preprocess(OmegaConf.to_container(cfg, resolve=True))


def test_script_reports_a_missing_input_folder(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "preprocess.py"),
        "dataset=celebdf_v2",
        f"input_dir={tmp_path / 'missing'}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "input folder not found" in proc.stderr + proc.stdout


def test_celebdf_layout_and_splits(tmp_path: Path) -> None:
    root = tmp_path / "Celeb-DF-v2"
    for rel in (
        "Celeb-real/id0_0000.mp4",
        "Celeb-real/id1_0000.mp4",
        "Celeb-synthesis/id0_id1_0000.mp4",
        "Celeb-synthesis/id2_id3_0000.mp4",
        "YouTube-real/00000.mp4",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id2_id3_0000.mp4\n"
    )
    opts = lay.LayoutOptions(labels={"CelebDFv2_real": "real", "CelebDFv2_fake": "CDFv2"})
    layout = lay.discover("Celeb-DF-v2", root, opts)
    assert layout.copy_files == {"List_of_testing_videos.txt": str(root / "List_of_testing_videos.txt")}
    inside, outside, mode = lay.assign_splits(layout, "auto")
    got = {e.video_id: (e.rel_dir, e.label_name, e.official_split) for e in inside}
    assert mode == "official" and outside == []
    assert got == {
        "id0_0000": ("Celeb-real", "CelebDFv2_real", "train"),
        "id1_0000": ("Celeb-real", "CelebDFv2_real", "train"),
        "id0_id1_0000": ("Celeb-synthesis", "CelebDFv2_fake", "train"),
        "id2_id3_0000": ("Celeb-synthesis", "CelebDFv2_fake", "test"),
        "00000": ("YouTube-real", "CelebDFv2_real", "test"),
    }
    inside, _, _ = lay.assign_splits(layout, "all_test")
    assert {e.official_split for e in inside} == {"test"}
    # ratio: seeded, and videos sharing an identity (id0, id1 through the fake id0_id1) stay together
    a, _, _ = lay.assign_splits(layout, "ratio", (0.5, 0.0, 0.5), seed=3)
    b, _, _ = lay.assign_splits(layout, "ratio", (0.5, 0.0, 0.5), seed=3)
    split = {e.video_id: e.official_split for e in a}
    assert split == {e.video_id: e.official_split for e in b}
    assert split["id0_0000"] == split["id1_0000"] == split["id0_id1_0000"]
    with pytest.raises(lay.LayoutError, match="not declared"):
        lay.discover("Celeb-DF-v2", root, lay.LayoutOptions(labels={"CelebDFv2_real": "real"}))


def test_ff_official_split_file(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text('[["071", "054"]]')
    (tmp_path / "val.json").write_text('[["001", "002"]]')
    (tmp_path / "test.json").write_text("[]")
    got = lay.read_ff_splits(tmp_path)
    assert got == {
        "071": "train", "054": "train", "071_054": "train", "054_071": "train",
        "001": "val", "002": "val", "001_002": "val", "002_001": "val",
    }  # fmt: skip


def test_user_supplied_predictor_sets_the_landmark_count() -> None:
    img = skimage.data.astronaut()
    det = largest_face(build_face_models(FaceModelConfig()).detector.detect(img))
    five = LandmarkPredictor(models_dir() / "shape_predictor_5_face_landmarks.dat")
    assert five.num_points == 5
    pts = five.predict(img, det.box)
    assert pts.shape == (5, 2) and np.linalg.norm(pts.mean(0) - FACE_CENTRE) < 25
    faces = FaceModelConfig(predictor_path=str(models_dir() / "shape_predictor_5_face_landmarks.dat"))
    with pytest.raises(ValueError, match="68- or 81-point"):
        Settings(faces=faces, crop_mode="align").validate()


def test_opencv_backend_reads_the_same_frames(raw: Path) -> None:
    video = raw / "FaceForensics++" / "original_sequences/youtube/c23/videos/000.mp4"
    a, b = read_sampled(video, 5, "pyav"), read_sampled(video, 5, "opencv")
    assert a.n_total == b.n_total == N_VIDEO_FRAMES and sorted(a.frames) == sorted(b.frames) == [
        0,
        2,
        5,
        8,
        11,
    ]
    for i in a.frames:
        assert np.abs(a.frames[i].astype(int) - b.frames[i]).mean() < 3  # same frame, RGB both


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("facenet_pytorch") is None,
    reason="facenet-pytorch not installed (pip install --no-deps facenet-pytorch)",
)
def test_mtcnn_detector_finds_the_astronaut() -> None:
    det = largest_face(MtcnnDetector().detect(skimage.data.astronaut()))
    assert det is not None
    centre = np.array([(det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2])
    assert np.linalg.norm(centre - FACE_CENTRE) < 20


def test_mtcnn_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "facenet_pytorch" else real(n, *a)
    )
    with pytest.raises(ImportError, match="pip install --no-deps facenet-pytorch"):
        FaceModelConfig(detector="mtcnn").check()
