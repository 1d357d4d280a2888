"""Clips through the data path (issue 18, item 1): clips of consecutive frames from the sample table and the
index, one augmentation draw per clip, clip predictions and their video-level scores."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from detect.data.clip_view import ClipDataset, consecutive_windows, table_clips
from detect.data.index import DatasetSpec, IndexError_, frames_of_clips, load_split, write_index
from detect.data.sample_table import COLUMNS
from detect.data.transforms import Pipeline
from detect.engine.clip_scoring import metrics_for, predict_for_method
from detect.engine.runtime import Runtime
from detect.evaluation.clip_metrics import clip_video_scores, compute_clip_metrics

MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def _table(tmp: Path, videos: dict[str, tuple[int, list[int]]], image=None) -> pd.DataFrame:
    """A sample table: video key -> (label, frame numbers); each frame a small PNG (``image`` or its
    frame number as grey level)."""
    rows = []
    for key, (label, frames) in videos.items():
        folder = tmp / key
        folder.mkdir(parents=True, exist_ok=True)
        for f in frames:
            path = folder / f"{f:03d}.png"
            img = image if image is not None else np.full((16, 16, 3), f % 256, np.uint8)
            cv2.imwrite(str(path), img)
            rows.append(
                {
                    "path": str(path),
                    "label": label,
                    "label_name": "fake" if label else "real",
                    "dataset": "toy",
                    "domain": "DF" if label else "real",
                    "compression": "-",
                    "split": "test",
                    "video": f"toy/{key}",
                    "video_id": key,
                    "source_video": f"toy/{key}",
                    "frame": f,
                    "landmark_path": "",
                    "mask_path": None,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_windows_cut_runs_of_consecutive_frames() -> None:
    frames = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 22, 23, 40])
    got = [frames[w].tolist() for w in consecutive_windows(frames, 4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [20, 21, 22, 23]]
    with pytest.raises(ValueError, match="sorted"):
        consecutive_windows(np.array([3, 1, 2]), 2)


def test_a_clip_is_clip_len_consecutive_frames_of_one_video(tmp_path: Path) -> None:
    # shuffled rows, two videos interleaved, a gap in each: clips never span a gap or two videos
    table = _table(tmp_path, {"a": (0, [0, 1, 2, 3, 4, 5, 9, 10, 11]), "b": (1, [5, 6, 7, 8, 20, 21])})
    table = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    clips = table_clips(table, 3)
    assert len(clips) == 4  # a: 0-2, 3-5, 9-11; b: 5-7
    for rows in clips:
        sub = table.iloc[rows]
        assert len(sub) == 3 and sub["video"].nunique() == 1 and sub["label"].nunique() == 1
        assert np.all(np.diff(sub["frame"].to_numpy()) == 1)
    # clips_per_video: spread evenly over a video's windows
    picked = [table.iloc[r]["frame"].tolist() for r in table_clips(table, 3, clips_per_video=2)]
    assert [0, 1, 2] in picked and [9, 10, 11] in picked and [3, 4, 5] not in picked


def test_clip_items_are_T_C_H_W_and_read_the_clip(tmp_path: Path) -> None:
    table = _table(tmp_path, {"a": (1, list(range(10)))})
    ds = ClipDataset(table, Pipeline(8, MEAN, STD), clip_len=5, train=False)
    assert len(ds) == 2
    item = ds[1]
    assert item["clip"].shape == (5, 3, 8, 8) and item["label"].item() == 1.0
    assert item["clip_index"] == 1 and item["indices"].tolist() == [5, 6, 7, 8, 9]
    # frame f is stored as grey level f: normalised (f/255 - 0.5) / 0.5, in order
    levels = item["clip"][:, 0, 0, 0]
    assert torch.allclose(levels, torch.tensor([(f / 255 - 0.5) / 0.5 for f in range(5, 10)]), atol=1e-5)
    with pytest.raises(ValueError, match="consecutive frames"):
        ClipDataset(table, Pipeline(8, MEAN, STD), clip_len=11, train=False)


def test_clip_augmentation_is_one_draw_for_the_clip(tmp_path: Path) -> None:
    # every frame of every clip is the same asymmetric image: a shared draw leaves the clip's frames equal;
    # a draw per frame would differ (random flips and shifts); 12 frames exceed the pipeline's group of 8
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:12, 2:20] = (255, 128, 0)
    table = _table(tmp_path, {f"v{k}": (k % 2, list(range(12))) for k in range(6)}, image=img)
    augment = [
        {"_target_": "albumentations.HorizontalFlip", "p": 0.5},
        {"_target_": "albumentations.Affine", "translate_px": [-6, 6], "p": 1.0},
    ]
    ds = ClipDataset(table, Pipeline(32, MEAN, STD, augment=augment), clip_len=12, train=True)
    ds.pipeline.set_seed(3)
    firsts = []
    for i in range(len(ds)):
        clip = ds[i]["clip"]
        assert clip.shape == (12, 3, 32, 32)
        assert torch.equal(clip, clip[:1].expand_as(clip)), "frames of one clip were augmented differently"
        firsts.append(clip[0])
    assert any(not torch.equal(firsts[0], f) for f in firsts[1:]), "the augmentation never drew differently"


def test_video_auc_from_clips_by_hand() -> None:
    # clip probabilities of 5 videos; a video's score is the mean of its clips
    clips = {
        "real/a": (0, [0.125, 0.5]),
        "real/b": (0, [0.5, 0.75, 1.0]),
        "real/c": (0, [0.25]),
        "fake/d": (1, [0.875, 0.375]),
        "fake/e": (1, [0.625, 0.875]),
    }
    preds = pd.DataFrame(
        [{"video": v, "label": y, "prob": p, "n_frames": 8} for v, (y, ps) in clips.items() for p in ps]
    )
    means = {v: float(np.mean(ps)) for v, (_, ps) in clips.items()}  # a .3125, b .75, c .25, d .625, e .75
    reals = [means[v] for v, (y, _) in clips.items() if y == 0]
    fakes = [means[v] for v, (y, _) in clips.items() if y == 1]
    # AUC = P(fake > real) + 0.5 P(tie): d beats a, c; e beats a, c and ties b -> (2 + 2.5) / 6
    hand = sum((f > r) + 0.5 * (f == r) for f in fakes for r in reals) / (len(fakes) * len(reals))
    assert hand == pytest.approx(4.5 / 6)
    per_video = clip_video_scores(preds).set_index("video")
    assert per_video["prob"].to_dict() == pytest.approx(means)
    assert per_video["n_clips"].to_dict() == {v: len(ps) for v, (_, ps) in clips.items()}
    m = compute_clip_metrics(preds)
    assert m["video_auc"] == pytest.approx(hand)
    assert m["n_videos"] == 5 and m["n_clips"] == 10 and m["n_frames"] == 80
    assert metrics_for(preds) == m


class _MeanClip(torch.nn.Module):
    """A clip 'detector': P(fake) = sigmoid of the clip's mean pixel; records the clip shapes it saw."""

    clip_len = 4
    eval_clips_per_video = None

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple] = []

    def predict(self, clips: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(clips.shape))
        return torch.sigmoid(clips.mean(dim=(1, 2, 3, 4)))


