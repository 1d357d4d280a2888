"""DeepfakeBench's Face X-ray detector (``training/detectors/facexray_detector.py`` with
``networks/cls_hrnet.py`` and ``config/backbone/cls_hrnet_w48.yaml``).

Source keys: ``[module.]backbone.<HRNet-W48 key>`` (HRNet-Image-Classification names, which are timm
``hrnet_w48``'s; its classification head ``incre_modules``, ``downsamp_modules``, ``final_layer`` and
``fc`` are not used by the detector's forward, which concatenates the four branch outputs, and are dropped),
``post_process.{0,1,3,4,6}`` (conv 720→256, BN, conv 256→128, BN, conv 128→1) and ``fc.{0,1,3,4}`` (Linear
16384→1024, BN, Linear 1024→128, BN) kept by name, ``fc.6`` = ``Linear(128, 2)`` read as softmax[:, 1] →
our one logit. Inputs 256 px, mean = std = 0.5; aligned ×1.3 crops; video score = mean of frames.
Target: ``method=face_xray/dfb``.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

BACKBONE = "backbone."
UNUSED = tuple(f"backbone.{m}." for m in ("incre_modules", "downsamp_modules", "final_layer", "fc"))
KEPT_HEADS = ("post_process.", "fc.")
LAST = "fc.6."


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    last = {k.removeprefix(LAST): v for k, v in source.items() if k.startswith(LAST)}
    if set(last) != {"weight", "bias"}:
        raise ConversionError(
            f"{LAST}{{weight,bias}} not found (have {sorted(last)}): not DeepfakeBench's Face X-ray"
        )

    def rename(k: str) -> str | None:
        if k.startswith(BACKBONE):
            return "features.backbone.model." + k.removeprefix(BACKBONE)
        if k.startswith(KEPT_HEADS):
            return k
        return None

    def drop(k: str) -> bool:
        return k.startswith(UNUSED) or k.startswith(LAST)

    out = map_keys(source, rename, drop, what="dfb_face_xray")
    out["fc.6.weight"], out["fc.6.bias"] = two_logit_head(last["weight"], last["bias"], LAST)
    return out


FORMAT = Format(
    name="dfb_face_xray",
    kind="checkpoint",
    description="DeepfakeBench Face X-ray detector (HRNet-W48, post_process map head, fc classifier, 256 px)",
    convert=convert,
    overrides=("method=face_xray/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
