"""LipForensics' release (Haliassos et al., CVPR 2021; ``lipforensics_ff.pth`` of ``ahaliassos/LipForensics``,
trained on FF++ c23 (Deepfakes, FaceSwap, Face2Face, NeuralTextures), the model of its Table 2 video-level
AUCs) -> ``method=lipforensics``.

Source layout (a reading of the authors' ``models/spatiotemporal_net.py``, which loads the file's
``"model"`` entry into ``Lipreading(num_classes=1, relu_type="prelu")``): ``frontend3D.{0,1,2}`` (Conv3d,
BN, PReLU), ``trunk.layer{1-4}.{0,1}.{conv1,bn1,relu1,conv2,bn2,relu2,downsample.{0,1}}``,
``tcn.mb_ms_tcn.network.{0-3}.{cbcr0_k,cbcr1_k}.{conv,batchnorm,non_lin}`` (k = 0, 1, 2 for kernels 3, 5,
7), ``.downsample`` (the 1x1 residual Conv1d), ``.relu_final``, and ``tcn.tcn_output`` (Linear(768, 1)); every
key maps one-to-one (:func:`detect.methods.lipforensics.authors_key`), nothing is dropped. The file itself
could not be opened here: the key/shape manifest ``tests/data/release_manifests/lipforensics.json`` is built
by hand from that code.

Its evaluation (``evaluate.py``): grayscale 96 x 96 mouth crops (aligned to the LRW mean face), centre 88,
(x/255 - 0.421) / 0.165, 25-frame non-overlapping clips from the start of the video, a video's score the
mean of its clips' LOGITS (ours: the mean of the clips' probabilities).
"""

from __future__ import annotations

import torch

from detect.convert.common import ConversionError, Format, map_keys
from detect.methods.lipforensics import authors_key

HEAD = "tcn.tcn_output.weight"


def rename(key: str) -> str | None:
    """Our ``method=lipforensics`` key (``net.`` + the network's) of a release key, None when it has none."""
    ours = authors_key(key)
    return None if ours is None else f"net.{ours}"


def convert(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if HEAD not in source or "frontend3D.0.weight" not in source:
        raise ConversionError(f"{HEAD} / frontend3D.0.weight not found: not LipForensics' release")
    if source[HEAD].shape[0] != 1:
        raise ConversionError(
            f"{HEAD} has {source[HEAD].shape[0]} outputs: a lipreading word classifier, not the forgery "
            "detector (give it to method.lipreading=PATH to fine-tune from it instead)"
        )
    return map_keys(source, rename, what="lipforensics")


FORMAT = Format(
    name="lipforensics",
    kind="checkpoint",
    description="LipForensics release (lipforensics_ff.pth: ResNet-18 + MS-TCN, grayscale 88 px mouth clips)",
    convert=convert,
    overrides=("method=lipforensics", "method.lipreading=release"),
    config={
        "input": {"size": 96, "mean": [0.421, 0.421, 0.421], "std": [0.165, 0.165, 0.165], "crop": 88},
        "inference": {"crop": {"mode": "box", "scale": 1.3, "size": 256}, "aggregate": "mean"},
    },
)
