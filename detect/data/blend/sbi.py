"""Self-blended images (SBI: Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

One real frame and its landmarks make both the source and the target (Sec. 3.2): a landmark hull mask
(Face X-ray's hulls), source-target augmentation on one of the two copies (colour: RGBShift,
HueSaturationValue, RandomBrightnessContrast; frequency: downscale ×2/×4 or sharpen), a random affine on
the source and the mask, an elastic deformation of the mask, the soft blend mask and a blend ratio.
Parameters and the released code's choices: ``BlendConfig`` and docs/blendfakes.md.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from detect.data.blend.blend_config import BlendConfig
from detect.data.blend.masks import dynamic_blend, random_hull_mask, warp_source_and_mask
from detect.data.blend.result import BlendResult


def source_transform_list(cfg: BlendConfig) -> list[A.BasicTransform]:
    """The source-target augmentation (albumentations 2.x names; 2.x ignores 1.x names, so they matter).

    HueSaturationValue ±0.3 on uint8 is hue/saturation/value steps of 0.3 (of 180/255): almost only the
    HSV round trip, as in the released code (albumentations 1.x had the same units).
    """
    s, h = cfg.rgb_shift, cfg.hsv_shift
    downscales = [
        A.Downscale(
            scale_range=(1.0 / f, 1.0 / f),
            interpolation_pair={"downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_LINEAR},
            p=1.0,
        )
        for f in cfg.downscale_factors
    ]
    return [
        A.RGBShift(r_shift_limit=(-s, s), g_shift_limit=(-s, s), b_shift_limit=(-s, s), p=cfg.p_rgb_shift),
        A.HueSaturationValue(
            hue_shift_limit=(-h, h), sat_shift_limit=(-h, h), val_shift_limit=(-h, h), p=cfg.p_hsv
        ),
        A.RandomBrightnessContrast(
            brightness_limit=(-cfg.brightness, cfg.brightness),
            contrast_limit=(-cfg.contrast, cfg.contrast),
            p=cfg.p_brightness_contrast,
        ),
        A.OneOf(
            [
                A.OneOf(downscales, p=1.0),
                A.Sharpen(alpha=cfg.sharpen_alpha, lightness=cfg.sharpen_lightness, method="kernel", p=1.0),
            ],
            p=1.0,
        ),
    ]


def source_transforms(cfg: BlendConfig) -> A.Compose:
    """The source-target augmentation as one ``Compose`` (seed it with ``seed_transforms``)."""
    return A.Compose(source_transform_list(cfg), p=1.0)


def seed_transforms(transform: A.BasicTransform | A.BaseCompose, rng: np.random.Generator) -> None:
    """Give every node of an albumentations tree its own seed drawn from ``rng``.

    ``Compose.set_random_seed(s)`` hands the same ``s`` to every child, so children draw identical random
    streams (e.g. two p=0.3 transforms firing together); here each node gets a distinct seed.
    """
    transform.set_random_seed(int(rng.integers(2**32)))
    for child in getattr(transform, "transforms", ()):
        seed_transforms(child, rng)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    cfg: BlendConfig,
    transforms: A.Compose,
) -> BlendResult:
    """SBI from one HxWx3 uint8 RGB frame and its 68/81×2 landmarks (SBI's ``self_blending``).

    ``transforms``: ``source_transforms(cfg)``, reseeded here from ``rng``, so the result depends only on
    the inputs and ``rng``'s state.
    """
    mask, kind = random_hull_mask(landmarks, image.shape[:2], rng, cfg)
    seed_transforms(transforms, rng)
    source, target = image, image
    on_source = rng.random() < cfg.p_transform_source
    if on_source:
        source = transforms(image=image)["image"]
    else:
        target = transforms(image=image)["image"]
    warped, warped_mask, matrix = warp_source_and_mask(source, mask, rng, cfg)
    out, weight, ratio = dynamic_blend(warped, target, warped_mask, rng, cfg)
    return BlendResult(
        image=out,
        mask=weight,
        ratio=ratio,
        hull_type=kind,
        target=target,
        source=warped,
        hull=mask,
        warped_hull=warped_mask,
        affine=matrix,
        transformed="source" if on_source else "target",
    )


class SelfBlender:
    """SBI with its own generator and transforms: ``reseed(seed)`` then call ``blender(image, landmarks)``.

    For results independent of worker and order, pass a per-sample generator instead
    (``blender(image, landmarks, rng=np.random.default_rng([seed, epoch, index]))``).
    """

    def __init__(self, cfg: BlendConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg or BlendConfig()
        self.transforms = source_transforms(self.cfg)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def __call__(
        self, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator | None = None
    ) -> BlendResult:
        """SBI of one frame (``rng``: a per-sample generator instead of the blender's own)."""
        return self_blend(image, landmarks, self.rng if rng is None else rng, self.cfg, self.transforms)
