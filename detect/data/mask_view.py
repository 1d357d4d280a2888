"""Frames with their manipulation masks, one geometric draw for both (FFD's and Multi-task's training view).

Each item is ``{"image": [3, S, S], "mask": [1, S, S] in [0, 1], "label", "index"}``: the mask goes through
the same augmentation draw as its image (``Pipeline.augment_group``: flips, rotations and crops move it,
pixel-level transforms such as blur or JPEG leave it alone) and the same resize to the model's input
(``Pipeline.finalize_group``). A real frame's mask is all zeros, whatever its table row holds (the
"reals get a zero map" rule of FFD, Dang et al., CVPR 2020, Sec. 3.3, and of Multi-task, Nguyen et al.,
BTAS 2019, Sec. III); a fake without a mask file is an error naming the frame (the ``masks`` data need
checks this before training). Masks stored at another size than their frame are resized to it first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.images import read_mask, read_rgb
from detect.data.transforms import Pipeline


class MaskedFrameDataset(Dataset):
    """Single frames and their masks (zeros for reals), augmented together."""

    def __init__(self, table: pd.DataFrame, pipeline: Pipeline, train: bool = True) -> None:
        self.table = table.reset_index(drop=True)
        self.paths = self.table["path"].tolist()
        self.labels = self.table["label"].to_numpy()
        column = self.table["mask_path"] if "mask_path" in self.table else pd.Series([None] * len(self.table))
        self.mask_paths = [p if isinstance(p, str) and p else None for p in column]
        self.pipeline, self.train = pipeline, train

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i``'s image (HWC uint8) and mask (HW uint8, 0..255) at the image's size."""
        image = read_rgb(self.paths[i])
        shape = image.shape[:2]
        if int(self.labels[i]) == 0:
            return image, np.zeros(shape, np.uint8)
        if self.mask_paths[i] is None:
            raise ValueError(
                f"fake frame {self.paths[i]} has no manipulation mask (sample table column 'mask_path'); "
                "this method trains on masks: use a dataset that provides them for every fake"
            )
        mask = read_mask(self.mask_paths[i], shape)
        return image, np.round(mask * 255.0).astype(np.uint8)

    def __getitem__(self, i: int) -> dict:
        image, mask = self.load(i)
        images, masks = self.pipeline.apply_shared([image], [mask], augment=self.train)
        return {
            "image": images[0],
            "mask": torch.from_numpy(masks[0].astype(np.float32) / 255.0).unsqueeze(0),
            "label": torch.tensor(self.labels[i], dtype=torch.float32),
            "index": i,
        }
