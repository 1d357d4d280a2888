"""Quality pairs: the same frame at a high and a low quality, for QAD's intra-model collaborative learning
(Le and Woo, ICCV 2023; ``detect/methods/qad.py``; docs/methods/qad.md).

Two ways to get the low-quality partner of a high-quality frame:

- ``stored`` (the paper: FF++ c23 with c40 of the same source): the sample table holds the training videos
  at two or more compression levels (``++protocol.train.compression=[c23,c40]``; the ``multi_quality`` data
  need); each frame at ``high`` is paired with the frame of the same video (dataset, label, video id) at a
  ``low`` level, the same frame number or the nearest one present. Several ``low`` levels: one drawn per
  sample and epoch from a seeded generator (the authors' configs pair raw frames with c23 or c40).
- ``jpeg`` (DPL's comparison setting, trained on FF++ c23 alone): the partner is a JPEG round trip of the
  augmented high-quality frame, its quality drawn per sample and epoch: a range of ``jpeg_ranges`` uniformly,
  then a quality uniformly in it.

Either way ONE augmentation draw is shared by the two images (the pair differs in quality only; JPEG comes
after augmentation, as in ``MultiQualityDataset``). Items: ``{"images": [2, 3, H, W]`` (high, low),
``"label"``, ``"index"`` (the high frame's table row), ``"indices"`` ([high row, low row]; the high row twice
for ``jpeg``), ``"quality"`` (the low partner's JPEG quality, 100 for a stored frame)}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.images import read_rgb
from detect.data.jpeg import jpeg_compress
from detect.data.transforms import Pipeline

log = logging.getLogger(__name__)

#: the columns that name one video across its compression levels
VIDEO_KEYS = ["dataset", "label_name", "video_id"]


def _check_ranges(ranges: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    out = []
    for r in ranges:
        lo, hi = (int(v) for v in r)
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"JPEG quality range {list(r)} must satisfy 1 <= low <= high <= 100")
        out.append((lo, hi))
    if not out:
        raise ValueError("jpeg_ranges is empty: give at least one [low, high] quality range")
    return out


def pair_rows(table: pd.DataFrame, high: str, low: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The table rows at level ``high`` that have a partner at every ``low`` level, and per low level the
    partner row of each: the same video's frame with the same number, or the nearest one."""
    levels = table["compression"].astype(str)
    present = sorted(set(levels))
    for level in (high, *low):
        if level not in present:
            raise ValueError(
                f"quality pairs need frames at compression {level!r}; the training table has {present} "
                "(train on several levels, e.g. ++protocol.train.compression=[c23,c40])"
            )
    anchors = table.index[levels == high].to_numpy()
    lookups = []
    for level in low:
        sub = table[levels == level].sort_values("frame")
        lookups.append(
            {
                key: (g["frame"].to_numpy(), g.index.to_numpy())
                for key, g in sub.groupby(VIDEO_KEYS, sort=False)
            }
        )
    keep, partners = [], [[] for _ in low]
    for row in anchors:
        key = tuple(table.loc[row, VIDEO_KEYS])
        if not all(key in lk for lk in lookups):
            continue
        frame = int(table.at[row, "frame"])
        keep.append(int(row))
        for j, lk in enumerate(lookups):
            frames, rows = lk[key]
            partners[j].append(int(rows[int(np.argmin(np.abs(frames - frame)))]))
    if len(anchors) and not keep:
        raise ValueError(
            f"no training video at {high!r} is also present at {list(low)} (same dataset, label and video id)"
        )
    if len(keep) < len(anchors):
        log.info(
            "quality pairs: %d of %d frames at %s have partners at %s", len(keep), len(anchors), high, low
        )
    return np.asarray(keep, np.int64), [np.asarray(p, np.int64) for p in partners]


class QualityPairDataset(Dataset):
    """A frame at high quality with the same frame at low quality, one augmentation draw for both."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        high: str = "c23",
        low: Sequence[str] = ("c40",),
        jpeg_ranges: Sequence[Sequence[int]] | None = None,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.pipeline, self.train, self.seed = pipeline, train, int(seed)
        self.epoch = 0
        self.jpeg_ranges = None if jpeg_ranges is None else _check_ranges(jpeg_ranges)
        if self.jpeg_ranges is None:
            if not low:
                raise ValueError("stored quality pairs need at least one low level (e.g. low: [c40])")
            self.rows, self.partners = pair_rows(self.table, str(high), [str(v) for v in low])
        else:
            self.rows, self.partners = np.arange(len(self.table), dtype=np.int64), []
        self.paths = self.table["path"].tolist()

    def set_epoch(self, epoch: int) -> None:
        """New partner draws (low level or JPEG quality) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()[self.rows]

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(i)])

    def partner(self, i: int) -> tuple[int, int]:
        """``(low row, JPEG quality)`` of item ``i`` this epoch (quality 100: a stored frame as it is)."""
        rng = self._rng(i)
        if self.jpeg_ranges is not None:
            lo, hi = self.jpeg_ranges[int(rng.integers(len(self.jpeg_ranges)))]
            return int(self.rows[i]), int(rng.integers(lo, hi + 1))
        level = int(rng.integers(len(self.partners)))
        return int(self.partners[level][i]), 100

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        low_row, quality = self.partner(i)
        high = read_rgb(self.paths[row])
        if self.jpeg_ranges is not None:
            if self.train:
                high = self.pipeline.augment_group([high])[0][0]
            images, _ = self.pipeline.finalize_group([high, jpeg_compress(high, quality)])
        else:
            low = read_rgb(self.paths[low_row])
            if low.shape != high.shape:  # face crops of two encodings may differ by a few pixels
                low = cv2.resize(low, (high.shape[1], high.shape[0]), interpolation=cv2.INTER_AREA)
            images, _ = self.pipeline.apply_shared([high, low], augment=self.train)
        return {
            "images": torch.stack(images),
            "label": torch.tensor(self.table.at[row, "label"], dtype=torch.float32),
            "index": row,
            "indices": torch.as_tensor([row, low_row]),
            "quality": torch.tensor(quality),
        }
