"""ProDet's release (Cheng et al., NeurIPS 2024; ``training/detectors/ProDet_detector.py`` and
``demo/prodet_inference.py`` of the authors' repository) -> ``method=prodet backbone=effb4_dfb``.

Source keys (``module.`` stripped): DeepfakeBench's EfficientNet-B4 ``backbone.efficientnet.*`` (its unused
``backbone.last_layer`` dropped), ``adjust_feature`` (1x1 conv 1792 -> 512), four heads
``{blend,ID_inconsistency,deepfake,final}_classifier`` (GAP, Linear(512, 256), LeakyReLU, Linear(256, 2):
parameters at ``.2`` and ``.4``), ``fea_att`` (``inverse_conv{1,2,3}``: Linear(2, 256), LeakyReLU,
Linear(256, 512), reshape, ConvTranspose2d(512, 512, 8) at ``.0/.2/.4``; ``attention``: conv-BN-ReLU-conv-BN-
ReLU-conv-sigmoid at ``.0/.1/.3/.4/.6``) and the transition blocks ``real2sbi``/``sbi2bi``/``bi2fake``
(``noise_process`` and ``concat_process`` convs at ``.0/.2``).

The release's attention takes ``cat(lift(deepfake), lift(blend), lift(identity), feature)`` (its
``fea_att(df_pred, bld_pred, bi_pred, features)``) where ours takes ``cat(feature, blending, identity,
generative)``: the first attention convolution's input-channel blocks are reordered accordingly. Its
transition concatenates ``(feature, processed noise)``, ours ``(processed noise, feature)``: the merge
convolution's input halves are swapped. Inference: softmax[:, 1] of ``final_classifier``; 256 px,
mean = std = 0.5, DeepfakeBench's aligned x1.3 crops, video score = mean of frame probabilities.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, efficientnet_pytorch_key, map_keys

HEADS = {  # release head -> ours (ATTRIBUTES order: blending, identity, generative)
    "blend_classifier": "attributes.heads.0.mlp",
    "ID_inconsistency_classifier": "attributes.heads.1.mlp",
    "deepfake_classifier": "attributes.heads.2.mlp",
    "final_classifier": "classifier.mlp",
}
HEAD_LAYERS = {"2": "0", "4": "2"}
LIFTS = {"inverse_conv2": "0", "inverse_conv3": "1", "inverse_conv1": "2"}  # blend, identity, deepfake
LIFT_LAYERS = {"0": "lift.{i}.0", "2": "lift.{i}.2", "4": "expand.{i}"}
ATTENTION_LAYERS = {"0", "1", "3", "4", "6"}
TRANSITIONS = {"real2sbi": "real_to_sbi", "sbi2bi": "sbi_to_cbi", "bi2fake": "cbi_to_deepfake"}
TRANSITION_PARTS = {"noise_process": "noise", "concat_process": "merge"}
UNUSED = ("backbone.last_layer.", "re_classifier.")  # heads the release's prediction never uses


def rename(k: str) -> str | None:
    parts = k.split(".")
    if k.startswith("backbone.efficientnet."):
        new = efficientnet_pytorch_key(k.removeprefix("backbone.efficientnet."))
        return None if new is None else "backbone.model." + new
    if parts[0] == "adjust_feature" and len(parts) == 2:
        return "reduce." + parts[1]
    if parts[0] in HEADS and len(parts) == 3 and parts[1] in HEAD_LAYERS:
        return f"{HEADS[parts[0]]}.{HEAD_LAYERS[parts[1]]}.{parts[2]}"
    if parts[0] == "fea_att" and len(parts) == 4:
        if parts[1] in LIFTS and parts[2] in LIFT_LAYERS:
            return "projector." + LIFT_LAYERS[parts[2]].format(i=LIFTS[parts[1]]) + "." + parts[3]
        if parts[1] == "attention" and parts[2] in ATTENTION_LAYERS:
            return f"projector.fuse.{parts[2]}.{parts[3]}"
    if (
        parts[0] in TRANSITIONS
        and len(parts) == 4
        and parts[1] in TRANSITION_PARTS
        and parts[2] in ("0", "2")
    ):
        return f"transitions.{TRANSITIONS[parts[0]]}.{TRANSITION_PARTS[parts[1]]}.{parts[2]}.{parts[3]}"
    return None


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "fea_att.attention.0.weight" not in source or "adjust_feature.weight" not in source:
        raise ConversionError(
            "fea_att.attention.0.weight / adjust_feature.weight not found: not ProDet's release"
        )
    out = map_keys(source, rename, drop=lambda k: k.startswith(UNUSED), what="prodet")
    w = out["projector.fuse.0.weight"]
    c = w.shape[1] // 4
    deepfake, blend, identity, feature = (w[:, i * c : (i + 1) * c] for i in range(4))
    out["projector.fuse.0.weight"] = torch.cat([feature, blend, identity, deepfake], dim=1).contiguous()
    for edge in TRANSITIONS.values():
        key = f"transitions.{edge}.merge.0.weight"
        if key in out:
            m = out[key]
            half = m.shape[1] // 2
            out[key] = torch.cat([m[:, half:], m[:, :half]], dim=1).contiguous()
    return out


FORMAT = Format(
    name="prodet",
    kind="checkpoint",
    description="ProDet release (DeepfakeBench EfficientNet-B4 + adjust_feature, four heads, fea_att)",
    convert=convert,
    overrides=("method=prodet", "backbone=effb4_dfb"),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
