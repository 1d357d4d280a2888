"""Mouth clips at the scale of LipForensics' crops (Haliassos et al., CVPR 2021, Sec. 3 "Approach" /
"Preprocessing"; the authors' ``preprocessing/crop_mouths.py``, read for facts).

The authors warp each face (similarity transform on five stable points, landmarks smoothed over 12 frames) to
the LRW mean face at 256 x 256 and cut a fixed 96 x 96 square centred on the mean of the 20 mouth landmarks
(68-point scheme, points 48-67). In that mean face the outer eye corners (points 36 and 45) lie 74.16 px
apart (a reading of their ``20words_mean_face.npy``), so the square's side is 1.2945 x that distance.

Stored face crops here are not aligned to that mean face, so :class:`MouthClipDataset` (a
:class:`~detect.data.clip_view.ClipDataset` with ``region="mouth"``) cuts, from every frame of a clip, ONE
square whose side is ``eye_ratio`` x the clip's mean outer-eye-corner distance (or a fixed ``mouth_size`` in
pixels when given), centred on the clip's mean mouth position (:func:`~detect.data.clip_view.mouth_box`); the
pipeline then resizes it to the network's square.
"""

from __future__ import annotations

import pandas as pd

from detect.data.clip_view import ClipDataset, Perturbation
from detect.data.transforms import Pipeline

#: The authors' mouth square (96 px) over the LRW mean face's outer-eye-corner distance (74.16 px).
LRW_EYE_RATIO = 96.0 / 74.159


class MouthClipDataset(ClipDataset):
    """Mouth clips (``region="mouth"``), the square sized by the face's eye distance (``mouth_size=None``)
    or fixed (``mouth_size`` pixels of the stored crop)."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        clip_len: int,
        train: bool,
        clips_per_video: int | None = None,
        perturbation: Perturbation | None = None,
        mouth_size: int | None = None,
        eye_ratio: float = LRW_EYE_RATIO,
        rule: str = "consecutive",
        seed: int = 0,
    ) -> None:
        super().__init__(
            table,
            pipeline,
            clip_len,
            train,
            clips_per_video=clips_per_video,
            perturbation=perturbation,
            region="mouth",
            mouth_size=mouth_size,
            rule=rule,
            seed=seed,
            eye_ratio=eye_ratio,
        )
        if "landmark_path" not in self.table.columns:
            raise ValueError("mouth clips need landmarks: the sample table has no 'landmark_path' column")
