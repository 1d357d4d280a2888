"""DeepfakeBench's EfficientNet-B4 detector (``training/detectors/efficientnetb4_detector.py``).

Source keys: ``[module.]backbone.efficientnet.<efficientnet_pytorch key>`` (its stem replaced by an
unpadded ``Conv2d(3, 48, 3, stride 2)``, ``_fc`` an identity) and ``backbone.last_layer`` =
``Linear(1792, 2)`` on the average-pooled features, read as softmax[:, 1]; inputs 256 px normalised with
mean = std = 0.5; faces aligned on 5 landmarks with a x1.3 margin (DeepfakeBench's preprocessing);
video score = mean of frame probabilities. Target: ``method=baseline backbone=effb4_dfb``.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, efficientnet_pytorch_key, map_keys, two_logit_head

PREFIX = "backbone.efficientnet."
HEAD = "backbone.last_layer."


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): v for k, v in source.items() if k.startswith(HEAD)}
    if set(head) != {"weight", "bias"}:
        raise ConversionError(
            f"{HEAD}{{weight,bias}} not found (have {sorted(head)}): not DeepfakeBench's EfficientNet-B4"
        )

    def rename(k: str) -> str | None:
        if not k.startswith(PREFIX):
            return None
        new = efficientnet_pytorch_key(k.removeprefix(PREFIX))
        return None if new is None else "backbone.model." + new

    out = map_keys(source, rename, drop=lambda k: k.startswith(HEAD), what="dfb_efficientnetb4")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="dfb_efficientnetb4",
    kind="checkpoint",
    description="DeepfakeBench EfficientNet-B4 detector (efficientnet_pytorch names, unpadded stem, 256 px)",
    convert=convert,
    overrides=("method=baseline", "backbone=effb4_dfb"),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
