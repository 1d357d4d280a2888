"""Frames with the identity of the face they show (IID's training view; Huang et al., "Implicit Identity
Driven Deepfake Face Swapping Detection", CVPR 2023, Sec. 3.2: the implicit identity labels).

FaceForensics++ names a real video ``AAA`` and a face swap ``AAA_BBB``: the face of video ``BBB`` put onto
video ``AAA``. The identity of a frame is the last id of its video id: ``AAA`` for a real, ``BBB`` (the
swapped-in face) for a fake, as DeepfakeBench's IID dataset reads it. The sample table has no ``identity``
column, so it is derived here from ``video_id``; an id that is not an integer in ``[0, num_identities)`` is
an error naming the frame. Items are ``FrameDataset``'s plus ``"identity"`` (int64).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from detect.data.datasets import FrameDataset
from detect.data.transforms import Pipeline


def identity_of(video_id: str) -> int:
    """The identity index of an FF++-style video id: the integer after its last underscore."""
    last = str(video_id).rsplit("_", 1)[-1]
    if not last.isdigit():
        raise ValueError(
            f"video id {video_id!r} does not end in a numeric identity (FaceForensics++ ids: AAA or AAA_BBB)"
        )
    return int(last)


def identity_labels(table: pd.DataFrame, num_identities: int) -> np.ndarray:
    """Each row's identity index (int64), checked against ``num_identities``."""
    if "video_id" not in table:
        raise ValueError("the sample table has no 'video_id' column to derive identities from")
    out = np.empty(len(table), np.int64)
    for i, (vid, path) in enumerate(zip(table["video_id"], table["path"], strict=True)):
        try:
            out[i] = identity_of(vid)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        if not 0 <= out[i] < num_identities:
            raise ValueError(
                f"{path}: identity {out[i]} (video id {vid!r}) is outside [0, {num_identities}); "
                "raise method.num_identities"
            )
    return out


class IdentityFrameDataset(FrameDataset):
    """Single frames with their identity index: ``{"image", "label", "index", "identity"}``."""

    def __init__(self, table: pd.DataFrame, pipeline: Pipeline, num_identities: int, train: bool = True):
        super().__init__(table, pipeline, train=train)
        self.identities = identity_labels(self.table, num_identities)

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        item["identity"] = torch.tensor(self.identities[i], dtype=torch.int64)
        return item
