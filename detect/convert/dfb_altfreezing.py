"""DeepfakeBench's AltFreezing detector (``training/detectors/altfreezing_detector.py``: SlowFast's I3D
ResNet-50 with a one-class head) -> ``method=altfreezing/dfb``
(:class:`detect.methods.altfreezing.AltFreezing`, 16-frame clips).

Source keys: ``[module.]resnet.s1.pathway0_stem.{conv,bn}.*``,
``resnet.s{2,3,4,5}.pathway0_res{i}.branch1[_bn].*`` and ``.branch2.{a,b,c}[_bn].*``, and
``resnet.head.projection.{weight,bias}`` (``Linear(2048, 1)``: one logit already, no head conversion).
Inputs 224 px, mean = std = 0.5; video score = mean of clip probabilities.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys
from detect.methods.altfreezing import i3d_key

PREFIX = "resnet."


def rename(key: str) -> str | None:
    """Our AltFreezing key of a DeepfakeBench AltFreezing key, None when it has none."""
    if not key.startswith(PREFIX):
        return None
    ours = i3d_key(key.removeprefix(PREFIX))
    return f"net.{ours}" if ours else None


def convert_altfreezing(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = PREFIX + "head.projection.weight"
    if head not in source:
        raise ConversionError(f"{head} not found: not DeepfakeBench's AltFreezing (dfb_altfreezing)")
    if source[head].shape[0] != 1:
        raise ConversionError(
            f"dfb_altfreezing: {head} has {source[head].shape[0]} outputs; "
            "DeepfakeBench's AltFreezing has one "
            "(MODEL.NUM_CLASSES 1)"
        )
    return map_keys(source, rename, what="dfb_altfreezing")


FORMAT = Format(
    name="dfb_altfreezing",
    kind="checkpoint",
    description="DeepfakeBench AltFreezing detector (I3D ResNet-50, one logit, 16x224 px clips)",
    convert=convert_altfreezing,
    overrides=("method=altfreezing/dfb", "backbone=none", "method.pretrained=false"),
    config={
        "input": {"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 224}, "aggregate": "mean"},
    },
)
