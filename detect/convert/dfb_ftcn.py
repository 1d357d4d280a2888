"""DeepfakeBench's FTCN detector (``training/detectors/ftcn_detector.py``, head
``networks/time_transformer.py``) -> ``method=ftcn/dfb`` (:class:`detect.methods.ftcn.FTCN`, 16-frame clips).

Source keys: ``[module.]resnet.s1.pathway0_stem.{conv,bn.0}.*``,
``resnet.s{2,3,4}.pathway0_res{i}.branch1[_bn]`` and ``.branch2.{a,b,c}[_bn]`` (SlowFast's I3D ResNet-50
made temporal-only; a batch norm whose convolution lost its stride is ``Sequential(bn, MaxPool3d)``, hence
its ``.0``), and the Temporal Transformer ``resnet.head.time_T.{cls_token, pos_embedding,
transformer.layers.<i>.{0,1}.fn.*, mlp_head.{0,1}.*}`` (one logit already: no head conversion).
Inputs 224 px, mean = std = 0.5; video score = mean of clip probabilities.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys
from detect.methods.ftcn import slowfast_key

PREFIX = "resnet."
HEAD = "resnet.head.time_T."
#: DeepfakeBench's transformer block modules -> ours (:class:`detect.methods.ftcn.TransformerBlock`).
BLOCK = {
    "0.fn.norm": "attn_norm",
    "0.fn.fn.to_qkv": "to_qkv",
    "0.fn.fn.to_out.0": "to_out",
    "1.fn.norm": "mlp_norm",
    "1.fn.fn.net.0": "fc1",
    "1.fn.fn.net.3": "fc2",
}
TOP = {"cls_token": "head.cls_token", "pos_embedding": "head.pos_embedding"}
OUT = {"mlp_head.0": "head.out_norm", "mlp_head.1": "head.out"}


def rename(key: str) -> str | None:
    """Our FTCN key of a DeepfakeBench FTCN key, None when it has none."""
    if key.startswith(HEAD):
        rest = key.removeprefix(HEAD)
        if rest in TOP:
            return TOP[rest]
        module, _, param = rest.rpartition(".")
        if module in OUT:
            return f"{OUT[module]}.{param}"
        if module.startswith("transformer.layers."):
            index, _, inner = module.removeprefix("transformer.layers.").partition(".")
            return f"head.blocks.{index}.{BLOCK[inner]}.{param}" if inner in BLOCK else None
        return None
    if key.startswith(PREFIX):
        ours = slowfast_key(key.removeprefix(PREFIX))
        return f"net.{ours}" if ours else None
    return None


def convert_ftcn(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if HEAD + "pos_embedding" not in source:
        raise ConversionError(f"{HEAD}pos_embedding not found: not DeepfakeBench's FTCN (dfb_ftcn)")
    tokens = source[HEAD + "pos_embedding"].shape[1] - 1
    if tokens != 16:
        raise ConversionError(
            f"dfb_ftcn: the positional embedding holds {tokens} time steps; method=ftcn/dfb scores 16-frame "
            "clips (DeepfakeBench's clip_size)"
        )
    return map_keys(source, rename, what="dfb_ftcn")


FORMAT = Format(
    name="dfb_ftcn",
    kind="checkpoint",
    description="DeepfakeBench FTCN detector (temporal-only I3D ResNet-50 + Temporal Transformer, 16x224 px)",
    convert=convert_ftcn,
    overrides=("method=ftcn/dfb", "backbone=none", "method.pretrained=false"),
    config={
        "input": {"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 224}, "aggregate": "mean"},
    },
)
