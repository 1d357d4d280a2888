"""Frame- and video-level detection metrics: AUC, EER, AP, ACC at 0.5, LogLoss.

Conventions (docs/datasets.md, "Metrics", after DeepfakeBench):

- frame-level AUC/EER/AP/ACC over every frame; ACC thresholds the fake probability at 0.5
  (``prob > 0.5`` is fake, as DeepfakeBench's ``prediction_class = (y_pred > 0.5)``);
- LogLoss as LTW's Eq. 12 (natural log, probabilities clipped to ``[1e-7, 1 - 1e-7]``);
- EER where FPR = FNR on the ROC curve, linearly interpolated between the two ROC points around it;
- video level: a video's probability is the mean of its frames' probabilities; videos are grouped by
  the sample table's ``video`` key, which is unique across datasets, manipulations and compressions
  (DeepfakeBench's defect 4 grouped by folder name and merged DF ``000_003`` with F2F ``000_003``).

A set with one class only has no AUC/EER/AP: they come back NaN with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score, roc_curve

PROB_EPS = 1e-7
ACC_THRESHOLD = 0.5
METRIC_KEYS = (
    "frame_auc",
    "frame_eer",
    "frame_ap",
    "frame_acc",
    "frame_logloss",
    "video_auc",
    "video_eer",
    "n_frames",
    "n_videos",
)


class SingleClassWarning(UserWarning):
    """A metric that needs both classes was asked of a set with one class only."""


def _as_arrays(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> tuple:
    """Validate and convert labels (0/1) and fake probabilities ([0, 1], finite) to arrays."""
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"labels and probs must be 1-d of equal length, got shapes {y.shape} and {p.shape}")
    if len(y) == 0:
        raise ValueError("cannot compute metrics on an empty set")
    bad = set(np.unique(y).tolist()) - {0, 1}
    if bad:
        raise ValueError(f"labels must be 0 (real) or 1 (fake), found {sorted(bad)}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite fake probabilities in [0, 1] (apply sigmoid/softmax first)")
    return y.astype(np.int64), p


def _has_both_classes(y: np.ndarray, what: str) -> bool:
    if len(np.unique(y)) == 2:
        return True
    only = "real" if y[0] == 0 else "fake"
    warnings.warn(
        f"{what}: only {only} samples ({len(y)}), AUC/EER/AP are undefined and reported as NaN",
        SingleClassWarning,
        stacklevel=3,
    )
    return False


def eer_from_roc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Equal error rate: the point of the ROC curve where FPR = FNR (= 1 - TPR), linearly interpolated.

    FNR - FPR decreases along the curve; between the last point where it is positive and the first
    where it is <= 0 both rates are interpolated with the same weight, so they meet at the EER.
    """
    fpr, tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fnr - fpr
    i = int(np.argmax(diff <= 0))  # the curve ends at (1, 1), where diff = -1: always found
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def frame_metrics(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> dict:
    """Frame-level ``auc``, ``eer``, ``ap``, ``acc`` (prob > 0.5 is fake) and ``logloss`` (clipped)."""
    y, p = _as_arrays(labels, probs)
    out = {"auc": float("nan"), "eer": float("nan"), "ap": float("nan")}
    if _has_both_classes(y, "frame metrics"):
        out["auc"] = float(roc_auc_score(y, p))
        out["eer"] = eer_from_roc(y, p)
        out["ap"] = float(average_precision_score(y, p))
    out["acc"] = float(np.mean((p > ACC_THRESHOLD).astype(np.int64) == y))
    out["logloss"] = float(log_loss(y, np.clip(p, PROB_EPS, 1 - PROB_EPS), labels=[0, 1]))
    return out


def video_scores(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    videos: Sequence[str] | np.ndarray,
) -> pd.DataFrame:
    """One row per video key: ``video``, ``label``, ``prob`` (mean of its frames), ``n_frames``.

    Raises if a video's frames carry different labels: that means two videos were merged under one key
    (use the sample table's ``video`` column, not ``video_id``).
    """
    y, p = _as_arrays(labels, probs)
    v = np.asarray(videos)
    if len(v) != len(y):
        raise ValueError(f"videos has {len(v)} entries for {len(y)} labels")
    frame = pd.DataFrame({"video": v, "label": y, "prob": p})
    grouped = frame.groupby("video", sort=True)
    per_video = grouped.agg(
        label=("label", "first"),
        n_labels=("label", "nunique"),
        prob=("prob", "mean"),
        n_frames=("prob", "size"),
    )
    mixed = per_video.index[per_video["n_labels"] > 1].tolist()
    if mixed:
        raise ValueError(
            f"{len(mixed)} video key(s) hold both real and fake frames, e.g. {mixed[:3]}: video keys must be "
            "unique across datasets, manipulations and compressions (the sample table's 'video' column)"
        )
    return per_video.drop(columns="n_labels").reset_index()


def video_metrics(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    videos: Sequence[str] | np.ndarray,
) -> dict:
    """Video-level ``auc`` and ``eer`` over per-video mean frame probabilities, plus ``n_videos``."""
    per_video = video_scores(labels, probs, videos)
    y = per_video["label"].to_numpy()
    p = per_video["prob"].to_numpy()
    out = {"auc": float("nan"), "eer": float("nan"), "n_videos": len(per_video)}
    if _has_both_classes(y, "video metrics"):
        out["auc"] = float(roc_auc_score(y, p))
        out["eer"] = eer_from_roc(y, p)
    return out


def compute_metrics(predictions: pd.DataFrame) -> dict:
    """All metrics of one test set from its predictions (columns ``label``, ``prob``, ``video``).

    Returns the flat keys of ``METRIC_KEYS`` (the ``metrics`` entries of ``results.json``).
    """
    missing = [c for c in ("label", "prob", "video") if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}; have {list(predictions.columns)}")
    labels = predictions["label"].to_numpy()
    probs = predictions["prob"].to_numpy()
    frame = frame_metrics(labels, probs)
    video = video_metrics(labels, probs, predictions["video"].astype(str).to_numpy())
    out = {f"frame_{k}": v for k, v in frame.items()}
    out.update(video_auc=video["auc"], video_eer=video["eer"])
    out.update(n_frames=len(predictions), n_videos=int(video["n_videos"]))
    return {k: out[k] for k in METRIC_KEYS}
