"""What ``predict.py`` returns (:class:`PredictResult`: the tables it writes) and the face-detector settings
it reads from ``cfg.detector``; shared by frame and clip prediction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from detect.data.preprocess.face_detection import FaceModelConfig

FAILURE_COLUMNS = ["path", "reason", "detail"]


@dataclass
class PredictResult:
    """The three tables ``predict.py`` writes."""

    faces: pd.DataFrame
    videos: pd.DataFrame
    failures: pd.DataFrame
    timings: dict = field(default_factory=dict)


def face_models_config(detector: Mapping) -> FaceModelConfig:
    """``cfg.detector`` (the same keys as ``conf/preprocess.yaml``'s) -> :class:`FaceModelConfig`."""
    d = dict(detector)
    return FaceModelConfig(
        detector=str(d.get("name", "dlib")),
        upsample=int(d.get("upsample", 1)),
        min_score=float(d.get("min_score", 0.0)),
        cnn_model_path=d.get("cnn_model_path"),
        mtcnn_device=str(d.get("mtcnn_device", "cpu")),
        mtcnn_min_prob=float(d.get("mtcnn_min_prob", 0.9)),
        mtcnn_min_face_size=int(d.get("mtcnn_min_face_size", 20)),
        predictor_path=d.get("predictor_path"),
    )
