"""Real/fake pairs: every training fake with a real frame drawn at random, for detectors whose loss needs
both classes in every batch in equal numbers (UCF, Yan et al., ICCV 2023: its reconstruction swaps the
content and forgery features of a real and a fake image, its contrastive regularisation draws positives and
negatives from the two halves of the batch).

The view follows DeepfakeBench's pair dataset (``training/dataset/pair_dataset.py``, which the UCF authors
wrote): one item per training fake; its real partner is any real training frame, drawn uniformly (not the
fake's source video). Here the draw comes from a generator seeded by ``(seed, item)``, the seed set per epoch
through :meth:`RealFakePairDataset.reseed`, so a pair does not depend on the worker that builds it. Each of
the two images gets its own augmentation draw (DeepfakeBench augments them separately).

Items: ``{"images": [2, 3, H, W]`` (real, fake), ``"labels": [0., 1.]``, ``"classes": [0, k]`` (the
fake's manipulation class: ``k = 1 + classes.index(domain)``; real is class 0), ``"indices": [2]`` (rows of
the sample table)``}``. A fake whose manipulation is not in ``classes`` is an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from detect.data.images import read_rgb
from detect.data.transforms import Pipeline


def manipulation_classes(table: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Per row of ``table``: 0 for a real frame, ``1 + classes.index(domain)`` for a fake."""
    classes = [str(c) for c in classes]
    fakes = table["label"].to_numpy() == 1
    domains = table["domain"].astype(str).to_numpy()
    unknown = sorted(set(domains[fakes]) - set(classes))
    if unknown:
        raise ValueError(
            f"training fakes of manipulation(s) {unknown} have no class among {classes}; set the method's "
            "manipulations (method.manipulations) to the training manipulations"
        )
    lookup = {c: i + 1 for i, c in enumerate(classes)}
    return np.where(fakes, [lookup.get(d, 0) for d in domains], 0).astype(np.int64)


class RealFakePairDataset(Dataset):
    """One item per training fake: ``(a random real frame, the fake)``; see the module docstring."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        classes: Sequence[str],
        train: bool = True,
        seed: int = 0,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.pipeline, self.train, self.seed = pipeline, train, int(seed)
        labels = self.table["label"].to_numpy()
        self.reals = np.flatnonzero(labels == 0)
        self.fakes = np.flatnonzero(labels == 1)
        if len(self.reals) == 0 or len(self.fakes) == 0:
            raise ValueError(
                f"real/fake pairs need both classes in the training table ({len(self.reals)} real, "
                f"{len(self.fakes)} fake frames)"
            )
        self.classes = manipulation_classes(self.table, classes)

    def reseed(self, seed: int) -> None:
        """A new epoch's (or worker's) seed: the partner draws and the augmentation draws."""
        self.seed = int(seed)
        self.pipeline.set_seed(seed)

    def __len__(self) -> int:
        return len(self.fakes)

    def partner(self, i: int) -> int:
        """The real row paired with item ``i`` under the current seed."""
        rng = np.random.default_rng([self.seed % 2**32, i])
        return int(self.reals[rng.integers(len(self.reals))])

    def _image(self, row: int) -> torch.Tensor:
        img = read_rgb(self.table.at[row, "path"])
        return self.pipeline.apply_shared([img], augment=self.train)[0][0]

    def __getitem__(self, i: int) -> dict:
        rows = [self.partner(i), int(self.fakes[i])]
        return {
            "images": torch.stack([self._image(r) for r in rows]),
            "labels": torch.tensor([0.0, 1.0]),
            "classes": torch.as_tensor(self.classes[rows]),
            "indices": torch.as_tensor(rows),
        }
