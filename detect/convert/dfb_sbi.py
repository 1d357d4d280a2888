"""DeepfakeBench's SBI detector (``training/detectors/sbi_detector.py`` with ``networks/efficientnetb4.py``,
config ``training/config/detector/sbi.yaml``).

Source keys: ``[module.]backbone.efficientnet.<efficientnet_pytorch key>`` (its stem an unpadded
``Conv2d(3, 48, 3, stride 2)``, ``_fc`` an identity) and ``backbone.last_layer`` = ``Linear(1792, 3)``
(``num_classes: 3``; trained on labels 0/1, read as softmax[:, 1]), kept as our 3-way head. Inputs 256 px
with ImageNet mean/std (its SBI config, unlike its other detectors' 0.5); faces aligned with a x1.3 margin;
video score = mean of frame probabilities. Target: ``method=sbi/dfb`` (``backbone=effb4_dfb``).
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, efficientnet_pytorch_key, map_keys

PREFIX = "backbone.efficientnet."
HEAD = "backbone.last_layer."
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): v for k, v in source.items() if k.startswith(HEAD)}
    if set(head) != {"weight", "bias"}:
        raise ConversionError(
            f"{HEAD}{{weight,bias}} not found (have {sorted(head)}): not DeepfakeBench's SBI detector"
        )
    if head["weight"].dim() != 2 or head["weight"].shape[0] != 3:
        raise ConversionError(f"{HEAD}weight: expected Linear(1792, 3), got {tuple(head['weight'].shape)}")

    def rename(k: str) -> str | None:
        if not k.startswith(PREFIX):
            return None
        new = efficientnet_pytorch_key(k.removeprefix(PREFIX))
        return None if new is None else "backbone.model." + new

    out = map_keys(source, rename, drop=lambda k: k.startswith(HEAD), what="dfb_sbi")
    out["head.1.weight"], out["head.1.bias"] = head["weight"].clone(), head["bias"].clone()
    return out


FORMAT = Format(
    name="dfb_sbi",
    kind="checkpoint",
    description="DeepfakeBench SBI detector (efficientnet_pytorch B4, unpadded stem, 3-way head, 256 px)",
    convert=convert,
    overrides=("method=sbi/dfb",),
    config={
        "input": {"size": 256, **IMAGENET, "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
