"""Face manipulations mirroring FF++'s five methods, each leaving its own trace, blended through a mask.

All work on uncompressed uint8 frames of one target video frame (``real``, its 81 landmarks ``lm``) and
return a :class:`Fake`: the image, the binary mask (0/255, FF++ style) and the fake's landmarks. Pixels
where the blend mask is 0 are copied from ``real`` unchanged.

- ``swap`` (DF, FSh and most stand-ins): the source identity rendered in the target's pose goes through a
  low-resolution random encoder-decoder (``autoencoder.py``), optional colour transfer, and a soft blend;
- ``landmark_swap`` (FS): the source's own frame warped onto the target's landmarks, no colour correction;
- ``expression_warp`` (F2F): eyes and mouth warped towards another expression's landmarks;
- ``mouth_rerender`` (NT): the mouth warped to another expression and re-rendered at low resolution with
  nearest-neighbour upsampling (blocky texture).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detect.data.synthetic import landmarks as L
from detect.data.synthetic.autoencoder import RandomAutoencoder
from detect.data.synthetic.warp import hull_mask, piecewise_affine


@dataclass
class Fake:
    """A manipulated frame before the codec."""

    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class SwapParams:
    """Knobs of ``swap``: generator resolution and residual, colour transfer, mask and blending."""

    gen_res: int = 64
    strength: float = 0.05
    checkerboard: bool = True
    colour: str = "mean"
    mask: str = "hull68"
    erode: float = 0.05
    feather: float = 0.05
    sharpen: float = 0.0
    noise: float = 0.0


def alpha_roi(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of where ``alpha`` is at least 1/255 (None if nowhere)."""
    inside = alpha >= 1.0 / 255.0
    rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
    if not rows.size:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def blend_roi(
    real: np.ndarray, fake_roi: np.ndarray, alpha: np.ndarray, roi: tuple[slice, slice] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Blend a fake given over ``roi`` only (see :func:`blend`)."""
    out = real.copy()
    inside = alpha >= 1.0 / 255.0
    if roi is not None:
        a = np.where(inside[roi], np.minimum(alpha[roi], 1.0), 0.0).astype(np.float32)[..., None]
        r = real[roi].astype(np.float32)
        mixed = np.clip(np.rint(r + (np.asarray(fake_roi, np.float32) - r) * a), 0, 255).astype(np.uint8)
        out[roi] = np.where(inside[roi][..., None], mixed, real[roi])
    return out, (inside * 255).astype(np.uint8)


def blend(real: np.ndarray, fake: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``alpha``·fake + (1-alpha)·real as uint8; alpha below 1/255 counts as 0 (pixels kept exactly).

    Returns (image, binary mask 0/255 of where alpha > 0).
    """
    roi = alpha_roi(alpha)
    return blend_roi(real, fake[roi] if roi is not None else fake, alpha, roi)


def colour_transfer(src: np.ndarray, ref: np.ndarray, weight: np.ndarray, mode: str) -> np.ndarray:
    """Match ``src``'s per-channel mean (``mean``) or mean and std (``full``) to ``ref`` under ``weight``."""
    if mode == "none":
        return src
    if mode not in ("mean", "full"):
        raise ValueError(f"unknown colour transfer {mode!r} (none, mean, full)")
    sel = weight > 0.5
    if sel.sum() < 16:
        return src
    s, r = src[sel], ref[sel]
    ms, mr = s.mean(0), r.mean(0)
    if mode == "mean":
        return src - ms + mr
    ss, sr = s.std(0) + 1e-4, r.std(0) + 1e-4
    return (src - ms) * (sr / ss) + mr


def face_alpha(lm: np.ndarray, kind: str, scale: float, erode: float, feather: float, size: int) -> np.ndarray:
    """Blend alpha from the landmarks: ``hull68`` (dlib points), ``face81`` (with forehead), ``inner``."""
    pts = {"hull68": lm[:68], "face81": lm, "inner": lm[17:68]}.get(kind)
    if pts is None:
        raise ValueError(f"unknown mask kind {kind!r} (hull68, face81, inner)")
    return hull_mask(size, pts, grow=-erode * scale, blur=feather * scale)


def _square_box(pts: np.ndarray, margin: float) -> tuple[int, int, int]:
    lo, hi = pts.min(0), pts.max(0)
    side = int(np.ceil((hi - lo).max() * (1 + margin)))
    side += side % 4
    c = (lo + hi) / 2
    return int(round(c[0] - side / 2)), int(round(c[1] - side / 2)), side


def _crop(img: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """A ``side``-square window at (x0, y0), reflecting the image beyond its borders."""
    h, w = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:
        return img[y0 : y0 + side, x0 : x0 + side]
    pad = side
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    return padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]


def _paste(canvas: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> np.ndarray:
    out = canvas.copy()
    h, w = patch.shape[:2]
    size_y, size_x = canvas.shape[:2]
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(size_y, y0 + h), min(size_x, x0 + w)
    if ye > ys and xe > xs:
        out[ys:ye, xs:xe] = patch[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


def swap(
    real: np.ndarray,
    lm: np.ndarray,
    source: np.ndarray,
    source_lm: np.ndarray,
    scale: float,
    net: RandomAutoencoder,
    p: SwapParams,
    rng: np.random.Generator,
) -> Fake:
    """Identity swap: ``source`` (the other identity in the target's pose) through the generator."""
    size = real.shape[0]
    alpha = face_alpha(lm, p.mask, scale, p.erode, p.feather, size)
    x0, y0, side = _square_box(lm[:68], 0.15)
    face = _crop(source, x0, y0, side).astype(np.float32) / 255.0
    small = cv2.resize(face, (p.gen_res, p.gen_res), interpolation=cv2.INTER_AREA)
    gen = small + net.residual(small, p.strength) if p.strength > 0 else small
    up = cv2.resize(gen, (side, side), interpolation=cv2.INTER_LINEAR)
    if p.sharpen > 0:
        up = up + p.sharpen * (up - cv2.GaussianBlur(up, (0, 0), 1.5))
    if p.noise > 0:
        up = up + rng.normal(0, p.noise, up.shape).astype(np.float32)
    roi = alpha_roi(alpha)
    if roi is None:
        return Fake(real.copy(), np.zeros(real.shape[:2], np.uint8), lm.copy())
    ref = real[roi].astype(np.float32) / 255.0
    generated = _paste(ref, up, x0 - roi[1].start, y0 - roi[0].start)
    generated = colour_transfer(generated, ref, alpha[roi], p.colour)
    image, mask = blend_roi(real, np.clip(generated * 255.0, 0, 255), alpha, roi)
    out_lm = lm.copy()
    out_lm[17:68] = source_lm[17:68]
    return Fake(image, mask, out_lm)


def landmark_swap(
    real: np.ndarray,
    lm: np.ndarray,
    source: np.ndarray,
    source_lm: np.ndarray,
    scale: float,
    erode: float = 0.03,
    feather: float = 0.015,
) -> Fake:
    """FaceSwap-style: warp the source's own frame onto the target's landmarks; colours left unmatched."""
    size = real.shape[0]
    warped = piecewise_affine(source, source_lm, lm, margin=4)
    alpha = face_alpha(lm, "hull68", scale, erode, feather, size)
    image, mask = blend(real, warped, alpha)
    return Fake(image, mask, lm.copy())


EXPRESSION_POINTS = tuple(range(4, 13)) + L.BROWS + L.EYES + L.MOUTH
MOUTH_POINTS = tuple(range(5, 12)) + L.MOUTH


def expression_warp(
    real: np.ndarray,
    lm: np.ndarray,
    target_lm: np.ndarray,
    scale: float,
    points: tuple[int, ...] = EXPRESSION_POINTS,
    grow: float = 0.08,
    feather: float = 0.04,
) -> Fake:
    """Face2Face-style reenactment: move ``points`` to ``target_lm``'s and warp the frame with them."""
    size = real.shape[0]
    new_lm = lm.copy()
    idx = list(points)
    new_lm[idx] = target_lm[idx]
    region = np.concatenate([new_lm[idx], lm[idx]])
    warped = piecewise_affine(real, lm, new_lm, margin=(grow + 3 * feather) * scale + 2)
    alpha = hull_mask(size, region, grow=grow * scale, blur=feather * scale)
    image, mask = blend(real, warped, alpha)
    return Fake(image, mask, new_lm)


def mouth_rerender(
    real: np.ndarray,
    lm: np.ndarray,
    target_lm: np.ndarray,
    scale: float,
    block: int = 6,
    texture: float = 0.04,
    grow: float = 0.1,
    feather: float = 0.03,
    seed: int = 0,
) -> Fake:
    """NeuralTextures-style: new mouth shape, re-rendered at 1/``block`` resolution, upsampled blockily."""
    size = real.shape[0]
    new_lm = lm.copy()
    idx = list(MOUTH_POINTS)
    new_lm[idx] = target_lm[idx]
    warped = piecewise_affine(real, lm, new_lm).astype(np.float32) / 255.0
    small = cv2.resize(warped, (size // block, size // block), interpolation=cv2.INTER_AREA)
    if texture > 0:  # a fixed "neural texture" pattern, the same for every video of the method
        pattern = np.random.default_rng(seed).normal(0, texture, (4, 4, 3)).astype(np.float32)
        reps = (small.shape[0] // 4 + 1, small.shape[1] // 4 + 1, 1)
        small = small + np.tile(pattern, reps)[: small.shape[0], : small.shape[1]]
    rendered = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
    region = np.concatenate([new_lm[list(L.MOUTH)], lm[list(L.MOUTH)]])
    alpha = hull_mask(size, region, grow=grow * scale, blur=feather * scale)
    image, mask = blend(real, np.clip(rendered * 255.0, 0, 255), alpha)
    return Fake(image, mask, new_lm)
