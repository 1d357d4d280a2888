"""Blend masks shared by SBI and CBI: landmark hulls, source/mask geometry, the soft blend mask, the ratio.

Sources (docs/blendfakes.md):

- the four hulls are Face X-ray's (Li et al., CVPR 2020; the ``dfl_full``/``extended``/``components``/
  ``facehull`` masks of its public re-implementation that SBI's code imports);
- the random affine (source and mask), the elastic deformation (mask only), the blend mask (resize,
  blur, keep the maximum, blur) and the blend ratios are SBI's (Shiohara & Yamasaki, CVPR 2022, Sec. 3.2
  "Mask Generation" and "Blending", and its released code).

All randomness comes from the ``numpy.random.Generator`` passed in; nothing here reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detect.data.blend.blend_config import BlendConfig

# ---------------------------------------------------------------- landmark hulls (Face X-ray)


def hull_parts(landmarks: np.ndarray, kind: str, forehead_in_full: bool = True) -> list[np.ndarray]:
    """The point sets (int32, N×2, x/y) whose convex hulls make up hull ``kind`` (Face X-ray's masks).

    ``landmarks``: 68×2 (dlib order) or 81×2 (68 + 13 forehead points). ``full``: jaw + mouth, nose ridge,
    brows (+ the forehead points of 81-point landmarks if ``forehead_in_full``: docs/blendfakes.md, "full face
    incl. forehead points"); ``extended``: ``components`` with the brows raised by half their distance to
    the eyes; ``components``: eight face parts; ``facehull``: the convex hull of all points given.
    Coordinates are truncated to int32 as the released code does.
    """
    lm = np.asarray(landmarks)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 68:
        raise ValueError(f"landmarks must be 68×2 or 81×2, got {lm.shape}")
    lm = lm.astype(np.int32)
    if kind == "facehull":
        return [lm]
    if kind == "full":
        upper = [lm[17:27], lm[0:1], lm[27:28], lm[16:17], lm[33:34]]
        if forehead_in_full and len(lm) > 68:
            upper.append(lm[68:])
        return [
            np.concatenate([lm[0:17], lm[48:68], lm[0:1], lm[8:9], lm[16:17]]),
            np.concatenate([lm[27:31], lm[33:34]]),
            np.concatenate(upper),
        ]
    if kind == "extended":
        lm = lm[:68].copy()
        ml = (lm[36] + lm[0]) // 2  # between the face side and the eye corner
        mr = (lm[16] + lm[45]) // 2
        ql = (lm[36] + ml) // 2
        qr = (lm[45] + mr) // 2
        bot_l = np.stack([ql, lm[36], lm[37], lm[38], lm[39]])
        bot_r = np.stack([lm[42], lm[43], lm[44], lm[45], qr])
        lm[17:22] = lm[17:22] + (lm[17:22] - bot_l) // 2
        lm[22:27] = lm[22:27] + (lm[22:27] - bot_r) // 2
        return _components(lm)
    if kind == "components":
        return _components(lm)
    raise ValueError(f"unknown hull type {kind!r}")


def _components(lm: np.ndarray) -> list[np.ndarray]:
    chin = lm[8:9]
    return [
        np.concatenate([lm[0:9], lm[17:18]]),  # right jaw
        np.concatenate([lm[8:17], lm[26:27]]),  # left jaw
        np.concatenate([lm[17:20], chin]),  # right cheek
        np.concatenate([lm[24:27], chin]),  # left cheek
        np.concatenate([lm[19:25], chin]),  # nose ridge
        np.concatenate([lm[17:22], lm[27:28], lm[31:36], chin]),  # right eye
        np.concatenate([lm[22:27], lm[27:28], lm[31:36], chin]),  # left eye
        np.concatenate([lm[27:31], lm[31:36]]),  # nose
    ]


def hull_mask(
    landmarks: np.ndarray, kind: str, shape: tuple[int, int], forehead_in_full: bool = True
) -> np.ndarray:
    """HxW uint8 mask (1 inside) of hull ``kind``: the union of its parts' filled convex hulls."""
    mask = np.zeros(shape[:2], np.uint8)
    for part in hull_parts(landmarks, kind, forehead_in_full):
        cv2.fillConvexPoly(mask, cv2.convexHull(part), 1)
    return mask


def random_hull_mask(
    landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, cfg: BlendConfig
) -> tuple[np.ndarray, str]:
    """SBI's mask draw: with ``p_first_68`` keep the 68 dlib points, then one of the hull types."""
    if len(landmarks) > 68 and rng.random() < cfg.p_first_68:
        landmarks = landmarks[:68]
    kind = cfg.hull_types[int(rng.integers(len(cfg.hull_types)))]
    return hull_mask(landmarks, kind, shape, cfg.forehead_in_full), kind


# ---------------------------------------------------------------- geometry (SBI, Sec. 3.2)


def random_affine(rng: np.random.Generator, shape: tuple[int, int], cfg: BlendConfig) -> np.ndarray:
    """A 2×3 forward affine: per-axis scale about the centre, then a translation (SBI's ``randaffine``).

    Translation x ±``translate_x``·W, y ±``translate_y``·H; scales x and y drawn independently from
    ``scale`` (albumentations' ``Affine(scale=(a, b))`` with ``keep_ratio=False``, as the code used).
    """
    h, w = shape[:2]
    tx = rng.uniform(-cfg.translate_x, cfg.translate_x) * w
    ty = rng.uniform(-cfg.translate_y, cfg.translate_y) * h
    sx, sy = rng.uniform(cfg.scale[0], cfg.scale[1], size=2)
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    return np.array([[sx, 0.0, cx - sx * cx + tx], [0.0, sy, cy - sy * cy + ty]], np.float64)


def warp_affine(img: np.ndarray, matrix: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Apply a forward 2×3 affine (bilinear for images, nearest for masks; zero border)."""
    h, w = img.shape[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(img, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def elastic_fields(
    rng: np.random.Generator, shape: tuple[int, int], alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Displacements dx, dy = alpha · Gaussian_sigma(U(-1, 1) noise), as albumentations 1.x (Simard et al.).

    The Gaussian is scipy's ``gaussian_filter`` (reflect border, truncated at 4 sigma) done by OpenCV.
    albumentations 2.x's ``ElasticTransform`` differs: Gaussian noise divided by its maximum |value| (a
    displacement ~2.7× smaller at 256² for the same alpha), both fields blurred as one stacked image
    (replicate border), and a constant-zero remap border by default.
    """
    h, w = shape[:2]
    noise = rng.random((2, h, w), dtype=np.float32)
    noise *= 2.0
    noise -= 1.0
    k = 2 * int(4.0 * sigma + 0.5) + 1
    dx, dy = (cv2.GaussianBlur(n, (k, k), sigma, borderType=cv2.BORDER_REFLECT) for n in noise)
    dx *= alpha
    dy *= alpha
    return dx, dy


_GRID: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _GRID:
        _GRID[(h, w)] = (
            np.broadcast_to(np.arange(w, dtype=np.float32), (h, w)),
            np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)),
        )
    return _GRID[(h, w)]


def elastic_mask(mask: np.ndarray, rng: np.random.Generator, cfg: BlendConfig) -> np.ndarray:
    """Elastic deformation of a mask (nearest, reflect-101 border), SBI's ``ElasticTransform(50, 7)``."""
    if cfg.elastic_alpha == 0:
        return mask
    h, w = mask.shape[:2]
    dx, dy = elastic_fields(rng, (h, w), cfg.elastic_alpha, cfg.elastic_sigma)
    gx, gy = _grid(h, w)
    return cv2.remap(mask, gx + dx, gy + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)


def warp_source_and_mask(
    source: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: BlendConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SBI's ``randaffine``: one random affine on source and mask, then the elastic on the mask only.

    Returns (warped source, warped mask, the 2×3 affine).
    """
    matrix = random_affine(rng, source.shape[:2], cfg)
    source = warp_affine(source, matrix)
    mask = elastic_mask(warp_affine(mask, matrix, nearest=True), rng, cfg)
    return source, mask, matrix


# ---------------------------------------------------------------- blend mask and ratio (SBI, Sec. 3.2)


@dataclass(frozen=True)
class MaskParams:
    """One draw of the blend-mask pipeline: resized size (h, w), the two odd kernels, the second sigma."""

    height: int
    width: int
    kernel1: int
    kernel2: int
    sigma2: int


def draw_mask_params(rng: np.random.Generator, cfg: BlendConfig) -> MaskParams:
    """Resize to a random size in ``mask_size`` (each side), odd kernels, integer sigma (SBI's code)."""
    lo, hi = cfg.mask_size
    h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    k1 = int(rng.choice(np.arange(cfg.blur1_kernel[0], cfg.blur1_kernel[1] + 1, 2)))
    k2 = int(rng.choice(np.arange(cfg.blur2_kernel[0], cfg.blur2_kernel[1] + 1, 2)))
    s2 = int(rng.integers(cfg.blur2_sigma[0], cfg.blur2_sigma[1] + 1))
    return MaskParams(h, w, k1, k2, s2)


def draw_ratio(rng: np.random.Generator, cfg: BlendConfig) -> float:
    """The blend ratio, uniform over ``ratios`` ({0.25, 0.5, 0.75, 1, 1, 1} by default)."""
    return float(cfg.ratios[int(rng.integers(len(cfg.ratios)))])


def _nonzero_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the non-zero pixels, or None when there are none."""
    x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
    return None if w == 0 else (y, y + h, x, x + w)


def blend_mask(mask: np.ndarray, params: MaskParams) -> np.ndarray:
    """SBI's ``get_blend_mask``: HxW float32 in [0, 1], maximum 1 (up to the final resize).

    Resize to (``height``, ``width``), Gaussian blur (``kernel1``, sigma from the kernel), divide by the
    maximum, zero everything below 1 (an erosion that keeps the plateau), Gaussian blur (``kernel2``,
    ``sigma2``), divide by the maximum, resize back. The blurs run on the mask's bounding box widened by
    both kernel radii: exactly the full-image result, since everything beyond is zero.
    """
    h, w = mask.shape[:2]
    small = cv2.resize(mask.astype(np.float32), (params.width, params.height), interpolation=cv2.INTER_LINEAR)
    box = _nonzero_box(small)
    if box is None:
        raise ValueError("blend mask is empty: the landmark hull lies outside the image")
    pad = params.kernel1 // 2 + params.kernel2 // 2 + 2
    y0, y1 = max(box[0] - pad, 0), min(box[1] + pad, params.height)
    x0, x1 = max(box[2] - pad, 0), min(box[3] + pad, params.width)
    crop = small[y0:y1, x0:x1]
    b = cv2.GaussianBlur(crop, (params.kernel1, params.kernel1), 0)
    b /= b.max()
    b[b < 1] = 0
    b = cv2.GaussianBlur(b, (params.kernel2, params.kernel2), params.sigma2)
    b /= b.max()
    small[:] = 0
    small[y0:y1, x0:x1] = b
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def alpha_blend(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight·source + (1 − weight)·target`` rounded to uint8; pixels with weight 0 keep the target."""
    out = target.copy()
    box = _nonzero_box(weight)
    if box is None:
        return out
    y0, y1, x0, x1 = box
    w = weight[y0:y1, x0:x1, None]
    t = target[y0:y1, x0:x1].astype(np.float32)
    mixed = t + w * (source[y0:y1, x0:x1].astype(np.float32) - t)
    out[y0:y1, x0:x1] = np.rint(mixed).astype(np.uint8)
    return out


def dynamic_blend(
    source: np.ndarray, target: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: BlendConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """SBI's ``dynamic_blend``: soft mask × ratio, then blend. Returns (image, weight HxW, ratio)."""
    weight = blend_mask(mask, draw_mask_params(rng, cfg))
    ratio = draw_ratio(rng, cfg)
    if ratio != 1.0:
        weight *= ratio
    return alpha_blend(source, target, weight), weight, ratio
