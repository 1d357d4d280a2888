"""Frame/video metrics against hand-computed values and scikit-learn; video keys never merge (defect 4)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from detect.evaluation.metrics import (
    METRIC_KEYS,
    SingleClassWarning,
    compute_metrics,
    eer_from_roc,
    frame_metrics,
    video_metrics,
    video_scores,
)
from detect.evaluation.predictions import read_predictions, write_predictions


def test_frame_metrics_hand_computed() -> None:
    # Pairs (fake, real): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, *) ok -> AUC 3/4.
    # ROC points (FPR, FNR): (0,1) (0,.5) (.5,.5) (.5,0) (1,0) -> FPR = FNR = 0.5 at a vertex.
    m = frame_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["auc"] == pytest.approx(0.75)
    assert m["eer"] == pytest.approx(0.5)
    assert m["acc"] == pytest.approx(0.75)  # 0.35 is called real
    # AP: ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision at the positives 1 and 2/3 -> (1 + 2/3) / 2
    assert m["ap"] == pytest.approx((1 + 2 / 3) / 2)
    expected_ll = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert m["logloss"] == pytest.approx(expected_ll)


def test_eer_interpolates_on_a_sloped_segment() -> None:
    # One tie: the ROC goes straight from (0,0) to (1,1); FNR - FPR changes sign at its middle.
    assert eer_from_roc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    # Two reals, two fakes, scores tied in pairs: ROC (0,0) -> (.5,.5) via tie -> (1,1)
    y = np.array([0, 1, 0, 1])
    p = np.array([0.3, 0.3, 0.7, 0.9])
    # thresholds: 0.9 (fpr 0, tpr .5), 0.7 (.5, .5), 0.3 (1, 1): EER on the last segment at 0.5
    assert eer_from_roc(y, p) == pytest.approx(0.5)


def test_perfect_and_inverted() -> None:
    good = frame_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert good["auc"] == 1.0 and good["eer"] == 0.0 and good["acc"] == 1.0
    bad = frame_metrics([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert bad["auc"] == 0.0 and bad["eer"] == 1.0 and bad["acc"] == 0.0


def test_against_sklearn_on_random_fixture() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    p[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]  # extremes exercise the clipping
    m = frame_metrics(y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["ap"] == pytest.approx(average_precision_score(y, p))
    assert m["logloss"] == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))
    assert m["acc"] == pytest.approx(np.mean((p > 0.5) == y))
    # EER: FPR and FNR are equal there, and it lies between the two closest ROC points.
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    i = np.nanargmin(np.abs(1 - tpr - fpr))
    assert abs(m["eer"] - fpr[i]) < 0.02 and abs(m["eer"] - (1 - tpr[i])) < 0.02


def test_single_class_gives_nan_with_warning() -> None:
    with pytest.warns(SingleClassWarning, match="only fake"):
        m = frame_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["eer"]) and math.isnan(m["ap"])
    assert m["acc"] == pytest.approx(2 / 3)
    assert m["logloss"] == pytest.approx(-np.mean(np.log([0.2, 0.7, 0.9])))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        frame_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        frame_metrics([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="empty"):
        frame_metrics([], [])


def _shared_id_fixture() -> pd.DataFrame:
    """DF and F2F fakes made from the same pair 000_003: same id, distinct video keys."""
    rows = []
    for video, label, probs in [
        ("FF/real/c23/000", 0, [0.3, 0.5]),
        ("FF/real/c23/003", 0, [0.6, 0.6]),
        ("FF/DF/c23/000_003", 1, [0.9, 0.7]),
        ("FF/F2F/c23/000_003", 1, [0.2, 0.4]),
    ]:
        for k, p in enumerate(probs):
            rows.append(
                {"video": video, "video_id": video.rsplit("/", 1)[1], "label": label, "prob": p, "k": k}
            )
    return pd.DataFrame(rows)


def test_video_keys_do_not_merge_across_manipulations() -> None:
    df = _shared_id_fixture()
    per_video = video_scores(df["label"], df["prob"], df["video"]).set_index("video")
    assert len(per_video) == 4
    assert per_video.loc["FF/DF/c23/000_003", "prob"] == pytest.approx(0.8)
    assert per_video.loc["FF/F2F/c23/000_003", "prob"] == pytest.approx(0.3)
    m = video_metrics(df["label"], df["prob"], df["video"])
    # videos: real 0.4, 0.6; fake 0.8, 0.3 -> pairs won: (0.8>0.4, 0.8>0.6, 0.3<0.4, 0.3<0.6) = 2/4
    assert m["n_videos"] == 4
    assert m["auc"] == pytest.approx(0.5)
    assert m["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.4, 0.6, 0.8, 0.3]))


def test_grouping_by_id_only_is_refused_when_labels_mix() -> None:
    df = _shared_id_fixture()
    df.loc[df["video_id"] == "000", "video_id"] = "000_003"  # a real now shares the fakes' id
    with pytest.raises(ValueError, match="both real and fake"):
        video_metrics(df["label"], df["prob"], df["video_id"])


def test_compute_metrics_keys_and_counts(tmp_path) -> None:
    df = _shared_id_fixture()
    m = compute_metrics(df)
    assert tuple(m) == METRIC_KEYS
    assert m["n_frames"] == 8 and m["n_videos"] == 4
    assert m["frame_auc"] == pytest.approx(roc_auc_score(df["label"], df["prob"]))
    assert m["video_auc"] == pytest.approx(0.5)

    pred = df.assign(
        index=range(len(df)), path=[f"/d/{i}.png" for i in range(len(df))], dataset="FF", domain="x"
    )
    pred["prob"] = pred["prob"] + 1e-13  # not representable in few digits
    path = tmp_path / "pred" / "test.csv"
    write_predictions(
        path, pred[["index", "path", "video", "label", "prob", "dataset", "domain", "video_id", "k"]]
    )
    back = read_predictions(path)
    assert list(back.columns[:7]) == ["index", "path", "video", "label", "prob", "dataset", "domain"]
    assert back["video_id"].tolist() == pred["video_id"].tolist()  # "000_003" stays a string
    assert back["video_id"].iloc[0] == "000"
    assert np.array_equal(back["prob"].to_numpy(), pred["prob"].to_numpy())  # bit-exact
    assert back["k"].dtype.kind == "i"
    assert compute_metrics(back) == pytest.approx(compute_metrics(pred))


def test_write_predictions_requires_columns(tmp_path) -> None:
    with pytest.raises(ValueError, match="lack columns"):
        write_predictions(tmp_path / "x.csv", pd.DataFrame({"prob": [0.1]}))
