"""Clips of consecutive frames as ``(T, C, H, W)`` tensors, the data view of video detectors (issue 18).

A clip is ``clip_len`` frames of one video (the sample table's ``video`` key: one face track, one label,
one identity) whose frame numbers are consecutive. Clips come from any table whose videos hold runs of
consecutive frames: preprocessing with ``clips=K clip_len=L`` stores such runs (and records them in the
index, whose frame selection keeps them whole), and so does any dataset storing consecutive frames.
Each run is cut into non-overlapping windows of ``clip_len`` from its first frame; ``clips_per_video``
of a video's windows are taken spread evenly (all when None).

``rule="dfb"`` reads clips as DeepfakeBench's video mode does (``training/dataset/abstract_dataset.py``,
``clip_size``): runs of ``clip_len`` frames consecutive in the video's STORED order (with its 32 evenly
spaced frames these are not consecutive in the video), ``n // clip_len`` clips per video of ``n`` stored
frames, the i-th starting at ``i * step`` with ``step = (n - clip_len) // (clips - 1)`` for evaluation and
at a random position in ``[i * step, min((i + 1) * step, n - clip_len + 1))`` for training (redrawn at
every reseed, i.e. every epoch); one clip at 0 (evaluation) or anywhere (training) when only one fits.

Every clip gets ONE augmentation draw for all its frames (a per-frame draw would add flicker that is no
trace of any manipulation), through the pipeline's shared-draw group transform.

``region="mouth"`` gives mouth clips for lip-based detectors: every frame of a clip is cut to one square
of ``mouth_size`` pixels (of the stored face crop) centred on the mouth, the mean over the clip's frames of
the 20 mouth landmarks (68-point scheme, points 48-67). One square per clip, as the face crop is one box
per clip, so the mouth crop does not jitter either; parts outside the face crop are black.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.datasets import sample_key
from detect.data.images import read_landmarks, read_rgb
from detect.data.index import evenly_spaced
from detect.data.transforms import Pipeline

Perturbation = Callable[[np.ndarray, int], np.ndarray]
RULES = ("consecutive", "dfb")
REGIONS = ("face", "mouth")
MOUTH_POINTS = slice(48, 68)  # dlib's 68-point scheme (the 81-point one shares its first 68)
OUTER_EYE_CORNERS = (36, 45)


def consecutive_windows(frames: np.ndarray, clip_len: int) -> list[np.ndarray]:
    """Positions (into ``frames``, sorted ascending) of non-overlapping windows of ``clip_len`` consecutive
    frame numbers, cut from the start of each run of consecutive numbers."""
    frames = np.asarray(frames, dtype=np.int64)
    if clip_len < 1:
        raise ValueError(f"clip_len={clip_len}: must be at least 1")
    if len(frames) and np.any(np.diff(frames) <= 0):
        raise ValueError("frame numbers must be sorted and unique within a video")
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    out = []
    for run in np.split(np.arange(len(frames)), breaks):
        for k in range(len(run) // clip_len):
            out.append(run[k * clip_len : (k + 1) * clip_len])
    return out


def dfb_clip_starts(n: int, clip_len: int, rng: np.random.Generator | None = None) -> list[int]:
    """DeepfakeBench's video-mode clip starts over ``n`` stored frames (positions in stored order);
    ``rng``: training's random starts, None: evaluation's fixed ones. Empty when ``n < clip_len``."""
    if n < clip_len:
        return []
    clips = n // clip_len
    if clips == 1:
        return [0 if rng is None else int(rng.integers(0, n - clip_len + 1))]
    step = (n - clip_len) // (clips - 1)
    if rng is None:
        return [i * step for i in range(clips)]
    return [int(rng.integers(i * step, min((i + 1) * step, n - clip_len + 1))) for i in range(clips)]


def table_clips(
    table: pd.DataFrame,
    clip_len: int,
    clips_per_video: int | None = None,
    rule: str = "consecutive",
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Rows of ``table`` (positional) forming clips, in table order of the videos. ``consecutive``: per
    video, ``clips_per_video`` windows of ``clip_len`` consecutive frame numbers spread evenly (all when
    None); ``dfb``: DeepfakeBench's clips over the stored order (:func:`dfb_clip_starts`, ``rng`` for
    training's random starts; ``clips_per_video`` then takes that many of them spread evenly)."""
    if rule not in RULES:
        raise ValueError(f"clip rule {rule!r}: use one of {RULES}")
    table = table.reset_index(drop=True)
    out: list[np.ndarray] = []
    for _, grp in table.groupby("video", sort=False):
        grp = grp.sort_values("frame", kind="stable")
        if grp["label"].nunique() > 1:
            raise ValueError(
                f"video {grp['video'].iloc[0]!r} holds frames of both labels; video keys must be unique"
            )
        rows = grp.index.to_numpy()
        if rule == "dfb":
            windows = [np.arange(s, s + clip_len) for s in dfb_clip_starts(len(rows), clip_len, rng)]
        else:
            windows = consecutive_windows(grp["frame"].to_numpy(), clip_len)
        for k in evenly_spaced(len(windows), clips_per_video):
            out.append(rows[windows[int(k)]])
    return out


def mouth_box(
    landmarks: list[np.ndarray], size: int | None, eye_ratio: float | None = None
) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square centred on the clip's mean mouth position: ``side`` = ``size``, or
    ``eye_ratio`` x the clip's mean outer-eye-corner distance (at least 1 px) when ``size`` is None."""
    pts = [np.asarray(lm, np.float64) for lm in landmarks]
    centre = np.mean([p[MOUTH_POINTS].mean(0) for p in pts], axis=0)
    if size is None:
        eyes = np.mean([np.linalg.norm(p[OUTER_EYE_CORNERS[1]] - p[OUTER_EYE_CORNERS[0]]) for p in pts])
        side = max(int(round(float(eye_ratio) * float(eyes))), 1)
    else:
        side = int(size)
    x0, y0 = np.rint(centre - side / 2.0).astype(int)
    return int(x0), int(y0), side


