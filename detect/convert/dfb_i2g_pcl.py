"""DeepfakeBench's I2G-PCL detector (``training/detectors/pcl_xception_detector.py``, backbone
``xception_sladd``).

Source keys: ``[module.]backbone.<name>``, its Xception (the FaceForensics++ Xception's names, which are
timm ``legacy_xception``'s), with ``backbone.last_linear`` = ``Linear(2048, 2)`` read as softmax[:, 1];
``PCL.theta`` the consistency branch's 1x1 embedding (728 -> 728, with bias) on block7's output. Dropped,
because DeepfakeBench's PCL detector never uses them: ``PCL.phi`` (defined, never called: θ embeds both
sides of the dot product), and the ``xception_sladd`` heads of SLADD ``backbone.type_fc``,
``backbone.mag_fc`` and ``backbone.map`` (the PCL detector calls only ``features`` and ``classifier``).
The consistency branch serves training only; it is kept so a converted model can be fine-tuned. Inputs
256 px, mean = std = 0.5. Target: ``method=i2g_pcl/dfb``.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

HEAD = "backbone.last_linear."
UNUSED = ("PCL.phi.", "backbone.type_fc.", "backbone.mag_fc.", "backbone.map.")
BRANCH = {"PCL.theta.weight": "pcl.theta.weight", "PCL.theta.bias": "pcl.theta.bias"}


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k: source.get(HEAD + k) for k in ("weight", "bias")}
    if any(v is None for v in head.values()):
        raise ConversionError(f"{HEAD}{{weight,bias}} not found: not DeepfakeBench's PCL detector")
    if any(k not in source for k in BRANCH):
        raise ConversionError(f"{sorted(BRANCH)} not found: not DeepfakeBench's PCL (pcl_xception) detector")

    def rename(k: str) -> str | None:
        if k in BRANCH:
            return BRANCH[k]
        return "body.backbone.model." + k.removeprefix("backbone.") if k.startswith("backbone.") else None

    def drop(k: str) -> bool:
        return k.startswith(UNUSED) or k.startswith(HEAD)

    out = map_keys(source, rename, drop, what="dfb_i2g_pcl")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="dfb_i2g_pcl",
    kind="checkpoint",
    description="DeepfakeBench I2G-PCL detector (Xception + pair-wise consistency branch on block7, 256 px)",
    convert=convert,
    overrides=("method=i2g_pcl/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
