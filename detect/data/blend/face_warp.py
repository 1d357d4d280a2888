"""FWA's negative examples: face warping artefacts simulated on a real frame (Li & Lyu, "Exposing DeepFake
Videos By Detecting Face Warping Artifacts", CVPRW 2019, Sec. 3 and Fig. 3; the authors' released
``data_proc_train.py``).

DeepFake pipelines synthesise a face at a low, fixed resolution and affine-warp it back into the frame;
FWA simulates the resulting resolution mismatch without any deepfake: the face region is aligned to a
square of a random size (64-127 px in the released code: a down-scaling of the face), blurred by a 5 x 5
Gaussian, and warped back into the frame with the inverse affine; with probability ``p_hull`` only the
minimal polygon of the landmarks (their convex hull) keeps the warped pixels, else the whole aligned
square does. Everything outside that region is the real frame, bit for bit.

The alignment (a reading: the released code aligns to its own mean-face template, which is not in this
repository): a similarity transform that levels the eye line and maps the landmarks' bounding square
(centred on their bounding box, side = its larger extent in the levelled frame) onto the output square.
All randomness comes from the generator passed in; nothing here reads or writes files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceWarpConfig:
    """``size_range``: the aligned face's side in pixels, uniform over ``[lo, hi]`` (the released code: 64
    to 127), unless ``sizes`` lists the choices (DeepfakeBench: 0.2-0.8 of 256); ``blur_kernel``: the
    Gaussian's odd kernel (5; sigma from the kernel, OpenCV's 0); ``p_hull``: probability that only the
    landmark hull keeps the warped pixels (0.5)."""

    size_range: tuple[int, int] = (64, 127)
    sizes: tuple[int, ...] = ()
    blur_kernel: int = 5
    p_hull: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        object.__setattr__(self, "size_range", tuple(int(s) for s in self.size_range))
        lo, hi = self.size_range
        if min(self.sizes or (lo,)) < 4 or lo > hi:
            raise ValueError(
                f"face warp sizes must be integers >= 4 (lo <= hi), got {self.sizes or self.size_range}"
            )
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")
        if not 0.0 <= self.p_hull <= 1.0:
            raise ValueError(f"p_hull must lie in [0, 1], got {self.p_hull}")


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2 x 3 similarity (image -> aligned ``size`` x ``size`` square): eye line levelled, the landmarks'
    bounding square filling the output. ``landmarks``: 68 x 2 or 81 x 2 (dlib order; the first 68 used)."""
    lm = np.asarray(landmarks, np.float64)[:68]
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be 68x2 or 81x2, got {np.asarray(landmarks).shape}")
    left, right = lm[36:42].mean(0), lm[42:48].mean(0)
    theta = math.atan2(right[1] - left[1], right[0] - left[0])
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, s], [-s, c]])  # rotates the eye line onto the x axis
    levelled = (lm - lm.mean(0)) @ rot.T
    lo, hi = levelled.min(0), levelled.max(0)
    centre_levelled = (lo + hi) / 2
    extent = float(max(hi - lo))
    if extent <= 0:
        raise ValueError("degenerate landmarks: all points coincide")
    scale = size / extent
    a = scale * rot
    # q = a (p - mean) - scale·centre_levelled + size/2
    t = size / 2 - a @ lm.mean(0) - scale * centre_levelled
    return np.hstack([a, t[:, None]])


def hull_region(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool: the filled convex hull of the first 68 landmarks (the released code's minimal polygon)."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.asarray(landmarks)[:68].astype(np.int32)), 1)
    return mask.astype(bool)


def face_warp(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, cfg: FaceWarpConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(fake HxWx3 uint8, region HxW float32 in {0, 1}): the face aligned at a random size, blurred,
    warped back; pixels outside ``region`` are the input's."""
    h, w = image.shape[:2]
    if cfg.sizes:
        size = int(cfg.sizes[int(rng.integers(len(cfg.sizes)))])
    else:
        size = int(rng.integers(cfg.size_range[0], cfg.size_range[1] + 1))
    use_hull = bool(rng.random() < cfg.p_hull)
    matrix = alignment_matrix(landmarks, size)
    face = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    face = cv2.GaussianBlur(face, (cfg.blur_kernel, cfg.blur_kernel), 0)
    inverse = cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(
        face, matrix, (w, h), flags=cv2.INTER_LINEAR | inverse, borderMode=cv2.BORDER_REPLICATE
    )
    square = cv2.warpAffine(
        np.ones((size, size), np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST | inverse, borderValue=0
    )
    region = cv2.erode(square, np.ones((3, 3), np.uint8)).astype(bool)  # no edge pixel half outside
    if use_hull:
        region &= hull_region(landmarks, (h, w))
    fake = np.where(region[..., None], back, image)
    return fake, region.astype(np.float32)


class FaceWarper:
    """FWA's synthesis as a ``SynthPairDataset`` synthesiser (picklable)."""

    def __init__(self, cfg: FaceWarpConfig | None = None) -> None:
        self.cfg = cfg or FaceWarpConfig()

    def __call__(
        self, image: np.ndarray, landmarks: np.ndarray, path: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return face_warp(image, landmarks, rng, self.cfg)
