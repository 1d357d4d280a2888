"""SBI's released detector (Shiohara & Yamasaki, CVPR 2022; ``src/inference/model.py``): an
``efficientnet_pytorch`` EfficientNet-B4 with a 2-way ``_fc``, weights under ``"model"`` as ``net.<key>``.

Its inference (``src/inference/inference_video.py``, ``preprocess.py``): faces cropped to the detector's box
grown by an eighth of its width/height on each side (x1.25, not squared) and resized to 380 x 380; pixels
/255 with no normalisation; softmax[:, 1]; video score = mean over frames of the per-frame maximum over
faces. Target: ``method=baseline backbone=effb4_ep`` with mean 0, std 1.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, efficientnet_pytorch_key, map_keys, two_logit_head

PREFIX = "net."
HEAD = "net._fc."


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): v for k, v in source.items() if k.startswith(HEAD)}
    if set(head) != {"weight", "bias"}:
        raise ConversionError(f"{HEAD}{{weight,bias}} not found (have {sorted(head)}): not SBI's release")

    def rename(k: str) -> str | None:
        if not k.startswith(PREFIX):
            return None
        new = efficientnet_pytorch_key(k.removeprefix(PREFIX))
        return None if new is None else "backbone.model." + new

    out = map_keys(source, rename, drop=lambda k: k.startswith(HEAD), what="sbi")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="sbi",
    kind="checkpoint",
    description="SBI release (weights under 'model', efficientnet_pytorch B4, inputs in [0, 1], 380 px)",
    convert=convert,
    overrides=("method=baseline", "backbone=effb4_ep"),
    config={
        "input": {"size": 380, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "crop": None},
        "inference": {"crop": {"mode": "rect", "scale": 1.25, "size": 380}, "aggregate": "mean_of_frame_max"},
    },
)