def cut_square(image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` window of ``image`` at ``(x0, y0)``, black where it leaves the image."""
    out = np.zeros((size, size, *image.shape[2:]), image.dtype)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def clip_pipeline(pipeline: Pipeline, clip_len: int) -> Pipeline:
    """``pipeline`` itself when one shared draw covers ``clip_len`` images, else the same configuration
    built for groups of ``clip_len`` images."""
    if clip_len <= pipeline.max_group:
        return pipeline
    spec = pipeline.spec
    return Pipeline(
        size=spec["size"],
        mean=spec["mean"],
        std=spec["std"],
        augment=spec["augment"],
        crop=spec["crop"],
        max_group=int(clip_len),
    )


class ClipDataset(Dataset):
    """Clips: ``{"clip": [T, 3, H, W], "label", "clip_index": the clip's number, "indices": [T] table rows}``
    (``indices`` as the group views name table rows, so the engine's non-finite-loss report lists the
    clip's frames); ``labels``: one label per clip (class-balanced sampling).

    ``train``: one augmentation draw shared by the clip's frames; ``perturbation``: a test-time
    perturbation applied to every frame of a clip with the clip's first frame's key (one draw per clip);
    ``region``: ``face`` (the stored crop) or ``mouth`` (one square per clip around the mouth, from the
    frames' landmark files: ``mouth_size`` pixels, or, with ``mouth_size=None``, ``eye_ratio`` x the clip's
    mean outer-eye-corner distance; :func:`mouth_box`).
    """

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        clip_len: int,
        train: bool,
        clips_per_video: int | None = None,
        perturbation: Perturbation | None = None,
        region: str = "face",
        mouth_size: int | None = 96,
        rule: str = "consecutive",
        seed: int = 0,
        eye_ratio: float | None = None,
    ) -> None:
        if region not in REGIONS:
            raise ValueError(f"region={region!r}: use one of {REGIONS}")
        if mouth_size is not None and int(mouth_size) < 1:
            raise ValueError(f"mouth_size={mouth_size}: must be at least 1 (null: eye_ratio x eye distance)")
        if eye_ratio is not None and not float(eye_ratio) > 0:
            raise ValueError(f"eye_ratio={eye_ratio}: must be positive")
        if mouth_size is None and eye_ratio is None:
            raise ValueError(
                "mouth_size=None needs an eye_ratio (the mouth square's side over the eye distance)"
            )
        self.region = region
        self.mouth_size = None if mouth_size is None else int(mouth_size)
        self.eye_ratio = None if eye_ratio is None else float(eye_ratio)
        self.table = table.reset_index(drop=True)
        self.clip_len, self.clips_per_video, self.rule = int(clip_len), clips_per_video, rule
        self.random_starts = rule == "dfb" and train
        self.clips = table_clips(
            self.table,
            self.clip_len,
            clips_per_video,
            rule,
            np.random.default_rng(seed) if self.random_starts else None,
        )
        if not self.clips:
            runs = self.table.groupby("video").size()
            raise ValueError(
                f"no video holds {self.clip_len} consecutive frames ({len(runs)} videos, at most "
                f"{int(runs.max()) if len(runs) else 0} frames each): preprocess with clips=K clip_len="
                f"{self.clip_len}, or lower the method's clip_len"
            )
        self.pipeline = clip_pipeline(pipeline, self.clip_len)
        self.train, self.perturbation = train, perturbation
        self.paths = self.table["path"].tolist()
        self.frame_labels = self.table["label"].to_numpy()

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def labels(self) -> np.ndarray:
        """One label per clip (its video's)."""
        return self.frame_labels[[int(c[0]) for c in self.clips]]

    def reseed(self, seed: int) -> None:
        """Seed the augmentation draws and, for ``rule=dfb`` training, redraw the clips' random starts
        (the number of clips per video does not change)."""
        self.pipeline.set_seed(seed)
        if self.random_starts:
            rng = np.random.default_rng(int(seed) % 2**32)
            self.clips = table_clips(self.table, self.clip_len, self.clips_per_video, self.rule, rng)

    def clip_table(self) -> pd.DataFrame:
        """One row per clip: the first frame's row of the table, plus ``n_frames``."""
        first = self.table.iloc[[int(c[0]) for c in self.clips]].reset_index(drop=True)
        first["n_frames"] = self.clip_len
        return first

    def load(self, i: int) -> list[np.ndarray]:
        """The raw frames of clip ``i`` (perturbed with one draw, when configured)."""
        rows = self.clips[i]
        frames = [read_rgb(self.paths[int(r)]) for r in rows]
        if self.perturbation is not None:
            key = sample_key(self.paths[int(rows[0])])
            frames = [self.perturbation(f, key) for f in frames]
        if self.region == "mouth":
            lms = [read_landmarks(str(self.table.at[int(r), "landmark_path"])) for r in rows]
            x0, y0, side = mouth_box(lms, self.mouth_size, self.eye_ratio)
            frames = [cut_square(f, x0, y0, side) for f in frames]
        return frames

    def __getitem__(self, i: int) -> dict:
        rows = self.clips[i]
        frames, _ = self.pipeline.apply_shared(self.load(i), augment=self.train)
        return {
            "clip": torch.stack(frames),
            "label": torch.tensor(self.frame_labels[int(rows[0])], dtype=torch.float32),
            "clip_index": i,
            "indices": torch.as_tensor(rows),
        }
