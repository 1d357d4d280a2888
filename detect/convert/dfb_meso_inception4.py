"""DeepfakeBench's MesoInception-4 detector (``training/detectors/meso4Inception_detector.py``, network
``networks/mesonet.py`` ``MesoInception4``) -> ``method=meso_inception4/dfb``
(:class:`detect.methods.mesonet.MesoNet`, ``layout: dfb``).

Source keys under ``[module.]backbone.``: ``Incption{1,2}_conv1`` (the 1x1 branch),
``Incption{i}_conv{2,3,4}_1`` (the other branches' 1x1) and ``_2`` (their 3x3, dilated 1, 2, 3),
``Incption{i}_bn``; ``conv1``, ``conv2`` (5x5, sharing ``bn1``); ``fc1``; ``fc2`` (two logits -> one).
No biases in any convolution. Inputs 256 px, mean = std = 0.5.
"""

from __future__ import annotations

from detect.convert.common import Format
from detect.convert.dfb_input import DFB_256_CONFIG
from detect.convert.dfb_meso4 import convert_mesonet


def _modules() -> dict[str, str]:
    out = {}
    for i in (1, 2):
        layer = f"layers.{i - 1}"
        out[f"Incption{i}_conv1"] = f"{layer}.branches.0.reduce"
        for branch in (2, 3, 4):
            out[f"Incption{i}_conv{branch}_1"] = f"{layer}.branches.{branch - 1}.reduce"
            out[f"Incption{i}_conv{branch}_2"] = f"{layer}.branches.{branch - 1}.conv"
        out[f"Incption{i}_bn"] = f"norms.{i - 1}"
    out.update({"conv1": "layers.2", "conv2": "layers.3", "bn1": "norms.2", "fc1": "classifier.1"})
    return out


MODULES = _modules()

FORMAT = Format(
    name="dfb_meso_inception4",
    kind="checkpoint",
    description="DeepfakeBench MesoInception-4 detector (networks/mesonet.py MesoInception4, 256 px)",
    convert=lambda source: convert_mesonet(source, MODULES, "dfb_meso_inception4"),
    overrides=("method=meso_inception4/dfb", "backbone=none"),
    config=DFB_256_CONFIG,
)
