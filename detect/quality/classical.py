"""A no-reference face-quality score without weights: sharpness × (absence of) JPEG blocking, in [0, 1].

The offline stand-in for IFQA in DFFC's quality prior (docs/methods/dffc.md, "Quality prior") on machines
without the authors' checkpoint; higher = better quality. For an HxWx3 uint8 RGB image, on its luminance
``Y = 0.299 R + 0.587 G + 0.114 B`` (float, 0–255):

* **Sharpness** ``S = v / (v + C_S)``, ``v`` the variance of the 4-neighbour Laplacian
  ``[[0, 1, 0], [1, −4, 1], [0, 1, 0]]`` over the interior pixels (no padding), the focus measure of
  Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000.
  ``v`` depends on scale, so it is taken on ``Y`` resized to :data:`SHARPNESS_SIZE` ² (area averaging when
  shrinking, bilinear when enlarging: a tiny face enlarged is blurry, i.e. of low quality).
  :data:`SHARPNESS_C` = 100 (grey levels²) puts S = 0.5 at the common "blurry below 100" threshold; on
  natural 256-px images v is ~300–1700 (S ≈ 0.75–0.95), after a Gaussian blur of σ = 1 ~25–125, σ = 2 ~5–20.
* **Blockiness** (after Wang, Bovik & Evans, "Blind measurement of blocking artifacts in images", ICIP
  2000, and Wang, Sheikh & Bovik, "No-reference perceptual quality assessment of JPEG compressed images",
  ICIP 2002: the mean absolute difference across 8×8 block boundaries against that within blocks).
  Per direction (horizontal, vertical), ``D[k]`` = the mean of ``|Y[·, n+1] − Y[·, n]|`` over the
  columns ``n ≡ k (mod 8)``, at native resolution. A face crop does not keep the JPEG grid's origin, so
  the boundary offset is taken as ``k* = argmax D`` and ``R = (D[k*] + ε) / (mean_{k≠k*} D[k] + ε)``,
  ε = :data:`BLOCK_EPS`; R ≈ 1.0–1.15 without blocking, ≈ 1.3–1.6 at JPEG quality 50 and 1.6–3.9 at
  quality 10. ``R`` is the mean of both directions and ``B = exp(−max(R − 1, 0) / τ)``,
  τ = :data:`BLOCKINESS_TAU` = 1. An image under 2 blocks along a direction gives no evidence (that
  direction is skipped; B = 1 if both are).
* **Quality** ``Q = sqrt(S · B)`` (geometric mean: either defect alone lowers it).

The score is deterministic (no randomness, float64 arithmetic on the luminance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

SHARPNESS_SIZE = 256
SHARPNESS_C = 100.0
BLOCK = 8
BLOCK_EPS = 0.1
BLOCKINESS_TAU = 1.0
VERSION = 1  # bump when the formula changes: cached classical scores are keyed by it

PARAMS = {
    "version": VERSION,
    "sharpness_size": SHARPNESS_SIZE,
    "sharpness_c": SHARPNESS_C,
    "block": BLOCK,
    "block_eps": BLOCK_EPS,
    "blockiness_tau": BLOCKINESS_TAU,
}


def luminance(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB (or HxW grey) → HxW float64 luminance in [0, 255] (BT.601 weights)."""
    if image.dtype != np.uint8:
        raise ValueError(f"the classical quality score takes uint8 images, got {image.dtype}")
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"the classical quality score takes HxWx3 RGB (or HxW grey) images, got {image.shape}"
        )
    rgb = image.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def laplacian_variance(gray: np.ndarray) -> float:
    """The variance (ddof 0) of the 4-neighbour Laplacian over the interior of ``gray`` (at least 3×3)."""
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2 or min(g.shape) < 3:
        raise ValueError(f"the Laplacian variance needs a 2-D array of at least 3x3, got shape {g.shape}")
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def sharpness(gray: np.ndarray, size: int = SHARPNESS_SIZE, c: float = SHARPNESS_C) -> float:
    """``S = v / (v + c)`` in [0, 1), ``v`` the Laplacian variance of ``gray`` resized to ``size`` ²."""
    g = np.asarray(gray, dtype=np.float32)
    if g.shape != (size, size):
        shrink = g.shape[0] >= size and g.shape[1] >= size
        g = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    v = laplacian_variance(g)
    return v / (v + c)


def _offset_profile(diff: np.ndarray, block: int) -> np.ndarray | None:
    """Mean |difference| per boundary offset mod ``block`` along the last axis (None: < 2 blocks)."""
    cols = diff.mean(axis=0)
    n = (len(cols) // block) * block
    if n < 2 * block:
        return None
    return cols[:n].reshape(-1, block).mean(axis=0)


def blockiness_ratio(gray: np.ndarray, block: int = BLOCK, eps: float = BLOCK_EPS) -> float:
    """``R``: boundary vs within-block mean absolute difference (see the module docstring); 1 = no blocking.

    The mean over the horizontal and vertical directions that have at least 2 blocks (1.0 if neither).
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"blockiness takes a 2-D luminance array, got shape {g.shape}")
    ratios = []
    for diff in (np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0)).T):
        prof = _offset_profile(diff, block) if diff.size else None
        if prof is None:
            continue
        k = int(np.argmax(prof))
        within = np.delete(prof, k).mean()
        ratios.append((prof[k] + eps) / (within + eps))
    return float(np.mean(ratios)) if ratios else 1.0


def blockiness_quality(ratio: float, tau: float = BLOCKINESS_TAU) -> float:
    """``B = exp(−max(R − 1, 0) / τ)`` in (0, 1]."""
    return math.exp(-max(float(ratio) - 1.0, 0.0) / tau)


def classical_quality(image: np.ndarray) -> float:
    """``Q = sqrt(S · B)`` in [0, 1] for an HxWx3 uint8 RGB face (higher = better); module docstring."""
    y = luminance(image)
    return math.sqrt(sharpness(y) * blockiness_quality(blockiness_ratio(y)))


def classical_quality_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`classical_quality` of each image, as float64 [N]."""
    return np.array([classical_quality(im) for im in images], dtype=np.float64)
