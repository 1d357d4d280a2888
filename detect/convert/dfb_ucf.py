"""DeepfakeBench's UCF detector (``training/detectors/ucf_detector.py``; Yan et al., ICCV 2023).

Source keys (optional ``module.`` prefix): ``encoder_f.*`` / ``encoder_c.*`` — two DeepfakeBench Xceptions
(``networks/xception.py``, FaceForensics++ Xception names = timm ``legacy_xception``'s) with
``adjust_channel.{0,1}`` (1x1 conv 2048 -> 512, batch norm); their ``last_linear`` (Linear(2048, 2)) is
never used by UCF and is dropped. ``block_spe.conv2d.{0,2,4}`` / ``block_sha.conv2d.{0,2,4}`` (the
specific / common split), ``head_spe.mlp.{0,2}`` (real + FF++'s four manipulations: 5 classes),
``head_sha.mlp.{0,2}`` (two logits, read as softmax[:, 1] -> our one logit), ``con_gan.dconv_up{3,2,1}.{0,2}``
and ``con_gan.conv_last`` (the conditional decoder). Inputs 256 px, mean = std = 0.5; DeepfakeBench's
aligned x1.3 crops; video score = mean of frame probabilities. Target: ``method=ucf/dfb`` (Xception at
256 px, specific classes real, DF, F2F, FS, NT as DeepfakeBench's label_dict numbers them).
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys, two_logit_head

ENCODERS = {"encoder_f.": "forgery_encoder.", "encoder_c.": "content_encoder."}
SIMPLE = {
    "block_spe.conv2d.": "split_specific.",
    "block_sha.conv2d.": "split_common.",
    "head_spe.mlp.": "head_specific.mlp.",
    "head_sha.mlp.0.": "head_common.mlp.0.",
    "con_gan.dconv_up3.": "decoder.blocks.0.",
    "con_gan.dconv_up2.": "decoder.blocks.1.",
    "con_gan.dconv_up1.": "decoder.blocks.2.",
    "con_gan.conv_last.": "decoder.to_image.",
}
HEAD = "head_sha.mlp.2."


def _rename(key: str) -> str | None:
    for src, dst in ENCODERS.items():
        if key.startswith(src):
            rest = key.removeprefix(src)
            if rest.startswith("adjust_channel."):
                return dst + "adjust." + rest.removeprefix("adjust_channel.")
            return dst + "body.backbone.model." + rest
    for src, dst in SIMPLE.items():
        if key.startswith(src):
            return dst + key.removeprefix(src)
    return None


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = {k.removeprefix(HEAD): v for k, v in source.items() if k in (HEAD + "weight", HEAD + "bias")}
    if set(head) != {"weight", "bias"} or not any(k.startswith("encoder_c.") for k in source):
        raise ConversionError(
            "head_sha.mlp.2.{weight,bias} or encoder_c.* not found: not DeepfakeBench's UCF detector"
        )

    def drop(k: str) -> bool:
        return k.startswith(("encoder_f.last_linear.", "encoder_c.last_linear.")) or k.startswith(HEAD)

    out = map_keys(source, _rename, drop, what="dfb_ucf")
    out["head_common.mlp.2.weight"], out["head_common.mlp.2.bias"] = two_logit_head(
        head["weight"], head["bias"], HEAD
    )
    return out


FORMAT = Format(
    name="dfb_ucf",
    kind="checkpoint",
    description="DeepfakeBench UCF detector (two Xception encoders, common-branch detection, 256 px)",
    convert=convert,
    overrides=("method=ucf/dfb", "backbone=xception", "dataset=ff"),
    config={
        "input": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": None},
        "inference": {"crop": {"mode": "align", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
