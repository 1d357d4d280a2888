"""DeepfakeBench's FFD detector (``training/detectors/ffd_detector.py``, ``maptype: reg``).

Source keys: ``[module.]backbone.<name>``, DeepfakeBench's Xception (the FaceForensics++ Xception's names,
which are timm ``legacy_xception``'s), with ``backbone.last_linear`` = ``Linear(2048, 2)`` read as
softmax[:, 1]; ``map.c.conv1`` / ``map.c.pointwise``, the regression map's depthwise 3x3 and pointwise 1x1
convolutions (728 -> 1, no bias, sigmoid), applied after ``block7``; ``backbone.adjust_channel.*`` is unused
by the classifier and dropped. Inputs 256 px, mean = std = 0.5. Target: ``method=ffd/dfb`` (Xception at
256 px, the map after block7).
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

HEAD = "backbone.last_linear."
UNUSED = "backbone.adjust_channel."
MAP = {
    "map.c.conv1.weight": "attention.depthwise.weight",
    "map.c.pointwise.weight": "attention.pointwise.weight",
}


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k: source.get(HEAD + k) for k in ("weight", "bias")}
    if any(v is None for v in head.values()):
        raise ConversionError(f"{HEAD}{{weight,bias}} not found: not DeepfakeBench's FFD detector")
    if any(k not in source for k in MAP):
        raise ConversionError(
            f"{sorted(MAP)} not found: not DeepfakeBench's FFD with maptype reg (the only map it trains)"
        )

    def rename(k: str) -> str | None:
        if k in MAP:
            return MAP[k]
        return "body.backbone.model." + k.removeprefix("backbone.") if k.startswith("backbone.") else None

    def drop(k: str) -> bool:
        return k.startswith(UNUSED) or k.startswith(HEAD)

    out = map_keys(source, rename, drop, what="dfb_ffd")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="dfb_ffd",
    kind="checkpoint",
    description="DeepfakeBench FFD detector (Xception + regression attention map after block7, 256 px)",
    convert=convert,
    overrides=("method=ffd/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
