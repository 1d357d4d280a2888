"""SLADD's training view (Chen et al., "Self-supervised Learning of Adversarial Example: Towards Good
Generalizations for Deepfake Detection", CVPR 2022, Sec. 3): each frame of the table with a blending
*source* and the stack of candidate forgery-region masks the synthesiser's region action picks from.

The synthesis is split so that everything random except the policy's actions runs here, in the data
workers, seeded per (seed, epoch, item): the source face (one of the nearest real faces of another video by
landmarks, the project's CBI index, ``detect.data.blend``), colour-corrected to the target inside the face
(the paper's "transformed source"), and the ``R`` region masks (:data:`REGIONS`: eyes, nose, mouth and
their combinations, each a thick line between landmark key points, elastically deformed, randomly eroded
or dilated and blurred as DeepfakeBench's ``sladd_api.mask_postprocess``). The policy network then picks
region / blending type / ratio in the training step (:mod:`detect.methods.sladd`), where the blend runs.

Items: ``{"image": [3, H, W], "source": [3, H, W], "regions": [R, H, W] float32 in [0, 1], "label": 0./1.,
"index": row}``. Fake frames of the table are passed through (source = the frame, regions zero): the
synthesiser only forges reals. One augmentation draw is shared by image, source and masks.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.blend import BlendConfig, CrossBlender, colour_transfer, load_landmark_index
from detect.data.blend.face_warp import hull_region
from detect.data.blend.masks import elastic_mask
from detect.data.images import ImageReadError, read_landmarks, read_rgb
from detect.data.transforms import Pipeline

#: SLADD's forgery regions in the released code's order (``synthesizer.parse``); parts joined by ``+``
REGIONS = (
    "left_eye",
    "right_eye",
    "eyes",
    "nose",
    "mouth",
    "nose+left_eye",
    "nose+right_eye",
    "nose+eyes",
    "nose+mouth",
    "eyes+nose+mouth",
)


def key_points(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The 68-point landmarks' key points: eye corners and centres, nose tip (33), mouth corners (48, 54)."""
    lm = np.asarray(landmarks, np.float64)
    return {
        "left_eye": lm[[36, 39]],
        "right_eye": lm[[42, 45]],
        "eyes": np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2]),
        "nose": np.stack([lm[33], (lm[36] + lm[39] + lm[42] + lm[45]) / 4]),
        "mouth": lm[[48, 54]],
    }


def part_segment(landmarks: np.ndarray, part: str) -> tuple[np.ndarray, int]:
    """(segment ``[2, 2]`` (x, y), half-width in pixels) of one part: a single eye's corners widened by
    the corner distance, both eyes' centres and the nose (tip to eye midpoint) by a quarter of the eye
    distance, the mouth corners by a third of their distance (DeepfakeBench's ``remove_*`` dilations)."""
    pts = key_points(landmarks)
    seg = pts[part]
    eyes = float(np.linalg.norm(pts["eyes"][1] - pts["eyes"][0]))
    if part in ("left_eye", "right_eye"):
        half = float(np.linalg.norm(seg[1] - seg[0]))
    elif part == "mouth":
        half = float(np.linalg.norm(seg[1] - seg[0])) / 3
    else:
        half = eyes / 4
    return seg, max(1, int(half))


def region_mask(landmarks: np.ndarray, region: str, shape: tuple[int, int]) -> np.ndarray:
    """Hard mask (uint8 0/1) of a region of :data:`REGIONS`: the union of its parts' thick segments."""
    if region not in REGIONS:
        raise ValueError(f"region {region!r}; use one of {REGIONS}")
    mask = np.zeros(shape, np.uint8)
    for part in region.split("+"):
        seg, half = part_segment(landmarks, part)
        p, q = (tuple(int(round(v)) for v in s) for s in seg)
        cv2.line(mask, p, q, 1, thickness=2 * half + 1)
    return mask


