"""Face crops: a square enlarged x1.3 around the detected box, resized to 256 x 256.

Every crop is an affine map (a 2 x 3 matrix ``M``, frame pixels -> crop pixels) so frames, masks and
landmarks go through the same transform. Two modes:

- ``box`` (default): the square of side ``scale * max(w, h)`` centred on the detector's box, scaled to
  ``size``; parts outside the frame are black. dlib's box is tight and sits high on the face, so the
  chin's landmarks can fall below that square (101 of 6,528 points over four real test videos); then
  the square grows to the smallest one holding both it and every landmark (plus 2 % of its side), so a
  whole frontal face stays inside the crop. Where every landmark is already inside, the square is the
  plain ``scale`` x box one. (We keep the box crop as the default rather than switching to ``align``:
  LTW and DFFC crop around the detector's box, and the box crop does not rotate the face.)
- ``align``: DeepfakeBench's 5-point similarity alignment (its landmarks 37, 44, 30, 49, 55 onto the
  ArcFace template, with the same ``scale`` margin); landmarks are mapped through the same transform
  (DeepfakeBench re-detects them in the crop instead).
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_MODES = ("box", "align")

# ArcFace's 112 x 112 five-point template (eyes, nose tip, mouth corners), as DeepfakeBench uses it.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# DeepfakeBench's choice of points in the 68-point scheme (0-based).
DFB_ALIGN_POINTS = (37, 44, 30, 49, 55)


def square_around(box: tuple[float, float, float, float], scale: float = 1.3) -> tuple[float, float, float]:
    """(left, top, side) of the square of side ``scale * max(w, h)`` centred on ``box``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * scale
    if side <= 0:
        raise ValueError(f"degenerate face box {box}")
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return cx - side / 2.0, cy - side / 2.0, side


def square_holding(
    square: tuple[float, float, float], landmarks: np.ndarray, margin: float = 0.02
) -> tuple[float, float, float]:
    """``square`` (left, top, side), grown to the smallest square also holding every landmark with a
    ``margin`` (fraction of the side) when one falls outside it; unchanged otherwise."""
    left, top, side = square
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        return square
    pad = margin * side
    lo = pts.min(0) - pad
    hi = pts.max(0) + pad
    if lo[0] >= left and lo[1] >= top and hi[0] <= left + side and hi[1] <= top + side:
        return square
    x0, y0 = min(left, lo[0]), min(top, lo[1])
    x1, y1 = max(left + side, hi[0]), max(top + side, hi[1])
    grown = max(x1 - x0, y1 - y0)
    return (x0 + x1 - grown) / 2.0, (y0 + y1 - grown) / 2.0, grown


def box_matrix(
    box: tuple[float, float, float, float],
    scale: float = 1.3,
    size: int = 256,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Affine map taking the enlarged square around ``box`` (grown to hold ``landmarks``, when given)
    onto ``[0, size]^2``."""
    left, top, side = square_around(box, scale)
    if landmarks is not None:
        left, top, side = square_holding((left, top, side), landmarks)
    k = size / side
    return np.array([[k, 0.0, -left * k], [0.0, k, -top * k]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst (Umeyama), 2 x 3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ flip @ vt
    c = np.trace(np.diag(sig) @ flip) / ((s**2).sum() / len(src))
    t = mu_d - c * rot @ mu_s
    return np.hstack([c * rot, t[:, None]])


def align_matrix(landmarks: np.ndarray, scale: float = 1.3, size: int = 256) -> np.ndarray:
    """DeepfakeBench's alignment: 5 landmarks onto the ArcFace template with a ``scale`` margin."""
    dst = _ARCFACE_112 * (size / 112.0)
    dst = (dst + size * (scale - 1.0) / 2.0) / scale
    return similarity(np.asarray(landmarks)[list(DFB_ALIGN_POINTS)], dst)


def crop_matrix(
    mode: str,
    box: tuple[float, float, float, float],
    landmarks: np.ndarray,
    scale: float = 1.3,
    size: int = 256,
) -> np.ndarray:
    """The frame -> crop affine map for ``mode`` (``box`` or ``align``)."""
    if mode == "box":
        return box_matrix(box, scale, size, landmarks)
    if mode == "align":
        return align_matrix(landmarks, scale, size)
    raise ValueError(f"unknown crop mode {mode!r} (crop.mode); use one of {CROP_MODES}")


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (K, 2) points through a 2 x 3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine map (crop -> frame)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp(image: np.ndarray, matrix: np.ndarray, size: int = 256) -> np.ndarray:
    """Apply the crop map to an image (bilinear; outside the frame is black)."""
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
