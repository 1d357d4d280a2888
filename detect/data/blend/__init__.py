"""Blendfakes any method can train with: SBI (self-blended images; Shiohara & Yamasaki, CVPR 2022) and
CBI (cross-blended images, Face X-ray style; Li et al., CVPR 2020), as ProDet uses them.

``SelfBlender(cfg)(image, landmarks)`` and ``CrossBlender(load_landmark_index(train_table, cache_dir),
cfg)`` (``pick_foreground(path)``, then ``(background, landmarks, foreground)``) return a ``BlendResult``.
See docs/blendfakes.md.
"""

from detect.data.blend.blend_config import HULL_TYPES, BlendConfig
from detect.data.blend.cbi import CrossBlender, colour_transfer, cross_blend
from detect.data.blend.index_cache import load_landmark_index
from detect.data.blend.landmark_index import LandmarkIndex, landmark_features
from detect.data.blend.result import BlendResult
from detect.data.blend.sbi import SelfBlender, self_blend, source_transforms

__all__ = [
    "HULL_TYPES",
    "BlendConfig",
    "BlendResult",
    "CrossBlender",
    "LandmarkIndex",
    "SelfBlender",
    "colour_transfer",
    "cross_blend",
    "landmark_features",
    "load_landmark_index",
    "self_blend",
    "source_transforms",
]
