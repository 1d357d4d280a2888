"""Faces of one input, prepared as in preprocessing (:mod:`detect.data.preprocess`): N evenly spaced
frames (``floor(linspace)``), the configured detector, the largest face or all faces (tracked across
frames by box overlap), each cut with the checkpoint's crop (box x scale or 5-point alignment).

With ``faces=crops`` the inputs are already face crops: each image (or each sampled video frame) is one
face, resized by the model's pipeline only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from detect.data.preprocess.crop import crop_matrix, warp
from detect.data.preprocess.face_detection import Detection, FaceModels, largest_face
from detect.data.preprocess.video import read_sampled
from detect.inference.load import FaceCrop
from detect.inference.sources import Source

FACE_MODES = ("largest", "all", "crops")


class UnreadableInput(RuntimeError):
    """An input that cannot be opened or decoded; the message names the file."""


@dataclass
class Face:
    """One face of one frame: its crop (RGB uint8) and where it was found."""

    frame: int
    face: int  # track id with faces=all, 0 otherwise
    box: tuple[float, float, float, float]
    crop: np.ndarray
    matrix: np.ndarray | None = None  # 2x3 affine frame -> crop pixels (None with faces=crops)


@dataclass
class SampledInput:
    """An input's sampled frames (RGB uint8, by frame number), for visualisation and counting."""

    source: Source
    frames: dict[int, np.ndarray]
    n_total: int


def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8 (greyscale and alpha converted); unreadable -> :class:`UnreadableInput`."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnreadableInput(f"cannot read image {path} (not an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_input(source: Source, frames: int | None, backend: str = "pyav") -> SampledInput:
    """Read an image, or ``frames`` evenly spaced frames of a video."""
    if source.kind == "image":
        return SampledInput(source, {0: read_image(source.path)}, 1)
    try:
        sampled = read_sampled(source.path, frames, backend)
    except Exception as err:  # VideoReadError and decoder errors alike: the input is reported
        raise UnreadableInput(str(err)) from err
    return SampledInput(source, dict(sampled.frames), sampled.n_total)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Greedy IoU tracking: each detection joins the unmatched track whose last box overlaps it most
    (IoU >= ``min_iou``), else starts a new track. Track ids count from 0 in order of appearance."""

    def __init__(self, min_iou: float = 0.3) -> None:
        self.min_iou = float(min_iou)
        self.last: dict[int, tuple[float, ...]] = {}
        self.next_id = 0

    def assign(self, detections: list[Detection]) -> list[int]:
        """Track ids for one frame's detections (in the order given)."""
        pairs = sorted(
            ((iou(d.box, box), i, t) for i, d in enumerate(detections) for t, box in self.last.items()),
            reverse=True,
        )
        ids: dict[int, int] = {}
        for overlap, i, t in pairs:
            if overlap < self.min_iou:
                break
            if i not in ids and t not in ids.values():
                ids[i] = t
        for i in range(len(detections)):
            if i not in ids:
                ids[i], self.next_id = self.next_id, self.next_id + 1
        for i, d in enumerate(detections):
            self.last[ids[i]] = d.box
        return [ids[i] for i in range(len(detections))]


def rect_matrix(box: tuple[float, float, float, float], scale: float, size: int) -> np.ndarray:
    """Affine map of the box grown ``scale`` times along each axis (not squared) onto ``size x size``
    (SBI's test-time crop: a margin of (scale - 1) / 2 of the width/height on each side, then a resize)."""
    x0, y0, x1, y1 = box
    w, h = (x1 - x0) * scale, (y1 - y0) * scale
    if w <= 0 or h <= 0:
        raise ValueError(f"degenerate face box {box}")
    left, top = (x0 + x1 - w) / 2.0, (y0 + y1 - h) / 2.0
    kx, ky = size / w, size / h
    return np.array([[kx, 0.0, -left * kx], [0.0, ky, -top * ky]])


def faces_of(sampled: SampledInput, mode: str, crop: FaceCrop, models: FaceModels | None) -> Iterator[Face]:
    """The faces of every sampled frame, in frame order (``mode``: largest | all | crops)."""
    if mode not in FACE_MODES:
        raise ValueError(f"faces={mode!r}; use one of {FACE_MODES}")
    tracker = FaceTracker()
    for number in sorted(sampled.frames):
        rgb = sampled.frames[number]
        if mode == "crops":
            h, w = rgb.shape[:2]
            yield Face(number, 0, (0.0, 0.0, float(w), float(h)), rgb)
            continue
        found = models.detector.detect(rgb)
        if mode == "largest":
            best = largest_face(found)
            chosen, ids = ([best], [0]) if best is not None else ([], [])
        else:
            chosen = sorted(found, key=lambda d: (d.box[0], d.box[1]))
            ids = tracker.assign(chosen)
        for det, track in zip(chosen, ids, strict=True):
            if crop.mode == "rect":
                matrix = rect_matrix(det.box, crop.scale, crop.size)
            else:
                landmarks = models.predictor.predict(rgb, det.box) if crop.mode == "align" else None
                matrix = crop_matrix(crop.mode, det.box, landmarks, crop.scale, crop.size)
            yield Face(number, track, det.box, warp(rgb, matrix, crop.size), matrix)
