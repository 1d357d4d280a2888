"""DeepfakeBench's F3-Net detector (``training/detectors/f3net_detector.py``, config ``f3net.yaml``).

Source keys (``[module.]`` stripped by the reader):

* ``backbone.<name>``: its Xception (FaceForensics++ names = timm ``legacy_xception``'s) with a 12-channel
  ``conv1`` -> ``bodies.fad.backbone.model.<name>``;
* ``backbone.last_linear.1`` (behind dropout 0.5) = ``Linear(2048, 2)`` read as softmax[:, 1] -> our one
  logit ``head.1`` (``two_logit_head``); ``backbone.adjust_channel.*`` is unused by the classifier: dropped;
* ``FAD_head.filters.<i>.learnable`` (i = 0..3: low, middle, high, all; 256 x 256 each) -> stacked into
  ``fad.learnable``; ``FAD_head.filters.<i>.base``, ``FAD_head._DCT_all`` and ``FAD_head._DCT_all_T`` are
  constants (frozen parameters there) that ``method=f3net/dfb`` builds identically (DeepfakeBench's band
  edges, ``fad.edges: dfb``; the orthonormal DCT-II matrix): dropped.

Inputs 256 px, mean = std = 0.5; DeepfakeBench's aligned x1.3 crops; video score = mean of frame
probabilities. Target: ``method=f3net/dfb`` (Xception at 256 px).
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

BACKBONE = "backbone."
HEAD = "backbone.last_linear.1."
UNUSED = "backbone.adjust_channel."
FILTERS = "FAD_head.filters."
CONSTANTS = ("FAD_head._DCT_all", "FAD_head._DCT_all_T")
BANDS = 4  # low, middle, high, all


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): source[k] for k in (HEAD + "weight", HEAD + "bias") if k in source}
    if set(head) != {"weight", "bias"}:
        raise ConversionError(f"{HEAD}{{weight,bias}} not found: not DeepfakeBench's F3-Net")
    learnable = [f"{FILTERS}{i}.learnable" for i in range(BANDS)]
    missing = [k for k in learnable if k not in source]
    if missing:
        raise ConversionError(f"dfb_f3net: FAD filter keys missing: {missing} (expected four bands)")
    extra = sorted(k for k in source if k.startswith(FILTERS) and int(k.split(".")[2]) >= BANDS)
    if extra:
        raise ConversionError(f"dfb_f3net: more than {BANDS} FAD filters: {extra}")

    def rename(k: str) -> str | None:
        return "bodies.fad.backbone.model." + k.removeprefix(BACKBONE) if k.startswith(BACKBONE) else None

    def drop(k: str) -> bool:
        constant = k in CONSTANTS or (k.startswith(FILTERS) and k.endswith(".base"))
        return constant or k in learnable or k.startswith(UNUSED) or k.startswith(HEAD)

    out = map_keys(source, rename, drop, what="dfb_f3net")
    out["fad.learnable"] = torch.stack([source[k] for k in learnable])
    out["head.1.weight"], out["head.1.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    return out


FORMAT = Format(
    name="dfb_f3net",
    kind="checkpoint",
    description="DeepfakeBench F3-Net detector (FAD-only, 12-channel Xception, 256 px)",
    convert=convert,
    overrides=("method=f3net/dfb", "backbone=xception", "backbone.input_size=256"),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
