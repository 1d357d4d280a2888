"""DeepfakeBench's Xception detector (``training/detectors/xception_detector.py``, ``networks/xception.py``).

Source keys: ``[module.]backbone.<name>`` with the FaceForensics++ Xception's names (``conv1`` ... ``block12``
... ``bn4``), which are timm ``legacy_xception``'s; ``backbone.last_linear`` (or ``last_linear.1`` behind a
dropout) = ``Linear(2048, 2)`` read as softmax[:, 1]; ``backbone.adjust_channel.*`` is unused by the
classifier and dropped. Inputs 256 px, mean = std = 0.5; DeepfakeBench's aligned x1.3 crops; video score =
mean of frame probabilities. Target: ``method=baseline backbone=xception`` at 256 px.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

PREFIX = "backbone."
HEADS = ("backbone.last_linear.", "backbone.last_linear.1.")
UNUSED = "backbone.adjust_channel."


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = None
    for prefix in HEADS:
        found = {
            k.removeprefix(prefix): v for k, v in source.items() if k in (prefix + "weight", prefix + "bias")
        }
        if set(found) == {"weight", "bias"}:
            head = (prefix, found)
    if head is None:
        raise ConversionError(
            "backbone.last_linear{,.1}.{weight,bias} not found: not DeepfakeBench's Xception"
        )
    prefix, weights = head

    def rename(k: str) -> str | None:
        return "backbone.model." + k.removeprefix(PREFIX) if k.startswith(PREFIX) else None

    def drop(k: str) -> bool:
        return k.startswith(UNUSED) or k in (prefix + "weight", prefix + "bias")

    out = map_keys(source, rename, drop, what="dfb_xception")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(weights["weight"], weights["bias"], prefix)
    return out


FORMAT = Format(
    name="dfb_xception",
    kind="checkpoint",
    description="DeepfakeBench Xception detector (FaceForensics++ Xception names, 256 px)",
    convert=convert,
    overrides=("method=baseline", "backbone=xception", "backbone.input_size=256"),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
