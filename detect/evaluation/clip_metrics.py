"""Video-level scores of clip detectors: a video's probability is the mean of its clips' probabilities.

A clip detector (FTCN, AltFreezing, LipForensics) scores clips of consecutive frames, not frames. Its
predictions have one row per clip (``label``, ``prob``, ``video``; ``n_frames``: the clip's length), and
its metrics are those of :func:`detect.evaluation.metrics.compute_metrics` read per clip: the
``frame_*`` entries are computed over clips (each clip one sample), the ``video_*`` entries over videos
scored by the mean of their clips' probabilities (FTCN and LipForensics average their clip scores per
video the same way). ``n_clips`` counts clips; ``n_frames`` the frames they hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detect.evaluation.metrics import compute_metrics, video_scores


def clip_video_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per video: ``video``, ``label``, ``prob`` (mean of its clips), ``n_clips``."""
    per_video = video_scores(
        predictions["label"].to_numpy(),
        predictions["prob"].to_numpy(),
        predictions["video"].astype(str).to_numpy(),
    )
    return per_video.rename(columns={"n_frames": "n_clips"})


def compute_clip_metrics(predictions: pd.DataFrame) -> dict:
    """Clip- (``frame_*``) and video-level (``video_*``) metrics of one test set's clip predictions."""
    if "n_frames" not in predictions.columns:
        raise ValueError(f"clip predictions lack the column 'n_frames'; have {list(predictions.columns)}")
    out = compute_metrics(predictions)
    out["n_clips"] = len(predictions)
    out["n_frames"] = int(np.sum(predictions["n_frames"].to_numpy()))
    return out
