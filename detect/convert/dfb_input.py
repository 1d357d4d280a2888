"""What a converted DeepfakeBench checkpoint records about its inputs (no format of its own): 256 px, mean =
std = 0.5, DeepfakeBench's aligned x1.3 face crops, video score = mean of frame probabilities."""

from __future__ import annotations

#: The ``config`` of a DeepfakeBench detector trained at 256 px (its ``resolution`` and ``mean``/``std``).
DFB_256_CONFIG = {
    "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
    "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
}
