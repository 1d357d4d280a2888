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

Each takes the frame's :class:`~detect.data.synthetic.temporal.FrameJitter` (none by default): a fake is
generated frame by frame, so its alignment (``shift``), blend boundary (``grow``), colour correction
(``colour``) and relighting (``gain``, ``angle``) differ a little in every frame, the temporal trace of
per-frame generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detect.data.synthetic import landmarks as L
from detect.data.synthetic.autoencoder import RandomAutoencoder
from detect.data.synthetic.temporal import NO_JITTER, FrameJitter
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
    sel = (weight > 0.5).astype(np.uint8)
    if int(sel.sum()) < 16:
        return src
    ms, ss = (v.reshape(-1) for v in cv2.meanStdDev(src, mask=sel))
    mr, sr = (v.reshape(-1) for v in cv2.meanStdDev(ref, mask=sel))
    if mode == "mean":
        return src + (mr - ms).astype(np.float32)
    return (src - ms.astype(np.float32)) * ((sr + 1e-4) / (ss + 1e-4)).astype(np.float32) + mr.astype(
        np.float32
    )


def mask_points(lm: np.ndarray, kind: str) -> np.ndarray:
    """Landmarks whose hull is the blend mask: ``hull68`` (dlib's), ``face81`` (with forehead), ``inner``."""
    pts = {"hull68": lm[:68], "face81": lm, "inner": lm[17:68]}.get(kind)
    if pts is None:
        raise ValueError(f"unknown mask kind {kind!r} (hull68, face81, inner)")
    return pts


def face_alpha(
    lm: np.ndarray, kind: str, scale: float, erode: float, feather: float, size: int, grow: float = 0.0
) -> np.ndarray:
    """Blend alpha: the hull of ``mask_points``, eroded by ``erode``·scale (less ``grow`` pixels), feathered
    by ``feather``·scale."""
    return hull_mask(size, mask_points(lm, kind), grow=grow - erode * scale, blur=feather * scale)


