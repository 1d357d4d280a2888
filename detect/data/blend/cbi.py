"""Cross-blended images (CBI): Face X-ray's blending (Li et al., "Face X-ray for More General Face Forgery
Detection", CVPR 2020, Sec. 4.1) as ProDet (Cheng et al., NeurIPS 2024, Sec. 3.1) uses it with SBI's mask.

Background: the real frame. Foreground: one of the nearest real faces of other videos by landmark distance
(``LandmarkIndex``). The hull mask comes from the background's landmarks; the foreground and the mask get
SBI's random affine, the mask SBI's elastic; the foreground's colours are matched to the background's
inside the mask (per channel, ``(x − μ_fg)·σ_bg/σ_fg + μ_bg``, clipped); then SBI's soft mask and ratio.
No source-target augmentation (docs/blendfakes.md, "CBI").
"""

from __future__ import annotations

import cv2
import numpy as np

from detect.data.blend.blend_config import BlendConfig
from detect.data.blend.landmark_index import LandmarkIndex
from detect.data.blend.masks import dynamic_blend, random_hull_mask, warp_source_and_mask
from detect.data.blend.result import BlendResult


def colour_transfer(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the foreground's per-channel mean and standard deviation inside ``mask`` to the background's.

    Inside ``mask > 0``: ``(x − μ_fg)·σ_bg/σ_fg + μ_bg`` clipped to [0, 255] and rounded (population
    statistics over the masked pixels of each image); outside, the foreground is returned unchanged.
    Works on the mask's bounding box only.
    """
    out = foreground.copy()
    m = (mask > 0).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0:
        return out
    m = m[y : y + h, x : x + w]
    fg = foreground[y : y + h, x : x + w]
    mu_f, sd_f = (v.ravel() for v in cv2.meanStdDev(fg, mask=m))
    mu_b, sd_b = (v.ravel() for v in cv2.meanStdDev(background[y : y + h, x : x + w], mask=m))
    gain = sd_b / np.maximum(sd_f, 1e-6)
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(np.rint((levels - mu_f) * gain + mu_b), 0, 255).astype(np.uint8)  # 256 × 3
    moved = cv2.LUT(fg, lut.reshape(1, 256, 3))
    np.copyto(out[y : y + h, x : x + w], moved, where=m[..., None].astype(bool))
    return out


def cross_blend(
    background: np.ndarray,
    bg_landmarks: np.ndarray,
    foreground: np.ndarray,
    rng: np.random.Generator,
    cfg: BlendConfig,
) -> BlendResult:
    """CBI from a background frame, its 68/81×2 landmarks and a foreground frame (HxWx3 uint8 RGB, same size).

    The foreground is chosen by the caller (``CrossBlender.pick_foreground``); no files are read here.
    """
    if foreground.shape != background.shape:
        raise ValueError(f"foreground {foreground.shape} and background {background.shape} differ in shape")
    mask, kind = random_hull_mask(bg_landmarks, background.shape[:2], rng, cfg)
    warped, warped_mask, matrix = warp_source_and_mask(foreground, mask, rng, cfg)
    source = colour_transfer(warped, background, warped_mask)
    out, weight, ratio = dynamic_blend(source, background, warped_mask, rng, cfg)
    return BlendResult(
        image=out,
        mask=weight,
        ratio=ratio,
        hull_type=kind,
        target=background,
        source=source,
        hull=mask,
        warped_hull=warped_mask,
        affine=matrix,
        transformed="none",
    )


class CrossBlender:
    """CBI with its own generator: ``pick_foreground(path)`` names the foreground to load, then
    ``blender(background, landmarks, foreground)``; ``reseed(seed)`` restarts the generator.

    For results independent of worker and order, pass a per-sample generator to both calls.
    """

    def __init__(self, index: LandmarkIndex, cfg: BlendConfig | None = None, seed: int = 0) -> None:
        self.index, self.cfg = index, cfg or BlendConfig()
        if self.index.k < self.cfg.n_neighbours:
            raise ValueError(
                f"the landmark index holds {self.index.k} neighbours; {self.cfg.n_neighbours} needed"
            )
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def pick_foreground(self, path: str, rng: np.random.Generator | None = None) -> str:
        """The path of a foreground for the real frame ``path``: one of its nearest other-video reals."""
        cands = self.index.candidates(path)[: self.cfg.n_neighbours]
        if not cands:
            raise ValueError(f"{path} has no real frame from another video in the landmark index")
        return cands[int((self.rng if rng is None else rng).integers(len(cands)))]

    def __call__(
        self,
        background: np.ndarray,
        bg_landmarks: np.ndarray,
        foreground: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> BlendResult:
        """CBI of one background frame (``rng``: a per-sample generator instead of the blender's own)."""
        return cross_blend(background, bg_landmarks, foreground, self.rng if rng is None else rng, self.cfg)
