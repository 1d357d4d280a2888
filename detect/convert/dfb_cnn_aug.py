"""DeepfakeBench's ResNet-34 detector, its "CNN-Aug" row (``training/detectors/resnet34_detector.py``,
network ``networks/resnet34.py``) -> ``method=cnn_aug/dfb backbone=resnet34``
(:class:`detect.methods.cnn_aug.CNNAug`).

Source keys (``[module.]`` optional): ``backbone.resnet.<i>.*``, torchvision's ResNet-34 children without
pooling and classifier as an ``nn.Sequential`` (0 ``conv1``, 1 ``bn1``, 4-7 ``layer1``-``layer4``; 2 and 3,
ReLU and max-pooling, hold no weights), which are timm ``resnet34``'s names; ``backbone.fc`` = Linear(512,
2) on the average-pooled features, read as softmax[:, 1] -> one logit. Inputs 256 px, mean = std = 0.5.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head
from detect.convert.dfb_input import DFB_256_CONFIG

#: DeepfakeBench's ``backbone.resnet`` index -> timm ResNet module.
RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
HEAD = "backbone.fc."


def rename(key: str) -> str | None:
    parts = key.split(".")
    if parts[:2] == ["backbone", "resnet"] and len(parts) >= 4 and parts[2] in RESNET_CHILDREN:
        return "backbone.model." + ".".join([RESNET_CHILDREN[parts[2]], *parts[3:]])
    return None


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if HEAD + "weight" not in source or HEAD + "bias" not in source:
        raise ConversionError(f"{HEAD}{{weight,bias}} not found: not DeepfakeBench's ResNet-34 detector")
    out = map_keys(source, rename, lambda k: k.startswith(HEAD), what="dfb_cnn_aug")
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(
        source[HEAD + "weight"], source[HEAD + "bias"], HEAD
    )
    return out


FORMAT = Format(
    name="dfb_cnn_aug",
    kind="checkpoint",
    description="DeepfakeBench ResNet-34 detector, its CNN-Aug row (torchvision ResNet-34 names, 256 px)",
    convert=convert,
    overrides=("method=cnn_aug/dfb", "backbone=resnet34"),
    config=DFB_256_CONFIG,
)
