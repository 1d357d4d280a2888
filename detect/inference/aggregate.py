"""Per-input scores from per-face scores, with the rule the checkpoint was evaluated with.

- ``mean``: the mean over the input's face rows; with one face per frame (``faces=largest``, as every
  training and test set here) this is ``eval.py``'s video score, the mean of frame probabilities
  (:func:`detect.evaluation.metrics.video_scores`).
- ``mean_of_frame_max``: per frame the maximum over its faces, then the mean over frames (SBI's
  released video inference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detect.inference.load import AGGREGATES


def aggregate_scores(faces: pd.DataFrame, rule: str) -> float:
    """One score from the ``frame``/``score`` rows of one input (NaN when it has none)."""
    if rule not in AGGREGATES:
        raise ValueError(f"aggregate={rule!r}; use one of {AGGREGATES}")
    if faces.empty:
        return float("nan")
    if rule == "mean":
        return float(np.mean(faces["score"].to_numpy(np.float64)))
    per_frame = faces.groupby("frame")["score"].max().to_numpy(np.float64)
    return float(np.mean(per_frame))
