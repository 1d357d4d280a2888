"""DeepfakeBench's CORE detector (``training/detectors/core_detector.py``).

CORE changes the training loss only: its model is DeepfakeBench's Xception detector, so the keys are
those of ``dfb_xception`` (``[module.]backbone.<FF++ Xception name>``, ``backbone.last_linear`` =
``Linear(2048, 2)`` read as softmax[:, 1], the unused ``backbone.adjust_channel.*`` dropped) and map the
same way. Inputs 256 px, mean = std = 0.5. Target: ``method=core/dfb`` (Xception at 256 px).
"""

from __future__ import annotations

from detect.convert.common import Format
from detect.convert.dfb_xception import convert

FORMAT = Format(
    name="dfb_core",
    kind="checkpoint",
    description="DeepfakeBench CORE detector (its Xception detector's layout, 256 px)",
    convert=convert,
    overrides=("method=core/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
