"""RealForensics' released stage-2 detectors (Haliassos et al., CVPR 2022; ahaliassos/RealForensics README:
``realforensics_ff.pth``, ``realforensics_allbut{df,fs,f2f,nt}.pth``, ``realforensics_ff_nomasking.pth``).

Their ``stage2/eval.py`` reads the file with ``torch.load`` as a flat state dict of ``ModelCombined`` and
loads the ``backbone.*`` tensors (a CSN ResNet-101 under pytorchvideo's names, ``blocks.<s>.res_blocks.
<i>.branch2.conv_b`` ...) and ``df_head.weight`` (the cosine head's weight, ``[1, 2048]``); evaluation
uses nothing else. Those keys map one to one onto :class:`~detect.methods.realforensics.RealForensics`
(same names); the training-only parts a file may also hold (``target_encoder.*``, the frozen stage-1
target network, and ``ssl_head.*``, the self-supervised predictor) are dropped, and the converted detector
is built without them (``method.ssl_weight=0``). Any other key is an error.

Their test input: 25-frame RGB clips, 150 px aligned face crops centre-cropped to 140 and resized to 112
(the recipe's 120 px resize and 112 centre crop), ImageNet normalisation; a video's score: the mean of its
clips' logits (here the mean of the probabilities, docs/methods/realforensics.md).
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys

KEPT = ("backbone.", "df_head.weight")
TRAINING_ONLY = ("target_encoder.", "ssl_head.")


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "df_head.weight" not in source or not any(k.startswith("backbone.blocks.") for k in source):
        raise ConversionError(
            f"no 'df_head.weight' and 'backbone.blocks.*' (have {sorted(source)[:5]} ...): not a "
            "RealForensics stage-2 file (a stage-1 file is method.backbone_checkpoint's, not a detector)"
        )
    return map_keys(
        source,
        lambda k: k if k.startswith(KEPT) else None,
        drop=lambda k: k.startswith(TRAINING_ONLY),
        what="realforensics",
    )


FORMAT = Format(
    name="realforensics",
    kind="checkpoint",
    description="RealForensics stage-2 release (flat ModelCombined state dict: CSN-101, cosine head)",
    convert=convert,
    overrides=("method=realforensics", "method.ssl_weight=0"),
)