def test_engine_scores_clip_methods_per_clip_and_video(tmp_path: Path) -> None:
    table = _table(tmp_path, {"r": (0, list(range(8))), "f": (1, list(range(100, 112)))})
    method = _MeanClip()
    rt = Runtime(torch.device("cpu"), "fp32")
    preds = predict_for_method(method, table, Pipeline(8, MEAN, STD), rt, 2, 0, None, None, progress=False)
    assert all(s[1:] == (4, 3, 8, 8) for s in method.shapes)
    assert len(preds) == 5 and preds["n_frames"].eq(4).all()  # 2 clips of r, 3 of f
    assert preds.groupby("video").size().to_dict() == {"toy/r": 2, "toy/f": 3}
    assert preds["frame"].tolist() == [0, 4, 100, 104, 108]  # each clip's first frame
    # a clip's probability is the method's on the clip's frames (grey levels f)
    first = (np.arange(4) / 255 - 0.5) / 0.5
    assert preds["prob"].iloc[0] == pytest.approx(1 / (1 + np.exp(-first.mean())), abs=1e-5)
    m = metrics_for(preds)
    assert m["video_auc"] == 1.0 and m["n_clips"] == 5 and m["n_frames"] == 20


def test_index_records_clips_and_frame_budget_keeps_them_whole(tmp_path: Path) -> None:
    root = tmp_path / "rgb"
    frames = [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]
    paths = []
    for f in frames:
        p = root / "toy" / "frames" / "v" / f"{f:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8))
        paths.append(str(p))
    clips = [frames[0:4], frames[4:8], frames[8:12]]
    index = tmp_path / "toy.json"
    video = {"label_name": "toy_real", "split": "test", "compression": None, "video_id": "v"}
    write_index(index, "toy", [{**video, "frames": paths, "clips": clips}], root)
    assert json.loads(index.read_text())["toy"]["toy_real"]["test"]["v"]["clips"] == clips
    spec = DatasetSpec.from_config(
        {
            "name": "toy",
            "index": str(index),
            "root": str(root),
            "labels": {"toy_real": {"label": 0, "domain": "real"}},
        }
    )
    # 5 frames asked: ceil(5 / 4) = 2 whole clips, the first and the last
    assert frames_of_clips(clips, 5) == {0, 1, 2, 3, 20, 21, 22, 23}
    table = load_split(spec, "test", frames_per_video=5)
    assert table["frame"].tolist() == [0, 1, 2, 3, 20, 21, 22, 23]
    assert [table.iloc[r]["frame"].tolist() for r in table_clips(table, 4)] == [clips[0], clips[2]]
    assert len(load_split(spec, "test", frames_per_video=None)) == 12
    # a recorded clip that is not consecutive, or names a frame not stored, is refused with the key named
    for bad, msg in (([[0, 1, 3]], "consecutive"), ([[3, 4]], "not in its 'frames'")):
        write_index(index, "toy", [{**video, "frames": paths, "clips": bad}], root)
        with pytest.raises(IndexError_, match=msg):
            load_split(spec, "test")


