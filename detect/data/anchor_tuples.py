"""Aligned anchor tuples (ProDet, Cheng et al., NeurIPS 2024, Sec. 3.1): for one real frame, the real
image, its self-blended image (SBI), its cross-blended image (CBI) and a deepfake of the same source video
and frame — any subset of the four, always in the order real, SBI, CBI, deepfake.

SBI and CBI are made on the fly from the real frame and its landmarks (``detect.data.blend``), the CBI
foreground among the nearest real faces of other videos of the training table (a landmark index built once
and cached under ``cache_dir``). Deepfakes come from the data layer's aligned groups
(``AlignedGroupDataset``); the tuple's deepfake cycles through the manipulations (item ``i`` at epoch ``e``
takes domain ``(i + e) mod K``, as the released code cycles through FF++'s four methods). One augmentation
draw is shared by the whole tuple. Blends use a generator seeded by ``(seed, epoch, item)``, so a tuple
does not depend on the worker that builds it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.blend import BlendConfig, CrossBlender, SelfBlender, load_landmark_index
from detect.data.datasets import AlignedGroupDataset
from detect.data.images import ImageReadError, read_landmarks, read_rgb
from detect.data.transforms import Pipeline

TUPLE_ANCHORS = ("real", "sbi", "cbi", "deepfake")


def _landmark_path(table: pd.DataFrame, row: int) -> str:
    path = table.at[row, "landmark_path"]
    if not isinstance(path, str) or not path:
        raise ImageReadError(
            f"{table.at[row, 'path']} has no landmark file in the index; SBI/CBI need landmarks "
            "(run scripts/preprocess.py, which saves them beside the frames)"
        )
    return path


class AnchorTupleDataset(Dataset):
    """Items: ``{"images": [A, 3, H, W], "anchors": [A] (indices into TUPLE_ANCHORS), "labels": [A]
    (0 real / 1 fake), "indices": [A] (sample-table rows; SBI and CBI carry their real frame's row)}``."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        anchors: Sequence[str] = TUPLE_ANCHORS,
        blend: BlendConfig | None = None,
        cache_dir: str | os.PathLike = "cache",
        train: bool = True,
        seed: int = 0,
        deepfake_domains: Sequence[str] | None = None,
        landmark_points: int = 68,
    ) -> None:
        bad = [a for a in anchors if a not in TUPLE_ANCHORS]
        if bad or "real" not in anchors:
            raise ValueError(f"anchors {list(anchors)}: 'real' plus any of {TUPLE_ANCHORS[1:]}")
        self.anchors = [a for a in TUPLE_ANCHORS if a in anchors]
        self.anchor_ids = torch.tensor([TUPLE_ANCHORS.index(a) for a in self.anchors])
        self.table = table.reset_index(drop=True)
        self.pipeline, self.train, self.seed, self.epoch = pipeline, train, int(seed), 0
        self.blend = blend or BlendConfig()
        if "deepfake" in self.anchors:
            aligned = AlignedGroupDataset(self.table, pipeline, train, deepfake_domains)
            self.domains, self.groups = aligned.domains, aligned.groups
        else:
            reals = np.flatnonzero(self.table["label"].to_numpy() == 0)
            self.domains, self.groups = [], reals.reshape(-1, 1).astype(np.int64)
        if len(self.groups) == 0:
            raise ValueError("no real frames to build anchor tuples from")
        self.sbi = SelfBlender(self.blend) if "sbi" in self.anchors else None
        self.cbi = None
        if "cbi" in self.anchors:
            index = load_landmark_index(
                self.table, cache_dir, k=self.blend.n_neighbours, n_points=landmark_points
            )
            self.cbi = CrossBlender(index, self.blend)
        self.paths = self.table["path"].tolist()

    def set_epoch(self, epoch: int) -> None:
        """New blends and the next deepfake domain for each tuple."""
        self.epoch = int(epoch)

    def reseed(self, seed: int) -> None:
        """Seed the shared augmentation draw (blends are seeded per item, see the module docstring)."""
        self.pipeline.set_seed(seed)

    def __len__(self) -> int:
        return len(self.groups)

    def real_row(self, i: int) -> int:
        return int(self.groups[i][0])

    def deepfake_row(self, i: int) -> int:
        return int(self.groups[i][1 + (i + self.epoch) % len(self.domains)])

    def raw_tuple(self, i: int) -> tuple[list[np.ndarray], list[int]]:
        """The tuple's images before augmentation (HWC uint8, anchor order) and their table rows."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        row = self.real_row(i)
        real = read_rgb(self.paths[row])
        images, rows = [real], [row]
        landmarks = None
        if self.sbi is not None or self.cbi is not None:
            landmarks = read_landmarks(_landmark_path(self.table, row))
        if self.sbi is not None:
            images.append(self.sbi(real, landmarks, rng=rng).image)
            rows.append(row)
        if self.cbi is not None:
            foreground = read_rgb(self.cbi.pick_foreground(self.paths[row], rng=rng))
            if foreground.shape != real.shape:
                raise ImageReadError(
                    f"CBI foreground and {self.paths[row]} differ in size "
                    f"({foreground.shape} vs {real.shape})"
                )
            images.append(self.cbi(real, landmarks, foreground, rng=rng).image)
            rows.append(row)
        if self.domains:
            fake = self.deepfake_row(i)
            images.append(read_rgb(self.paths[fake]))
            rows.append(fake)
        return images, rows

    def __getitem__(self, i: int) -> dict:
        images, rows = self.raw_tuple(i)
        tensors, _ = self.pipeline.apply_shared(images, augment=self.train)
        return {
            "images": torch.stack(tensors),
            "anchors": self.anchor_ids.clone(),
            "labels": (self.anchor_ids > 0).float(),
            "indices": torch.as_tensor(rows),
        }
