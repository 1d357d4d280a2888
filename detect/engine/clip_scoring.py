"""Scoring clip detectors: per-clip predictions over a table's clips, and the dispatch the engine's
validation and test scoring use (clip methods score clips, every other method frames).

A method is a clip method when it declares ``clip_len`` (an int: frames per clip, e.g. FTCN's 32) and
takes ``predict(clips [B, T, C, H, W]) -> P(fake) [B]``; ``eval_clips_per_video`` (None: every clip the
stored frames hold) sets how many clips of each video are scored, spread evenly over the video;
``clip_rule`` (default ``consecutive``; ``dfb``: DeepfakeBench's clips over the stored order) how clips are
cut (:mod:`detect.data.clip_view`). A method defining ``build_eval_clip_dataset(table, pipeline,
perturbation)`` builds its own evaluation clips (LipForensics: mouth clips) with those same settings.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from detect.data.clip_view import ClipDataset
from detect.data.transforms import Pipeline
from detect.engine.predict_loop import PREDICTION_COLUMNS, map_dataset, predict_table
from detect.engine.runtime import Runtime
from detect.evaluation.clip_metrics import compute_clip_metrics
from detect.evaluation.metrics import compute_metrics
from detect.evaluation.perturbations import build_perturbation


def clip_len_of(method) -> int | None:
    """The method's clip length, or None for a frame method."""
    n = getattr(method, "clip_len", None)
    if n is None:
        return None
    if int(n) < 1:
        raise ValueError(f"{type(method).__name__}.clip_len={n}: must be at least 1")
    return int(n)


@torch.no_grad()
def predict_clips(
    method,
    table: pd.DataFrame,
    pipeline: Pipeline,
    runtime: Runtime,
    batch_size: int,
    num_workers: int,
    perturbation: Mapping | None = None,
    limit_batches: int | None = None,
    desc: str = "eval",
    progress: bool = True,
) -> pd.DataFrame:
    """P(fake) of every clip of ``table`` (sharded over processes, gathered on all): one row per clip with
    the first frame's ``path``/``frame`` and the clip's ``n_frames``."""
    pert = build_perturbation(perturbation) if perturbation is not None else None
    own_view = getattr(method, "build_eval_clip_dataset", None)  # e.g. LipForensics' mouth clips
    if own_view is not None:
        dataset = own_view(table, pipeline, pert)
    else:
        dataset = ClipDataset(
            table,
            pipeline,
            clip_len_of(method),
            train=False,
            clips_per_video=getattr(method, "eval_clips_per_video", None),
            perturbation=pert,
            rule=getattr(method, "clip_rule", "consecutive"),
        )
    idx, prob = map_dataset(
        lambda m, clips: m.predict(clips), method, dataset, runtime, batch_size, num_workers,
        input_key="clip", index_key="clip_index", limit_batches=limit_batches, desc=desc, progress=progress,
    )  # fmt: skip
    clips = dataset.clip_table()
    out = clips.iloc[idx][[*PREDICTION_COLUMNS, "n_frames"]].reset_index(drop=True)
    out.insert(0, "index", idx)
    out["prob"] = prob
    if not np.all(np.isfinite(prob)):
        bad = out.loc[~np.isfinite(prob), "path"].head(5).tolist()
        raise FloatingPointError(f"{desc}: non-finite predictions, e.g. for the clips starting at {bad}")
    return out


def predict_for_method(method, table: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    """Clip predictions for a clip method, frame predictions otherwise (same arguments as
    :func:`detect.engine.predict_loop.predict_table`)."""
    if clip_len_of(method) is None:
        return predict_table(method, table, *args, **kwargs)
    return predict_clips(method, table, *args, **kwargs)


def metrics_for(predictions: pd.DataFrame) -> dict:
    """The metrics of frame or clip predictions (clip predictions carry ``n_frames``)."""
    if "n_frames" in predictions.columns:
        return compute_clip_metrics(predictions)
    return compute_metrics(predictions)
