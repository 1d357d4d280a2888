"""DeepfakeBench's Capsule-Forensics detector (``training/detectors/capsule_net_detector.py``) ->
``method=capsule/dfb backbone=vgg19`` (:class:`detect.methods.capsule.Capsule`).

Source keys (``[module.]`` optional): ``vgg_ext.vgg_1.<i>.{weight,bias}`` (torchvision VGG-19
``features[0:19]``, the same indices as timm's ``features.<i>``); ``fea_ext.capsules.<k>.<j>.*``, the k-th
primary capsule's ``nn.Sequential`` (j = 0, 1, 3, 4: conv-BN, conv-BN; 7, 8, 9, 10: Conv1d-BN, Conv1d-BN;
the others hold no weights); ``routing_stats.route_weights`` (2 x 10 x 4 x 8, output capsule 0 = real,
1 = fake). No head to convert: the class scores come from the output capsules. DeepfakeBench's probability
is ``softmax(class scores)[fake]``, a monotone function of ours (the fake class score), so AUCs agree.
Inputs 256 px, mean = std = 0.5.
"""

from __future__ import annotations

from detect.convert.common import Format, map_keys
from detect.convert.dfb_input import DFB_256_CONFIG

#: Index in DeepfakeBench's primary-capsule ``nn.Sequential`` -> ours (``conv.<j>`` / ``stats.<j>``).
CAPSULE_LAYERS = {
    "0": "conv.0",
    "1": "conv.1",
    "3": "conv.3",
    "4": "conv.4",
    "7": "stats.0",
    "8": "stats.1",
    "9": "stats.2",
    "10": "stats.3",
}


def rename(key: str) -> str | None:
    parts = key.split(".")
    if parts[:2] == ["vgg_ext", "vgg_1"] and len(parts) == 4 and parts[2].isdigit():
        return f"body.backbone.model.features.{parts[2]}.{parts[3]}"
    if parts[:2] == ["fea_ext", "capsules"] and len(parts) >= 5 and parts[3] in CAPSULE_LAYERS:
        return f"primary.{parts[2]}.{CAPSULE_LAYERS[parts[3]]}." + ".".join(parts[4:])
    if key == "routing_stats.route_weights":
        return "routing.weight"
    return None


FORMAT = Format(
    name="dfb_capsule",
    kind="checkpoint",
    description="DeepfakeBench Capsule-Forensics detector (VGG-19 to pool3, 10 primary capsules, 256 px)",
    convert=lambda source: map_keys(source, rename, what="dfb_capsule"),
    overrides=("method=capsule/dfb", "backbone=vgg19"),
    config=DFB_256_CONFIG,
)
