"""DeepfakeBench's Meso-4 detector (``training/detectors/meso4_detector.py``, network ``networks/mesonet.py``
``Meso4``) -> ``method=meso4/dfb`` (:class:`detect.methods.mesonet.MesoNet`, ``layout: dfb``).

Source keys: ``[module.]backbone.conv{1..4}.weight`` (no biases), ``backbone.bn1.*`` (the batch normalisation
shared by conv1 and conv2), ``backbone.bn2.*`` (shared by conv3 and conv4), ``backbone.fc1.*`` (Linear(1024,
16)) and ``backbone.fc2.*`` (Linear(16, 2), read as softmax[:, 1] -> one logit). Inputs 256 px, mean = std =
0.5; DeepfakeBench's aligned x1.3 crops; video score = mean of frame probabilities.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head
from detect.convert.dfb_input import DFB_256_CONFIG

#: DeepfakeBench module -> ours (``net.`` of :class:`~detect.methods.mesonet.MesoNet`).
MODULES = {
    "conv1": "layers.0",
    "conv2": "layers.1",
    "conv3": "layers.2",
    "conv4": "layers.3",
    "bn1": "norms.0",
    "bn2": "norms.1",
    "fc1": "classifier.1",
}
HEAD = "backbone.fc2."


def convert_mesonet(
    source: dict[str, torch.Tensor], modules: dict[str, str], what: str
) -> dict[str, torch.Tensor]:
    """Rename ``backbone.<module>.<param>`` by ``modules``; the two-logit ``backbone.fc2`` -> one logit."""
    if HEAD + "weight" not in source or HEAD + "bias" not in source:
        raise ConversionError(f"{HEAD}{{weight,bias}} not found: not DeepfakeBench's MesoNet ({what})")

    def rename(key: str) -> str | None:
        if not key.startswith("backbone."):
            return None
        module, _, param = key.removeprefix("backbone.").rpartition(".")
        return f"net.{modules[module]}.{param}" if module in modules else None

    out = map_keys(source, rename, lambda k: k.startswith(HEAD), what=what)
    out["net.classifier.4.weight"], out["net.classifier.4.bias"] = two_logit_head(
        source[HEAD + "weight"], source[HEAD + "bias"], HEAD
    )
    return out


FORMAT = Format(
    name="dfb_meso4",
    kind="checkpoint",
    description="DeepfakeBench Meso-4 detector (networks/mesonet.py Meso4, 256 px)",
    convert=lambda source: convert_mesonet(source, MODULES, "dfb_meso4"),
    overrides=("method=meso4/dfb", "backbone=none"),
    config=DFB_256_CONFIG,
)