def test_mouth_clips_cut_one_square_per_clip_around_the_mean_mouth(tmp_path: Path) -> None:
    # frame pixels encode their own coordinates (R = x, G = y); the mouth moves 2 px per frame
    yy, xx = np.mgrid[0:64, 0:64]
    coords = np.stack([xx * 3, yy * 3, np.zeros_like(xx)], -1).astype(np.uint8)
    table = _table(tmp_path, {"a": (0, [0, 1, 2, 3])}, image=cv2.cvtColor(coords, cv2.COLOR_RGB2BGR))
    centres, paths = [], []
    for k in range(len(table)):
        lm = np.zeros((68, 2), np.float32)
        centre = np.array([40.0 + 2 * k, 30.0 + k])
        lm[48:68] = centre + np.random.default_rng(k).normal(0, 3, (20, 2))
        lm[48:68] += centre - lm[48:68].mean(0)  # the mouth points' centroid is exactly ``centre``
        centres.append(centre)
        p = tmp_path / f"lm{k}.npy"
        np.save(p, lm)
        paths.append(str(p))
    table["landmark_path"] = paths
    mean = np.mean(centres, axis=0)  # (43, 31.5)
    x0, y0 = np.rint(mean - 8).astype(int)  # a 16-px square: corner (35, 24)
    ds = ClipDataset(
        table, Pipeline(16, [0, 0, 0], [1 / 255] * 3), clip_len=4, train=False, region="mouth", mouth_size=16
    )
    clip = ds[0]["clip"]  # normalised to raw 0-255 values by mean 0, std 1/255
    assert clip.shape == (4, 3, 16, 16)
    for t in range(4):  # the same window in every frame: no jitter
        assert clip[t, 0, 0, 0].item() == pytest.approx(3 * x0) and clip[t, 1, 0, 0].item() == pytest.approx(
            3 * y0
        )
        assert clip[t, 0, 0, 15].item() == pytest.approx(3 * (x0 + 15))
    # near the border the square is padded black
    ds = ClipDataset(
        table, Pipeline(48, [0, 0, 0], [1 / 255] * 3), clip_len=4, train=False, region="mouth", mouth_size=48
    )
    clip = ds[0]["clip"]
    x0 = int(np.rint(mean[0] - 24))  # 19: columns past x = 63 are outside the frame
    assert (
        clip[0, 0, 10, 63 - x0].item() == pytest.approx(3 * 63) and clip[0, :, 10, 64 - x0 :].abs().max() == 0
    )
    with pytest.raises(ValueError, match="region"):
        ClipDataset(table, Pipeline(16, MEAN, STD), clip_len=4, train=False, region="lips")


