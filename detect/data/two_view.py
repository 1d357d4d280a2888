"""Two independently augmented views of each frame (CORE's training view).

CORE (Ni et al., CVPRW 2022, Sec. 3) learns a representation that stays the same across two different
augmentations of one image, so every item carries two augmentation draws of the same frame:
``{"images": [2, 3, S, S], "label", "index"}``. Each view is its own draw of the pipeline's augmentation
(the draws differ, as the authors' ``TwoTransform`` applies its transform twice), then the usual resize
and normalisation.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.images import read_rgb
from detect.data.transforms import Pipeline


class TwoViewDataset(Dataset):
    """Single frames as two augmentation draws each."""

    def __init__(self, table: pd.DataFrame, pipeline: Pipeline, views: int = 2) -> None:
        if views < 1:
            raise ValueError(f"views={views}; at least one view per frame")
        self.table = table.reset_index(drop=True)
        self.paths = self.table["path"].tolist()
        self.labels = self.table["label"].to_numpy()
        self.pipeline, self.views = pipeline, int(views)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        image = read_rgb(self.paths[i])
        views = [self.pipeline.apply_shared([image], augment=True)[0][0] for _ in range(self.views)]
        return {
            "images": torch.stack(views),
            "label": torch.tensor(self.labels[i], dtype=torch.float32),
            "index": i,
        }
