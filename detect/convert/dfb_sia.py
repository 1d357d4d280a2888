"""DeepfakeBench's SIA detector (``training/detectors/sia_detector.py``).

Source keys: ``[module.]backbone.efficientnet.<efficientnet_pytorch key>`` (its EfficientNet-B4 with the
unpadded stem, as ``dfb_efficientnetb4``), ``backbone.last_layer`` = ``Linear(1792, 2)`` on the
average-pooled features, read as softmax[:, 1]; ``conv1`` / ``conv2`` / ``conv3`` (1x1 convolution,
batch norm, ReLU: 32 -> 56, 32 -> 160, 56 -> 160), the aggregation links level 1 -> 2, 1 -> 3 and
2 -> 3, our ``links.0/1/2``. Dropped: ``att0conv`` .. ``att6conv`` (``weight``, ``weight2``: the fixed
all-ones patch kernels of the self-information, ``requires_grad=False``, computed here without
parameters) and ``linear`` (a ``Linear(1792, 1)`` its forward never uses). Inputs 256 px, mean = std =
0.5. Target: ``method=sia/dfb`` (its EfficientNet-B4, SIA after blocks 5, 9 and 21, patch distance
normalised over the batch as DeepfakeBench does).
"""

from __future__ import annotations

import re

import torch

from detect.convert.common import ConversionError, Format, efficientnet_pytorch_key, map_keys, two_logit_head

PREFIX = "backbone.efficientnet."
HEAD = "backbone.last_layer."
LINKS = {"conv1.": "links.0.", "conv2.": "links.1.", "conv3.": "links.2."}
FIXED = re.compile(r"^att\d+conv\.weight2?$")
UNUSED = "linear."


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): v for k, v in source.items() if k.startswith(HEAD)}
    if set(head) != {"weight", "bias"}:
        raise ConversionError(
            f"{HEAD}{{weight,bias}} not found (have {sorted(head)}): not DeepfakeBench's SIA"
        )
    if not any(k.startswith("conv3.") for k in source):
        raise ConversionError("conv3.* (the level 2 -> 3 link) not found: not DeepfakeBench's SIA detector")

    def rename(k: str) -> str | None:
        if k.startswith(PREFIX):
            new = efficientnet_pytorch_key(k.removeprefix(PREFIX))
            return None if new is None else "body.backbone.model." + new
        for old, new in LINKS.items():
            if k.startswith(old):
                return new + k.removeprefix(old)
        return None

    def drop(k: str) -> bool:
        return k.startswith(HEAD) or k.startswith(UNUSED) or bool(FIXED.match(k))

    out = map_keys(source, rename, drop, what="dfb_sia")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="dfb_sia",
    kind="checkpoint",
    description="DeepfakeBench SIA detector (EfficientNet-B4 + self-information attention, 256 px)",
    convert=convert,
    overrides=("method=sia/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
