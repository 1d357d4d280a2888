"""DeepfakeBench's SLADD detector (``training/detectors/sladd_detector.py``, ``networks/xception_sladd.py``
and the synthesiser of ``detectors/utils/sladd_api.py``).

Source keys: ``[module.]backbone.<name>`` with the FaceForensics++ Xception's names (timm
``legacy_xception``'s) → ``body.backbone.model.<name>``; its heads ``backbone.last_linear`` = ``Linear(2048,
2)`` read as softmax[:, 1] → our one logit ``cls_fc``, ``backbone.type_fc`` (5 types) and ``backbone.mag_fc``
kept, ``backbone.map.c.{conv1,pointwise}`` (the region map's separable convolution on block7) →
``map_head.{0,1}``. The synthesiser ``synthesizer.netG.model.*`` (an Xception with a 6-channel ``iniconv``
and depthwise convolutions named ``c``) → ``policy.body.backbone.model.*`` (``iniconv`` → ``conv1``, ``c`` →
``conv1``), its heads ``fc_{region,type,mag}.1`` (behind dropout) → ``policy.{region,type,mag}_fc``. Inputs
256 px, mean = std = 0.5; aligned ×1.3 crops; video score = mean of frames. Target: ``method=sladd/dfb``.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

DET = "backbone."
SYN = "synthesizer.netG.model."
LAST = "backbone.last_linear."
HEADS = {"backbone.type_fc.": "type_fc.", "backbone.mag_fc.": "mag_fc."}
MAP = {
    "backbone.map.c.conv1.weight": "map_head.0.weight",
    "backbone.map.c.pointwise.weight": "map_head.1.weight",
}
SYN_HEADS = {
    "fc_region.1.": "policy.region_fc.",
    "fc_type.1.": "policy.type_fc.",
    "fc_mag.1.": "policy.mag_fc.",
}


def _synthesiser_key(name: str) -> str:
    for src, dst in SYN_HEADS.items():
        if name.startswith(src):
            return dst + name.removeprefix(src)
    parts = ["conv1" if p in ("c", "iniconv") else p for p in name.split(".")]
    return "policy.body.backbone.model." + ".".join(parts)


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    last = {k.removeprefix(LAST): v for k, v in source.items() if k.startswith(LAST)}
    if set(last) != {"weight", "bias"}:
        raise ConversionError(
            f"{LAST}{{weight,bias}} not found (have {sorted(last)}): not DeepfakeBench's SLADD"
        )

    def rename(k: str) -> str | None:
        if k in MAP:
            return MAP[k]
        for src, dst in HEADS.items():
            if k.startswith(src):
                return dst + k.removeprefix(src)
        if k.startswith(SYN):
            return _synthesiser_key(k.removeprefix(SYN))
        if k.startswith(DET):
            return "body.backbone.model." + k.removeprefix(DET)
        return None

    out = map_keys(source, rename, lambda k: k.startswith(LAST), what="dfb_sladd")
    out["cls_fc.weight"], out["cls_fc.bias"] = two_logit_head(last["weight"], last["bias"], LAST)
    return out


FORMAT = Format(
    name="dfb_sladd",
    kind="checkpoint",
    description="DeepfakeBench SLADD detector (Xception, map/type/ratio heads, synthesiser; 256 px)",
    convert=convert,
    overrides=("method=sladd/dfb",),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
