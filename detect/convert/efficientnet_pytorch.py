"""ImageNet weights in the ``efficientnet_pytorch`` package's naming (``efficientnet-b4-*.pth``), as a
backbone: timm ``tf_efficientnet_b4`` names, the classifier ``_fc`` dropped. The result is a weights file
for ``backbone=effb4_ep backbone.pretrained=<dst>`` (the package's static "same" pads for 380 px).
"""

from __future__ import annotations

import torch

from detect.convert.common import Format, efficientnet_pytorch_key, map_keys


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return map_keys(
        source, efficientnet_pytorch_key, drop=lambda k: k.startswith("_fc."), what="efficientnet_pytorch"
    )


FORMAT = Format(
    name="efficientnet_pytorch",
    kind="backbone",
    description="efficientnet_pytorch EfficientNet-B4 weights (ImageNet), as a backbone weights file",
    convert=convert,
    overrides=("backbone=effb4_ep",),
)
