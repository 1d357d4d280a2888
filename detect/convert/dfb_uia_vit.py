"""DeepfakeBench's UIA-ViT detector (``training/detectors/uia_vit_detector.py``).

Source keys: ``[module.]model.<name>``, its ViT-B/16 (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.<i>.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``: timm's
``vit_base_patch16_224`` names) plus ``norm_middle`` (the middle embeddings' LayerNorm), the learnable
consistency targets ``c_real`` / ``c_fake`` / ``c_cross`` and ``head`` = ``Linear(1536, 2)`` on
``[x_cls, weighted patch mean]``, read as softmax[:, 1]. Its patch Gaussians are not saved in its checkpoints
(plain attributes, refitted during training): the converted model carries unfitted ones, which evaluation
never reads. Inputs 224 px, mean = std = 0.5. Target: ``method=uia_vit/dfb``.
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

PREFIX = "model."
HEAD = "model.head."
OWN = {"norm_middle.", "c_real", "c_fake", "c_cross"}


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): v for k, v in source.items() if k.startswith(HEAD)}
    if set(head) != {"weight", "bias"} or "model.c_cross" not in source or "model.cls_token" not in source:
        raise ConversionError(
            "model.head.{weight,bias}, model.c_cross and model.cls_token not all found: "
            "not DeepfakeBench's UIA-ViT"
        )

    def rename(k: str) -> str | None:
        if not k.startswith(PREFIX):
            return None
        name = k.removeprefix(PREFIX)
        if any(name == o or name.startswith(o) for o in OWN):
            return name
        return "backbone.model." + name

    out = map_keys(source, rename, drop=lambda k: k.startswith(HEAD), what="dfb_uia_vit")
    out["head.weight"], out["head.bias"] = two_logit_head(head["weight"], head["bias"], HEAD)
    dim = int(source["model.cls_token"].shape[-1])
    for kind in ("real", "fake"):
        out[f"gaussians.{kind}_mean"] = torch.zeros(dim)
        out[f"gaussians.{kind}_precision"] = torch.eye(dim)
    out["gaussians.fitted"] = torch.tensor(False)
    return out


FORMAT = Format(
    name="dfb_uia_vit",
    kind="checkpoint",
    description="DeepfakeBench UIA-ViT detector (ViT-B/16, consistency-weighted patch assembly, 224 px)",
    convert=convert,
    overrides=("method=uia_vit/dfb",),
    config={
        "input": {"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 224}, "aggregate": "mean"},
    },
)
