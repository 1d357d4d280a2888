"""The synthetic benchmark's calibration criteria (detect/evaluation/calibration.py): the video bootstrap
of a frame AUC, the reference order and the three checks, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from detect.evaluation.calibration import REFERENCE, auc_with_se, calibration_report, video_bootstrap


def _set(n_videos: int, frames: int, shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels, probs, videos = [], [], []
    for v in range(n_videos):
        y = v % 2
        centre = rng.normal(shift * y, 1.0)  # videos differ: frames of a video are correlated
        for _ in range(frames):
            labels.append(y)
            probs.append(centre + rng.normal(0, 0.1))
            videos.append(f"v{v}")
    return labels, probs, videos


def test_bootstrap_keeps_the_class_counts_and_is_zero_when_separable():
    labels, videos = [0, 0, 1, 1, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "c", "d", "d"]
    probs = [0.1, 0.2, 0.8, 0.9, 0.3, 0.1, 0.7, 0.6]
    auc, se = auc_with_se(labels, probs, videos, n=50)
    assert auc == 1.0 and se == 0.0  # every resample is separable
    probs[4] = 0.95  # one real video now outranks some fake frames
    draws = video_bootstrap(labels, probs, videos, n=200)
    assert draws.min() < 1.0 and draws.max() == 1.0
    with pytest.raises(ValueError, match="real and fake videos"):
        video_bootstrap([0, 0], [0.1, 0.2], ["a", "b"])


def test_bootstrap_se_shrinks_with_more_videos_not_more_frames():
    few = auc_with_se(*_set(12, 8, 1.0), n=300)[1]
    many_videos = auc_with_se(*_set(96, 8, 1.0), n=300)[1]
    many_frames = auc_with_se(*_set(12, 64, 1.0), n=300)[1]
    assert many_videos < 0.6 * few
    assert many_frames > 0.7 * few  # correlated frames add little information


def _aucs(values: list[float], ff: float = 0.93) -> dict[str, float]:
    return {"FF++": ff, **{r.name: v for r, v in zip(REFERENCE, values, strict=True)}}


def test_reference_order_and_criteria():
    assert [r.name for r in REFERENCE] == ["DFD", "CDFv1", "DFDC-P", "CDFv2", "FFIW", "DFDC", "WDF"]
    assert [r.rank for r in REFERENCE] == list(range(1, 8))
    ordered = _aucs([0.88, 0.86, 0.83, 0.82, 0.79, 0.75, 0.66])
    rep = calibration_report(ordered)
    assert rep["holds"] and rep["spearman"] == pytest.approx(1.0)
    assert rep["mean_gap"] == pytest.approx(0.93 - np.mean([0.88, 0.86, 0.83, 0.82, 0.79, 0.75, 0.66]))
    # one stand-in above FF++
    assert not calibration_report(_aucs([0.95, 0.86, 0.83, 0.82, 0.79, 0.75, 0.66]))["checks"][
        "all_below_in_domain"
    ]
    # all below, but too close on average
    close = calibration_report(_aucs([0.92, 0.91, 0.90, 0.89, 0.88, 0.87, 0.86]))
    assert close["checks"]["all_below_in_domain"] and not close["checks"]["mean_gap"]
    # reversed order: Spearman -1
    rev = calibration_report(_aucs([0.66, 0.75, 0.79, 0.82, 0.83, 0.86, 0.88]))
    assert rev["spearman"] == pytest.approx(-1.0) and not rev["holds"]
    # two neighbours swapped: 1 - 6*2/(7*48) = 0.964
    swapped = calibration_report(_aucs([0.86, 0.88, 0.83, 0.82, 0.79, 0.75, 0.66]))
    assert swapped["spearman"] == pytest.approx(1 - 6 * 2 / (7 * 48))
    with pytest.raises(KeyError, match="WDF"):
        calibration_report({k: v for k, v in ordered.items() if k != "WDF"})
