"""DeepfakeBench's IID detector (``training/detectors/iid_detector.py``, backbone ``xception`` in mode
``adjust_channel_iid``).

Source keys: ``[module.]backbone.<name>``, its Xception (the FaceForensics++ Xception's names, which are
timm ``legacy_xception``'s) -> ``body.backbone.model.<name>``; ``backbone.adjust_channel.{0,1}`` (1x1 conv
2048 -> 512, BN) -> ``adjust.{0,1}``; ``backbone.last_linear`` = ``Linear(512, 2)`` on ``e_imp − e_exp``
read as softmax[:, 1] -> ``head`` (one logit); ``explicit_extractor.*`` (iresnet50) -> ``identity.*``;
``IIE_LOSS.kernel`` (512 x 1000, the ArcFace identity classifier) -> ``kernel``. Nothing is dropped.
Inputs 256 px, mean = std = 0.5. Target: ``method=iid/dfb``.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

HEAD = "backbone.last_linear."
ADJUST = "backbone.adjust_channel."
IDENTITY = "explicit_extractor."
KERNEL = "IIE_LOSS.kernel"


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k: source.get(HEAD + k) for k in ("weight", "bias")}
    if any(v is None for v in head.values()):
        raise ConversionError(f"{HEAD}{{weight,bias}} not found: not DeepfakeBench's IID detector")
    if KERNEL not in source or not any(k.startswith(IDENTITY) for k in source):
        raise ConversionError(f"{KERNEL} or {IDENTITY}* not found: not DeepfakeBench's IID detector")

    def rename(k: str) -> str | None:
        if k == KERNEL:
            return "kernel"
        if k.startswith(ADJUST):
            return "adjust." + k.removeprefix(ADJUST)
        if k.startswith(IDENTITY):
            return "identity." + k.removeprefix(IDENTITY)
        return "body.backbone.model." + k.removeprefix("backbone.") if k.startswith("backbone.") else None

    out = map_keys(source, rename, lambda k: k.startswith(HEAD), what="dfb_iid")
    out["head.weight"], out["head.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="dfb_iid",
    kind="checkpoint",
    description="DeepfakeBench IID detector (Xception, 512-d implicit identity, iresnet50 explicit identity)",
    convert=convert,
    overrides=("method=iid/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
