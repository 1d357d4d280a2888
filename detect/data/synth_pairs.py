"""Real frames paired with a fake synthesised from each, with the fake's blend mask: the training view of
detectors that make their own fakes and supervise where the fake differs (Face X-ray's blended images and
boundary maps; FWA's warped faces).

``SynthPairDataset(table, pipeline, synthesiser)``: item ``i`` is the ``i``-th real frame of the table and
``synthesiser(image, landmarks, path, rng)`` of it, drawn with a generator seeded by ``(seed, epoch, i)``
(the same fake whatever the worker or order; new fakes each epoch through ``set_epoch``). One augmentation
draw is shared by the pair and its masks (a zero mask for the real frame), so geometric augmentations move
the mask with the image. Items: ``{"images": [2, 3, H, W], "masks": [2, H, W] float32 in [0, 1], "labels":
[0., 1.], "indices": [row, row]}``.

``CrossBlendSynthesiser``: the project's CBI (Face X-ray's blend: a foreground among the nearest real faces
of other videos by landmarks, ``detect.data.blend``); its mask is the blend mask M.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.blend import BlendConfig, CrossBlender, load_landmark_index
from detect.data.images import ImageReadError, read_landmarks, read_rgb
from detect.data.transforms import Pipeline

#: ``(image HxWx3 uint8, landmarks Nx2, image path, rng) -> (fake HxWx3 uint8, mask HxW float32 in [0, 1])``
Synthesiser = Callable[[np.ndarray, np.ndarray, str, np.random.Generator], tuple[np.ndarray, np.ndarray]]


class CrossBlendSynthesiser:
    """CBI of a real frame onto itself as background, with its blend mask (picklable for data workers)."""

    def __init__(
        self,
        table: pd.DataFrame,
        cfg: BlendConfig,
        cache_dir: str | os.PathLike = "cache",
        landmark_points: int = 68,
    ) -> None:
        index = load_landmark_index(table, cache_dir, k=cfg.n_neighbours, n_points=landmark_points)
        self.blender = CrossBlender(index, cfg)

    def __call__(
        self, image: np.ndarray, landmarks: np.ndarray, path: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        foreground_path = self.blender.pick_foreground(path, rng=rng)
        foreground = read_rgb(foreground_path)
        if foreground.shape != image.shape:
            raise ImageReadError(
                f"CBI foreground {foreground_path} and {path} differ in size "
                f"({foreground.shape} vs {image.shape})"
            )
        out = self.blender(image, landmarks, foreground, rng=rng)
        return out.image, out.mask.astype(np.float32)


class SynthPairDataset(Dataset):
    """Each real frame with its synthesised fake and the fake's mask (module docstring)."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        synthesiser: Synthesiser,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.rows = np.flatnonzero(self.table["label"].to_numpy() == 0)
        if len(self.rows) == 0:
            raise ValueError("no real frames in the training table to synthesise fakes from")
        self.paths = self.table["path"].tolist()
        self.pipeline, self.synthesiser, self.train = pipeline, synthesiser, train
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """New fakes for every item (the generator is seeded by (seed, epoch, item))."""
        self.epoch = int(epoch)

    def reseed(self, seed: int) -> None:
        """Seed the shared augmentation draw."""
        self.pipeline.set_seed(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def _landmarks(self, row: int) -> np.ndarray:
        path = self.table.at[row, "landmark_path"] if "landmark_path" in self.table else None
        if not isinstance(path, str) or not path:
            raise ImageReadError(
                f"{self.paths[row]} has no landmark file in the index; synthesised fakes need landmarks "
                "(run scripts/preprocess.py, which saves them beside the frames)"
            )
        return read_landmarks(path)

    def raw_pair(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(real, fake, fake's mask, table row) before augmentation."""
        row = int(self.rows[i])
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        real = read_rgb(self.paths[row])
        fake, mask = self.synthesiser(real, self._landmarks(row), self.paths[row], rng)
        return real, fake, mask, row

    def __getitem__(self, i: int) -> dict:
        real, fake, mask, row = self.raw_pair(i)
        zero = np.zeros(mask.shape, np.float32)
        images, masks = self.pipeline.apply_shared([real, fake], [zero, mask], augment=self.train)
        return {
            "images": torch.stack(images),
            "masks": torch.from_numpy(np.stack(masks).astype(np.float32)),
            "labels": torch.tensor([0.0, 1.0]),
            "indices": torch.tensor([row, row]),
        }
