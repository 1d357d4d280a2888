"""Mouth clips at the scale of LipForensics' crops (Haliassos et al., CVPR 2021, Sec. 3 "Approach" /
"Preprocessing"; the authors' ``preprocessing/crop_mouths.py``, read for facts).

The authors warp each face (similarity transform on five stable points, landmarks smoothed over 12 frames) to
the LRW mean face at 256 x 256 and cut a fixed 96 x 96 square centred on the mean of the 20 mouth landmarks
(68-point scheme, points 48-67). In that mean face the outer eye corners (points 36 and 45) lie 74.16 px
apart (a reading of their ``20words_mean_face.npy``), so the square's side is 1.2945 x that distance.

Stored face crops here are not aligned to that mean face, so :class:`MouthClipDataset` cuts, from every
frame of a clip, ONE square (as :class:`~detect.data.clip_view.ClipDataset` with ``region="mouth"``) whose
side is ``eye_ratio`` x the clip's mean outer-eye-corner distance (or a fixed ``mouth_size`` in pixels when
given), centred on the clip's mean mouth position; the pipeline then resizes it to the network's square.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detect.data.clip_view import ClipDataset, Perturbation, cut_square
from detect.data.datasets import sample_key
from detect.data.images import read_landmarks, read_rgb
from detect.data.transforms import Pipeline

#: The authors' mouth square (96 px) over the LRW mean face's outer-eye-corner distance (74.16 px).
LRW_EYE_RATIO = 96.0 / 74.159
OUTER_EYE_CORNERS = (36, 45)
MOUTH_POINTS = slice(48, 68)


def mouth_box(landmarks: list[np.ndarray], size: int | None, eye_ratio: float) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square centred on the clip's mean mouth position: ``side`` = ``size``, or
    ``eye_ratio`` x the clip's mean outer-eye-corner distance (at least 1 px) when ``size`` is None."""
    pts = [np.asarray(lm, np.float64) for lm in landmarks]
    centre = np.mean([p[MOUTH_POINTS].mean(0) for p in pts], axis=0)
    if size is None:
        eyes = np.mean([np.linalg.norm(p[OUTER_EYE_CORNERS[1]] - p[OUTER_EYE_CORNERS[0]]) for p in pts])
        side = max(int(round(eye_ratio * float(eyes))), 1)
    else:
        side = int(size)
    x0, y0 = np.rint(centre - side / 2.0).astype(int)
    return int(x0), int(y0), side


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
        if mouth_size is not None and int(mouth_size) < 1:
            raise ValueError(f"mouth_size={mouth_size}: must be at least 1 (null: eye_ratio x eye distance)")
        if not float(eye_ratio) > 0:
            raise ValueError(f"eye_ratio={eye_ratio}: must be positive")
        super().__init__(
            table,
            pipeline,
            clip_len,
            train,
            clips_per_video=clips_per_video,
            perturbation=perturbation,
            region="mouth",
            mouth_size=int(mouth_size) if mouth_size is not None else 1,
            rule=rule,
            seed=seed,
        )
        if "landmark_path" not in self.table.columns:
            raise ValueError("mouth clips need landmarks: the sample table has no 'landmark_path' column")
        self.fixed_size = None if mouth_size is None else int(mouth_size)
        self.eye_ratio = float(eye_ratio)

    def load(self, i: int) -> list[np.ndarray]:
        """The mouth squares of clip ``i`` (perturbed first, with one draw, when configured)."""
        rows = self.clips[i]
        frames = [read_rgb(self.paths[int(r)]) for r in rows]
        if self.perturbation is not None:
            key = sample_key(self.paths[int(rows[0])])
            frames = [self.perturbation(f, key) for f in frames]
        lms = [read_landmarks(str(self.table.at[int(r), "landmark_path"])) for r in rows]
        x0, y0, side = mouth_box(lms, self.fixed_size, self.eye_ratio)
        return [cut_square(f, x0, y0, side) for f in frames]
