"""DeepfakeBench's RECCE detector (``training/detectors/recce_detector.py`` at 8a4a7bf).

Source keys: ``[module.]model.*`` is the network (``Recce``): ``model.encoder.<name>`` a timm 0.6
``xception`` (the ``legacy_xception`` names; its ImageNet ``fc`` is unused and dropped), ``model.decoder1``
... ``decoder6``, ``model.reasoning.*`` (graph reasoning), ``model.attention.*`` (guided attention) and
``model.fc`` = ``Linear(2048, 2)`` read as softmax[:, 1]. ``[module.]backbone.*`` is a second, unused
Xception the detector builds and never calls (its own FIXME): dropped. Inputs 256 px, mean = std = 0.5;
DeepfakeBench's aligned ×1.3 crops; video score = mean of frame probabilities. Target: ``method=recce/dfb``
(Xception at 256 px).
"""

from __future__ import annotations

import re

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

HEAD = ("model.fc.weight", "model.fc.bias")
UNUSED = ("backbone.", "model.encoder.fc.")

#: module renames (source prefix -> ours), longest first where they nest
_RENAMES = {
    "model.encoder.": "body.backbone.model.",
    "model.attention.gated.": "attention.gate.",
    "model.attention.h.": "attention.transform.",
    "model.reasoning.va_embedding.": "reasoning.embed_a.",
    "model.reasoning.va_gated_b.": "reasoning.gate_b.",
    "model.reasoning.va_gated_c.": "reasoning.gate_c.",
    "model.reasoning.vb_embedding.": "reasoning.embed_b.",
    "model.reasoning.vc_embedding.": "reasoning.embed_c.",
    "model.reasoning.reweight_ab.0.": "reasoning.weight_ab.",
    "model.reasoning.reweight_ac.0.": "reasoning.weight_ac.",
    "model.reasoning.reproject.": "reasoning.project.",
    "model.decoder1.": "decoder.up1.",
    "model.decoder2.": "decoder.block1.",
    "model.decoder3.": "decoder.up2.",
    "model.decoder4.": "decoder.block2.",
    "model.decoder5.": "decoder.up3.",
    "model.decoder6.": "decoder.to_image.",
}


def rename(key: str) -> str | None:
    for src, dst in _RENAMES.items():
        if key.startswith(src):
            new = dst + key.removeprefix(src)
            if not src.startswith("model.encoder."):  # separable convs: conv1 is our depthwise
                new = re.sub(r"\.conv1\.weight$", ".depthwise.weight", new)
            return new
    return None


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not all(k in source for k in HEAD):
        raise ConversionError("model.fc.{weight,bias} not found: not DeepfakeBench's RECCE detector")
    out = map_keys(source, rename, lambda k: k.startswith(UNUSED) or k in HEAD, what="dfb_recce")
    out["head.weight"], out["head.bias"] = two_logit_head(source[HEAD[0]], source[HEAD[1]], "model.fc")
    return out


FORMAT = Format(
    name="dfb_recce",
    kind="checkpoint",
    description="DeepfakeBench RECCE detector (timm Xception encoder, decoder, graph reasoning, 256 px)",
    convert=convert,
    overrides=("method=recce/dfb", "backbone=xception", "backbone.input_size=256"),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