def postprocess_mask(mask: np.ndarray, rng: np.random.Generator, cfg: BlendConfig) -> np.ndarray:
    """Elastic deformation (inside the region), then erode (p 0.3) or dilate (p 0.3) with a square kernel
    of odd size 3..19 and a Gaussian blur (p 0.9, odd kernel 1..17); float32 in [0, 1]."""
    hard = mask.astype(np.float32)
    hard = elastic_mask(hard, rng, cfg) * hard
    u = rng.random()
    if u < 0.6:
        k = 2 * int(rng.integers(1, 10)) + 1
        kernel = np.ones((k, k), np.uint8)
        hard = cv2.erode(hard, kernel) if u < 0.3 else cv2.dilate(hard, kernel)
    if rng.random() < 0.9:
        k = 2 * int(rng.integers(1, 10)) - 1
        hard = cv2.GaussianBlur(hard, (k, k), 0)
    return np.clip(hard, 0.0, 1.0).astype(np.float32)


class SladdPairDataset(Dataset):
    """Every frame of the table with its blending source and region masks (module docstring)."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        cfg: BlendConfig,
        cache_dir: str | os.PathLike = "cache",
        landmark_points: int = 68,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.labels = self.table["label"].to_numpy().astype(np.float32)
        if not (self.labels == 0).any():
            raise ValueError("no real frames in the training table for SLADD's synthesiser to forge")
        self.paths = self.table["path"].tolist()
        self.cfg = cfg
        self.blender = CrossBlender(
            load_landmark_index(table, cache_dir, k=cfg.n_neighbours, n_points=landmark_points), cfg
        )
        self.pipeline, self.train, self.seed, self.epoch = pipeline, train, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """New sources and masks for every item (the generator is seeded by (seed, epoch, item))."""
        self.epoch = int(epoch)

    def reseed(self, seed: int) -> None:
        self.pipeline.set_seed(seed)

    def __len__(self) -> int:
        return len(self.paths)

    def _landmarks(self, row: int) -> np.ndarray:
        path = self.table.at[row, "landmark_path"] if "landmark_path" in self.table else None
        if not isinstance(path, str) or not path:
            raise ImageReadError(
                f"{self.paths[row]} has no landmark file in the index; SLADD's region masks need landmarks "
                "(run scripts/preprocess.py, which saves them beside the frames)"
            )
        return read_landmarks(path)

    def raw_item(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, source, regions ``[R, H, W]``) before augmentation, drawn with rng (seed, epoch, i)."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        image = read_rgb(self.paths[i])
        h, w = image.shape[:2]
        if self.labels[i] != 0:
            return image, image.copy(), np.zeros((len(REGIONS), h, w), np.float32)
        lm = self._landmarks(i)
        src_path = self.blender.pick_foreground(self.paths[i], rng=rng)
        source = read_rgb(src_path)
        if source.shape != image.shape:
            raise ImageReadError(f"SLADD source {src_path} and {self.paths[i]} differ in size")
        source = colour_transfer(source, image, hull_region(lm, (h, w)))
        regions = np.stack([postprocess_mask(region_mask(lm, r, (h, w)), rng, self.cfg) for r in REGIONS])
        return image, source, regions

    def __getitem__(self, i: int) -> dict:
        image, source, regions = self.raw_item(i)
        # the R masks travel as one H×W×R mask: one draw, and groups stay within the pipeline's max_group
        imgs, masks = self.pipeline.apply_shared(
            [image, source], [np.ascontiguousarray(regions.transpose(1, 2, 0))], augment=self.train
        )
        stacked = np.asarray(masks[0], np.float32).reshape(*masks[0].shape[:2], len(REGIONS))
        return {
            "image": imgs[0],
            "source": imgs[1],
            "regions": torch.from_numpy(np.ascontiguousarray(stacked.transpose(2, 0, 1))),
            "label": torch.tensor(float(self.labels[i])),
            "index": torch.tensor(i),
        }
