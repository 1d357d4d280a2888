"""Inconsistency image generator (I2G) pairs: a real frame and an I2G fake made from it, each with its blend
mask (Zhao et al., "Learning Self-Consistency for Deepfake Detection", ICCV 2021, Sec. 3.2, I2G).

I2G blends a real face (the source) into another real face (the target) through a soft face mask, so the
fake carries two sources of "source features" and the mask says, pixel by pixel, how much of each. The
project's cross-blended images are this construction (``detect.data.blend``: the background is the real
frame, the foreground one of its nearest real faces of another video by landmark distance, a random
landmark hull warped and elastically deformed, colour transfer inside it, a blurred soft mask with a
blend ratio): the blend mask ``BlendResult.mask`` is I2G's mask ``M``. A real frame's mask is all zeros
(one source everywhere).

Each item is the pair (real, I2G fake of that real), as DeepfakeBench's I2G dataset makes it (a real
background and its blend per item, so batches are half real, half fake). One augmentation draw is shared
by both images and both masks (flips, crops, rotations move the mask with its image); the blend is seeded
by ``(seed, epoch, item)``, so it does not depend on the worker that builds it, and a resumed run redraws
the same fakes.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.blend import BlendConfig, CrossBlender, load_landmark_index
from detect.data.images import ImageReadError, read_landmarks, read_rgb
from detect.data.transforms import Pipeline


class I2GPairDataset(Dataset):
    """Items: ``{"images": [2, 3, S, S] (real, I2G), "masks": [2, 1, S, S] in [0, 1] (zeros, blend mask),
    "labels": [2] (0, 1), "indices": [2] (the real frame's sample-table row, twice)}``."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        blend: BlendConfig | None = None,
        cache_dir: str | os.PathLike = "cache",
        train: bool = True,
        seed: int = 0,
        landmark_points: int = 68,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.reals = np.flatnonzero(self.table["label"].to_numpy() == 0)
        if len(self.reals) == 0:
            raise ValueError("I2G blends real faces: the training table has no real frame")
        self.pipeline, self.train, self.seed, self.epoch = pipeline, train, int(seed), 0
        self.blend = blend or BlendConfig()
        k = self.blend.n_neighbours
        index = load_landmark_index(self.table, cache_dir, k=k, n_points=landmark_points)
        self.blender = CrossBlender(index, self.blend)
        self.paths = self.table["path"].tolist()

    def set_epoch(self, epoch: int) -> None:
        """New blends every epoch."""
        self.epoch = int(epoch)

    def reseed(self, seed: int) -> None:
        """Seed the shared augmentation draw (blends are seeded per item)."""
        self.pipeline.set_seed(seed)

    def __len__(self) -> int:
        return len(self.reals)

    def raw_pair(self, i: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
        """``([real, fake] HWC uint8, [zeros, blend mask] HW float32 in [0, 1], table row)`` before
        augmentation; the blend drawn from a generator seeded by ``(seed, epoch, i)``."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        row = int(self.reals[i])
        path = self.paths[row]
        landmark_path = self.table.at[row, "landmark_path"] if "landmark_path" in self.table else None
        if not isinstance(landmark_path, str) or not landmark_path:
            raise ImageReadError(
                f"{path} has no landmark file in the index; I2G blends need landmarks "
                "(run scripts/preprocess.py, which saves them beside the frames)"
            )
        real = read_rgb(path)
        foreground = read_rgb(self.blender.pick_foreground(path, rng=rng))
        if foreground.shape != real.shape:
            raise ImageReadError(
                f"I2G source face and {path} differ in size ({foreground.shape} vs {real.shape})"
            )
        fake = self.blender(real, read_landmarks(landmark_path), foreground, rng=rng)
        return [real, fake.image], [np.zeros(real.shape[:2], np.float32), fake.mask], row

    def __getitem__(self, i: int) -> dict:
        images, masks, row = self.raw_pair(i)
        masks8 = [np.round(m * 255.0).astype(np.uint8) for m in masks]
        tensors, moved = self.pipeline.apply_shared(images, masks8, augment=self.train)
        return {
            "images": torch.stack(tensors),
            "masks": torch.stack([torch.from_numpy(m.astype(np.float32) / 255.0)[None] for m in moved]),
            "labels": torch.tensor([0.0, 1.0]),
            "indices": torch.tensor([row, row]),
        }
