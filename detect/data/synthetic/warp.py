"""Piecewise-affine image warping between landmark sets, and landmark hull masks."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay


def _border(size: int, n: int = 4) -> np.ndarray:
    t = np.linspace(0, size - 1, n + 1)
    top = np.stack([t, np.zeros_like(t)], 1)
    bottom = np.stack([t, np.full_like(t, size - 1)], 1)
    left = np.stack([np.zeros_like(t[1:-1]), t[1:-1]], 1)
    right = np.stack([np.full_like(t[1:-1], size - 1), t[1:-1]], 1)
    return np.concatenate([top, bottom, left, right]).astype(np.float64)


def piecewise_affine(
    image: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, margin: float | None = None
) -> np.ndarray:
    """Warp ``image`` so that content at ``src_pts`` lands on ``dst_pts`` (triangulated on ``dst_pts``).

    The image border is pinned; pixels are sampled bilinearly (cv2.remap, replicated border). With
    ``margin``, only the box around ``dst_pts`` grown by ``margin`` pixels is warped (the rest is copied).
    """
    size = image.shape[0]
    border = _border(size)
    dst = np.concatenate([np.asarray(dst_pts, np.float64), border])
    src = np.concatenate([np.asarray(src_pts, np.float64), border])
    tri = Delaunay(dst, qhull_options="QJ Pp")
    ids = np.full((size, size), -1, np.int32)
    for k, simplex in enumerate(tri.simplices):
        cv2.fillConvexPoly(ids, np.round(dst[simplex]).astype(np.int32), int(k))
    # affine dst -> src per triangle: [x y 1] @ coef = [x' y']
    d = np.concatenate([dst[tri.simplices], np.ones((len(tri.simplices), 3, 1))], axis=2)
    det = np.abs(np.linalg.det(d))
    d[det < 1e-9] = np.eye(3)
    coef = np.linalg.solve(d, src[tri.simplices])
    coef[det < 1e-9] = [[1, 0], [0, 1], [0, 0]]
    mats = coef.transpose(0, 2, 1)
    ids = np.where(ids < 0, 0, ids)
    y0, y1, x0, x1 = 0, size, 0, size
    if margin is not None:
        lo = np.floor(np.asarray(dst_pts).min(0) - margin).astype(int)
        hi = np.ceil(np.asarray(dst_pts).max(0) + margin).astype(int) + 1
        x0, y0 = (int(v) for v in np.clip(lo, 0, size))
        x1, y1 = (int(v) for v in np.clip(hi, 0, size))
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    m = mats.astype(np.float32)[ids[y0:y1, x0:x1]]
    map_x = m[..., 0, 0] * xx + m[..., 0, 1] * yy + m[..., 0, 2]
    map_y = m[..., 1, 0] * xx + m[..., 1, 1] * yy + m[..., 1, 2]
    part = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = image.copy()
    out[y0:y1, x0:x1] = part
    return out


def hull_mask(size: int, pts: np.ndarray, grow: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """Soft alpha in [0, 1]: the convex hull of ``pts``, grown (or shrunk, ``grow`` < 0) and blurred."""
    m = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(np.asarray(pts) * 16).astype(np.int32))
    cv2.fillConvexPoly(m, hull, 255, cv2.LINE_AA, shift=4)
    r = int(round(abs(grow)))
    if r > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        m = cv2.dilate(m, k) if grow > 0 else cv2.erode(m, k)
    a = m.astype(np.float32) / 255.0
    if blur > 0:
        a = cv2.GaussianBlur(a, (0, 0), blur)
    return a
