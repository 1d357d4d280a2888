"""What a blend returns: the blendfake, its blend mask, and the intermediate pieces (for checks and plots)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BlendResult:
    """One blendfake.

    - ``image``: HxWx3 uint8, ``weight·source + (1 − weight)·target``;
    - ``mask``: HxW float32 in [0, 1], the source's blend weight (the normalised soft mask × ``ratio``);
    - ``ratio``: the blend ratio drawn; ``hull_type``: the landmark hull drawn;
    - ``target``: the image blended onto (SBI: the real frame, after the source transforms when they went
      on the target; CBI: the background frame); ``source``: the warped (SBI: transformed; CBI: colour
      transferred) source; ``hull``: the hull mask (uint8) before and ``warped_hull`` after the affine and
      the elastic; ``affine``: the 2×3 affine; ``transformed``: ``"source"``/``"target"`` (SBI) or
      ``"none"`` (CBI).
    """

    image: np.ndarray
    mask: np.ndarray
    ratio: float
    hull_type: str
    target: np.ndarray
    source: np.ndarray
    hull: np.ndarray
    warped_hull: np.ndarray
    affine: np.ndarray
    transformed: str
