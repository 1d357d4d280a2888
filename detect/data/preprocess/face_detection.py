"""Face detectors and landmark predictors behind one small interface.

Detectors return :class:`Detection` boxes ``(x0, y0, x1, y1)`` in frame pixels; :func:`largest_face`
keeps the largest one (ties broken by score), as DeepfakeBench does. Landmark predictors are dlib shape
predictors: the 68-point model shipped by ``face-recognition-models`` by default, or a user-supplied
``.dat`` (e.g. the 81-point ``shape_predictor_81_face_landmarks.dat``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

DETECTORS = ("dlib", "dlib_cnn", "mtcnn")
MTCNN_INSTALL = "pip install --no-deps facenet-pytorch"


@dataclass(frozen=True)
class Detection:
    """One face box in frame pixels and the detector's confidence."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


class FaceDetector(Protocol):
    """Finds faces in an RGB uint8 image."""

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


def largest_face(detections: list[Detection]) -> Detection | None:
    """The largest box (ties, common with dlib's quantised boxes, go to the higher score)."""
    if not detections:
        return None
    return max(detections, key=lambda d: (d.area, d.score))


def models_dir() -> Path:
    """The ``models/`` folder of the ``face-recognition-models`` package (its import is not needed)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the package face-recognition-models is not installed (pip install face-recognition-models); "
            "or point landmarks.predictor_path at a dlib shape predictor .dat"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def default_predictor_path() -> Path:
    """dlib's 68-point predictor as shipped by ``face-recognition-models``."""
    return models_dir() / "shape_predictor_68_face_landmarks.dat"


def default_cnn_detector_path() -> Path:
    """dlib's MMOD CNN face detector as shipped by ``face-recognition-models``."""
    return models_dir() / "mmod_human_face_detector.dat"


@dataclass(frozen=True)
class FaceModelConfig:
    """Which detector and landmark predictor to use (picklable: sent to each worker)."""

    detector: str = "dlib"
    upsample: int = 1
    min_score: float = 0.0
    cnn_model_path: str | None = None
    mtcnn_device: str = "cpu"
    mtcnn_min_prob: float = 0.9
    mtcnn_min_face_size: int = 20
    predictor_path: str | None = None

    def resolved_predictor_path(self) -> Path:
        return Path(self.predictor_path) if self.predictor_path else default_predictor_path()

    def check(self) -> None:
        """Fail early, naming the config key, when a model file or package is missing."""
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r} (detector.name); use one of {DETECTORS}")
        path = self.resolved_predictor_path()
        if not path.is_file():
            key = "landmarks.predictor_path" if self.predictor_path else "landmarks.predictor_path (default)"
            raise FileNotFoundError(f"landmark predictor not found: {path} ({key})")
        if self.detector == "dlib_cnn":
            cnn = Path(self.cnn_model_path) if self.cnn_model_path else default_cnn_detector_path()
            if not cnn.is_file():
                raise FileNotFoundError(f"dlib CNN face detector not found: {cnn} (detector.cnn_model_path)")
        if self.detector == "mtcnn" and importlib.util.find_spec("facenet_pytorch") is None:
            raise ImportError(
                f"detector.name=mtcnn needs facenet-pytorch, which ships the MTCNN weights: {MTCNN_INSTALL} "
                "(--no-deps keeps your installed torch)"
            )


class DlibHogDetector:
    """dlib's HOG frontal face detector (``dlib.get_frontal_face_detector``), DeepfakeBench's default."""

    def __init__(self, upsample: int = 1, min_score: float = 0.0) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self.upsample = int(upsample)
        self.min_score = float(min_score)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rects, scores, _ = self._detector.run(np.ascontiguousarray(rgb), self.upsample, self.min_score)
        return [
            Detection((float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]


class DlibCnnDetector:
    """dlib's MMOD CNN face detector (slow on CPU; more robust to pose)."""

    def __init__(self, model_path: str | os.PathLike, upsample: int = 1, min_score: float = 0.0) -> None:
        import dlib

        self._detector = dlib.cnn_face_detection_model_v1(str(model_path))
        self.upsample = int(upsample)
        self.min_score = float(min_score)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        found = self._detector(np.ascontiguousarray(rgb), self.upsample)
        out = []
        for d in found:
            r = d.rect
            if d.confidence >= self.min_score:
                out.append(Detection((r.left(), r.top(), r.right(), r.bottom()), float(d.confidence)))
        return out


class MtcnnDetector:
    """MTCNN from ``facenet-pytorch`` (imported lazily; it ships its weights)."""

    def __init__(self, device: str = "cpu", min_prob: float = 0.9, min_face_size: int = 20) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ImportError(
                f"detector.name=mtcnn needs facenet-pytorch: {MTCNN_INSTALL} (--no-deps keeps your torch)"
            ) from err
        self._mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_face_size, post_process=False)
        self.min_prob = float(min_prob)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        boxes, probs = self._mtcnn.detect(np.ascontiguousarray(rgb))
        if boxes is None:
            return []
        return [
            Detection(tuple(float(v) for v in box), float(p))
            for box, p in zip(boxes, probs, strict=True)
            if p is not None and p >= self.min_prob
        ]


class LandmarkPredictor:
    """A dlib shape predictor: ``predict(rgb, box)`` -> (K, 2) float array of (x, y) frame pixels."""

    def __init__(self, path: str | os.PathLike) -> None:
        import dlib

        if not os.path.isfile(path):
            raise FileNotFoundError(f"landmark predictor not found: {path} (landmarks.predictor_path)")
        self.path = str(path)
        self._predictor = dlib.shape_predictor(self.path)

    @property
    def num_points(self) -> int:
        """Points per face (68, 81, 5, ...), read off one prediction on a blank image."""
        import dlib

        blank = np.zeros((16, 16, 3), np.uint8)
        return int(self._predictor(blank, dlib.rectangle(0, 0, 15, 15)).num_parts)

    def predict(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        import dlib

        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(np.ascontiguousarray(rgb), dlib.rectangle(x0, y0, x1, y1))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@dataclass
class FaceModels:
    """A detector and a landmark predictor, loaded once per worker."""

    detector: FaceDetector
    predictor: LandmarkPredictor


def build_face_models(cfg: FaceModelConfig) -> FaceModels:
    """Load the configured detector and predictor (checks files and packages first)."""
    cfg.check()
    if cfg.detector == "dlib":
        detector: FaceDetector = DlibHogDetector(cfg.upsample, cfg.min_score)
    elif cfg.detector == "dlib_cnn":
        path = cfg.cnn_model_path or default_cnn_detector_path()
        detector = DlibCnnDetector(path, cfg.upsample, cfg.min_score)
    else:
        detector = MtcnnDetector(cfg.mtcnn_device, cfg.mtcnn_min_prob, cfg.mtcnn_min_face_size)
    return FaceModels(detector, LandmarkPredictor(cfg.resolved_predictor_path()))
