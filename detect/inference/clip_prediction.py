"""``predict.py`` for clip detectors (a method declaring ``clip_len``, e.g. FTCN): every video is scored
per clip of ``clip_len`` consecutive frames (:mod:`detect.inference.clip_sampling`), and its score is the
mean of its clips' P(fake), as evaluation scores videos (:mod:`detect.engine.clip_scoring`).

``predictions.csv`` then has one row per clip: ``path``, ``frame`` (the clip's first frame), ``n_frames``
(frames in the clip), ``face`` (0: the tracked face), ``x0, y0, x1, y1`` (the union of the tracked
face's boxes, the one box every frame of the clip is cut around) and ``score``. ``videos.csv``: ``path``,
``kind``, ``score`` (mean of the clip scores), ``n_frames`` (frames in scored clips), ``n_clips`` (scored),
``n_clips_planned``, ``clip_len``, ``aggregate`` (``mean_of_clips``). Images (reason ``image``),
videos shorter than one clip (``too_short``), undecodable files (``unreadable``) and videos with no clip
whose every frame shows the face (``no_face``) are listed in ``failures.csv``. A method defining
``clip_region_crops(crops, landmarks)`` (LipForensics: the mouth squares) is given its region of each
clip's crops, located by the landmarks mapped into the crop (``faces=largest`` only).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm import tqdm

from detect.data.preprocess.face_detection import build_face_models
from detect.engine.clip_scoring import clip_len_of
from detect.inference.clip_sampling import clips_of, sample_clips
from detect.inference.face_sampling import UnreadableInput
from detect.inference.face_scoring import BatchScorer
from detect.inference.load import LoadedDetector
from detect.inference.predict_result import FAILURE_COLUMNS, PredictResult, face_models_config
from detect.inference.sources import Source

CLIP_COLUMNS = ["path", "frame", "n_frames", "face", "x0", "y0", "x1", "y1", "score"]
CLIP_VIDEO_COLUMNS = [
    "path",
    "kind",
    "score",
    "n_frames",
    "n_clips",
    "n_clips_planned",
    "clip_len",
    "aggregate",
]
CLIP_AGGREGATE = "mean_of_clips"


def predict_clip_sources(
    detector: LoadedDetector,
    sources: list[Source],
    cfg: DictConfig,
    runtime,
    visualize_dir: Path | None = None,
) -> PredictResult:
    """Sample, track, crop and score the clips of every video; failures are collected, never raised."""
    clip_len = clip_len_of(detector.method)
    if visualize_dir is not None or bool(cfg.get("visualize_cam", False)):
        raise ValueError(
            f"visualize/visualize_cam draw per-frame scores; {type(detector.method).__name__} scores clips "
            "of consecutive frames: run without visualize=true (the clip rows are in predictions.csv)"
        )
    mode = str(cfg.faces)
    models = None if mode == "crops" else build_face_models(face_models_config(cfg.detector))
    scorer = BatchScorer(detector.method, detector.pipeline, runtime, int(cfg.batch_size))
    cfg_clips = cfg.get("clips")
    method_clips = getattr(detector.method, "eval_clips_per_video", None)
    region = getattr(detector.method, "clip_region_crops", None)  # (crops, landmarks) -> the method's input
    if region is not None and mode == "crops":
        raise ValueError(
            f"{type(detector.method).__name__} cuts its input from the face's landmarks (e.g. the mouth), "
            "which faces=crops does not locate: run with faces=largest"
        )
    rows: list[dict] = []
    per_input: list[tuple[Source, list[dict], int]] = []
    failures: list[dict] = []
    t0 = time.perf_counter()
    t_faces = 0.0
    for source in tqdm(sources, desc="predict", disable=not cfg.progress):
        t = time.perf_counter()
        try:
            sampled = sample_clips(source, clip_len, cfg_clips, method_clips, str(cfg.video_backend))
        except UnreadableInput as err:
            reason = getattr(err, "reason", "unreadable")  # image | too_short | unreadable
            failures.append({"path": source.path, "reason": reason, "detail": str(err)})
            continue
        mine: list[dict] = []
        for clip in clips_of(sampled, mode, detector.crop, models):
            x0, y0, x1, y1 = clip.box
            row = {"path": source.path, "frame": clip.start, "n_frames": len(clip.frames), "face": 0}
            row.update({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "score": float("nan")})
            rows.append(row)
            mine.append(row)
            crops = clip.crops if region is None else region(clip.crops, clip.landmarks)
            scorer.add_clip(crops, lambda p, row=row: row.__setitem__("score", p))
        t_faces += time.perf_counter() - t
        if not mine:
            detail = (
                f"none of {len(sampled.planned)} clip(s) of {clip_len} frames shows a face in every frame"
            )
            failures.append({"path": source.path, "reason": "no_face", "detail": detail})
            continue
        per_input.append((source, mine, len(sampled.planned)))
    scorer.flush()
    wall = time.perf_counter() - t0
    videos = [
        {
            "path": source.path,
            "kind": source.kind,
            "score": float(np.mean([r["score"] for r in mine])),
            "n_frames": int(sum(r["n_frames"] for r in mine)),
            "n_clips": len(mine),
            "n_clips_planned": planned,
            "clip_len": clip_len,
            "aggregate": CLIP_AGGREGATE,
        }
        for source, mine, planned in per_input
    ]
    return PredictResult(
        pd.DataFrame(rows, columns=CLIP_COLUMNS),
        pd.DataFrame(videos, columns=CLIP_VIDEO_COLUMNS),
        pd.DataFrame(failures, columns=FAILURE_COLUMNS),
        {"wall_s": wall, "clips_s": t_faces, "n_clips": len(rows)},
    )
