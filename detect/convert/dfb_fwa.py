"""DeepfakeBench's FWA detector (``training/detectors/fwa_detector.py``: its Xception,
``networks/xception.py``, ``mode: original``, ``num_classes: 2``).

The checkpoint is laid out as DeepfakeBench's Xception detector's (``[module.]backbone.<FF++ Xception
name>``, ``backbone.last_linear`` = Linear(2048, 2) read as softmax[:, 1], an unused
``backbone.adjust_channel``), so the keys map as ``dfb_xception`` maps them; FWA's detector has the same
parameter names (``backbone.model.*``, ``head.1.*``). Inputs 256 px, mean = std = 0.5; aligned ×1.3 crops;
video score = mean of frames. Target: ``method=fwa/dfb``.
"""

from __future__ import annotations

from detect.convert.common import Format
from detect.convert.dfb_xception import convert

FORMAT = Format(
    name="dfb_fwa",
    kind="checkpoint",
    description="DeepfakeBench FWA detector (its Xception, 256 px, mean = std = 0.5)",
    convert=convert,
    overrides=("method=fwa/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