def test_dfb_rule_reads_clips_over_the_stored_order(tmp_path: Path) -> None:
    # stored frames evenly spaced over the video (not consecutive): DeepfakeBench's clip_size clips anyway
    table = _table(
        tmp_path,
        {
            "a": (0, [9 * i for i in range(32)]),
            "b": (1, [5 * i for i in range(20)]),
            "c": (1, list(range(7))),
        },
    )
    assert table_clips(table, 8) == []  # no consecutive frame numbers
    got = {table.iloc[r[0]]["video"]: [] for r in table_clips(table, 8, rule="dfb")}
    for r in table_clips(table, 8, rule="dfb"):
        pos = table.iloc[r]["frame"].to_numpy()
        got[table.iloc[r[0]]["video"]].append(int(pos[0]))
        assert len(r) == 8 and table.iloc[r]["video"].nunique() == 1
    # a: 32 // 8 = 4 clips, step (32 - 8) // 3 = 8 -> stored positions 0, 8, 16, 24 (frames 0, 72, 144, 216)
    # b: 2 clips, step (20 - 8) // 1 = 12 -> positions 0, 12 (frames 0, 60); c: 7 < 8 frames, no clip
    assert got == {"toy/a": [0, 72, 144, 216], "toy/b": [0, 60]}
    # training: random starts in [i * step, min((i + 1) * step, n - 8 + 1)), redrawn at every reseed
    ds = ClipDataset(table, Pipeline(8, MEAN, STD), clip_len=8, train=True, rule="dfb", seed=0)
    draws = []
    for seed in range(6):
        ds.reseed(seed)
        assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 0, 0, 1, 1]  # one label per clip
        starts = [int(c[0]) for c in ds.clips]  # rows: the 32 of a first, then the 20 of b
        a = [s for s in starts if s < 32]
        b = [s - 32 for s in starts if s >= 32]
        assert all(8 * i <= s < 8 * (i + 1) for i, s in enumerate(a)) and b[0] < 12 and b[1] == 12
        draws.append(tuple(starts))
    assert len(set(draws)) > 1


@pytest.mark.e2e
def test_a_clip_method_trains_validates_and_tests_on_clips(ff_fixture, tmp_path: Path) -> None:
    from helpers import engine_cfg, fit_trainer

    extra = ["method._target_=clip_probe.ClipProbe", "~method.loss", "~method.focal_gamma", "~method.dropout"]
    tr, res = fit_trainer(engine_cfg(ff_fixture, tmp_path, [*extra, "trainer.epochs=1"]), tmp_path / "run")
    # training items were clips (4 stored frames per video: one DeepfakeBench clip each)
    assert len(tr.train_dataset) == tr.train_dataset.table["video"].nunique()
    assert "val_frame_auc" in res["val_history"][0]
    m = res["metrics"]["FF++"]
    # 10 test frames per video: two clips of 4 each (starts 0 and 6), scored per clip, averaged per video
    assert m["n_clips"] == 2 * m["n_videos"] and m["n_frames"] == 4 * m["n_clips"]
    assert 0.0 <= m["video_auc"] <= 1.0