def shifted(img: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``img`` moved by ``shift`` = (x, y) pixels (bilinear, borders reflected); unchanged for no shift."""
    if shift[0] == 0 and shift[1] == 0:
        return img
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _tinted(img: np.ndarray, colour: tuple[float, float, float], unit: float) -> np.ndarray:
    """``img`` (float, white = ``unit``) plus a per-channel ``colour`` offset (in [0, 1] units)."""
    if not any(colour):
        return img
    return img + np.float32(unit) * np.asarray(colour, np.float32)


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
    jitter: FrameJitter = NO_JITTER,
) -> Fake:
    """Identity swap: ``source`` (the other identity in the target's pose) through the generator; the
    generated face misaligned by ``jitter.shift``, its colour correction off by ``jitter.colour``."""
    size = real.shape[0]
    alpha = face_alpha(lm, p.mask, scale, p.erode, p.feather, size, jitter.grow)
    x0, y0, side = _square_box(mask_points(lm, p.mask), 0.15)
    face = _crop(source, x0, y0, side).astype(np.float32) / 255.0
    small = cv2.resize(face, (p.gen_res, p.gen_res), interpolation=cv2.INTER_AREA)
    gen = small + net.residual(small, p.strength) if p.strength > 0 else small
    up = shifted(cv2.resize(gen, (side, side), interpolation=cv2.INTER_LINEAR), jitter.shift)
    if p.sharpen > 0:
        up = up + p.sharpen * (up - cv2.GaussianBlur(up, (0, 0), 1.5))
    if p.noise > 0:
        up = up + rng.normal(0, p.noise, up.shape).astype(np.float32)
    roi = alpha_roi(alpha)
    if roi is None:
        return Fake(real.copy(), np.zeros(real.shape[:2], np.uint8), lm.copy())
    ref = real[roi].astype(np.float32) / 255.0
    generated = _paste(ref, up, x0 - roi[1].start, y0 - roi[0].start)
    generated = _tinted(colour_transfer(generated, ref, alpha[roi], p.colour), jitter.colour, 1.0)
    image, mask = blend_roi(real, np.clip(generated * 255.0, 0, 255), alpha, roi)
    out_lm = lm.copy()
    out_lm[17:68] = source_lm[17:68]
    return Fake(image, mask, out_lm)


def render_lowres(image: np.ndarray, roi: tuple[slice, slice] | None, factor: float) -> np.ndarray:
    """``image`` with its ``roi`` re-rendered at ``factor`` of its resolution (area down, linear up): the
    missing fine texture of a face rendered from a low-resolution model. Unchanged if ``factor`` >= 1 or no
    ROI."""
    if roi is None or factor >= 1:
        return image
    part = image[roi]
    h, w = part.shape[:2]
    small_size = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = cv2.resize(part, small_size, interpolation=cv2.INTER_AREA)
    out = image.copy()
    out[roi] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def landmark_swap(
    real: np.ndarray,
    lm: np.ndarray,
    source: np.ndarray,
    source_lm: np.ndarray,
    scale: float,
    erode: float = 0.03,
    feather: float = 0.008,
    render: float = 0.7,
    jitter: FrameJitter = NO_JITTER,
) -> Fake:
    """FaceSwap-style: warp the source's own frame onto the target's landmarks (off by ``jitter.shift``),
    rendered at ``render`` of the frame's resolution (FaceSwap's textured 3D model); colours left unmatched
    (the rendering's own colour off by ``jitter.colour``)."""
    size = real.shape[0]
    warped = piecewise_affine(source, source_lm, lm + np.float32(jitter.shift), margin=4)
    alpha = face_alpha(lm, "hull68", scale, erode, feather, size, jitter.grow)
    roi = alpha_roi(alpha)
    if roi is not None and any(jitter.colour):
        warped = warped.copy()
        warped[roi] = np.clip(_tinted(warped[roi].astype(np.float32), jitter.colour, 255.0), 0, 255)
    warped = render_lowres(warped, roi, render)
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
    relight: float = 0.35,
    render: float = 0.85,
    seed: int = 0,
    jitter: FrameJitter = NO_JITTER,
) -> Fake:
    """Face2Face-style reenactment: move ``points`` to ``target_lm``'s and warp the frame with them.

    The warped face is "re-rendered" under a slightly different illumination (a brightness ramp of
    +-``relight`` across the blended region, as a parametric face model's own lighting would leave; its
    direction drawn from ``seed``) and at ``render`` of the frame's resolution (the model's texture is
    coarser than the video). Per frame, the moved points are off by ``jitter.shift``, the mask's boundary
    by ``jitter.grow`` pixels, and the relighting's amplitude and direction by ``jitter.gain`` and
    ``jitter.angle``.
    """
    size = real.shape[0]
    new_lm = lm.copy()
    idx = list(points)
    new_lm[idx] = target_lm[idx] + np.float32(jitter.shift)
    region = np.concatenate([new_lm[idx], lm[idx]])
    warped = piecewise_affine(real, lm, new_lm, margin=(grow + 3 * feather) * scale + 2)
    alpha = hull_mask(size, region, grow=grow * scale + jitter.grow, blur=feather * scale)
    relight = relight * jitter.gain
    if relight > 0:  # a light from another direction: a brightness ramp of +-relight across the face
        theta = np.random.default_rng(seed).uniform(0, 2 * np.pi) + jitter.angle
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        c = lm[:68].mean(0)
        ramp = ((xx - c[0]) * np.cos(theta) + (yy - c[1]) * np.sin(theta)) / scale
        warped = np.clip(warped.astype(np.float32) * (1 + relight * np.clip(ramp, -1, 1))[..., None], 0, 255)
    warped = render_lowres(warped, alpha_roi(alpha), render)
    image, mask = blend(real, warped, alpha)
    return Fake(image, mask, new_lm)


def mouth_rerender(
    real: np.ndarray,
    lm: np.ndarray,
    rendered: np.ndarray,
    rendered_lm: np.ndarray,
    scale: float,
    block: int = 8,
    texture: float = 0.1,
    grow: float = 0.15,
    feather: float = 0.03,
    seed: int = 0,
    jitter: FrameJitter = NO_JITTER,
) -> Fake:
    """NeuralTextures-style: the mouth region replaced by a re-rendering with another mouth expression,
    produced at 1/``block`` resolution with a fixed "neural texture" pattern and upsampled blockily. Per
    frame the re-rendering is off by ``jitter.shift`` and ``jitter.colour``, the mask by ``jitter.grow``."""
    size = real.shape[0]
    region = np.concatenate([rendered_lm[list(L.MOUTH)], lm[list(L.MOUTH)]])
    alpha = hull_mask(size, region, grow=grow * scale + jitter.grow, blur=feather * scale)
    roi = alpha_roi(alpha)
    if roi is None:
        return Fake(real.copy(), np.zeros(real.shape[:2], np.uint8), lm.copy())
    # snap the box to the block grid so the blocks are aligned to the image
    y0, x0 = (roi[0].start // block) * block, (roi[1].start // block) * block
    y1 = min(size, -(-roi[0].stop // block) * block)
    x1 = min(size, -(-roi[1].stop // block) * block)
    part = shifted(rendered, jitter.shift)[y0:y1, x0:x1].astype(np.float32) / 255.0
    h, w = part.shape[:2]
    small = cv2.resize(part, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    if texture > 0:  # a fixed "neural texture" pattern, the same for every video of the method
        pattern = np.random.default_rng(seed).normal(0, texture, (4, 4, 3)).astype(np.float32)
        reps = (small.shape[0] // 4 + 1, small.shape[1] // 4 + 1, 1)
        small = small + np.tile(pattern, reps)[: small.shape[0], : small.shape[1]]
    small = _tinted(small, jitter.colour, 1.0)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    full_roi = (slice(y0, y1), slice(x0, x1))
    image, mask = blend_roi(real, np.clip(up * 255.0, 0, 255), alpha, full_roi)
    new_lm = lm.copy()
    idx = list(MOUTH_POINTS)
    new_lm[idx] = rendered_lm[idx]
    return Fake(image, mask, new_lm)
