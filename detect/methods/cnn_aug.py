"""CNN-Aug: Wang, Wang, Zhang, Owens and Efros, "CNN-generated images are surprisingly easy to spot... for
now", CVPR 2020 (arXiv:1912.11035); the authors' code (PeterWang512/CNNDetection, ``data/datasets.py``,
``options/``); DeepfakeBench ``resnet34_detector.py`` (its "CNN-Aug" row).

The detector is a plain binary classifier — an ImageNet-pretrained ResNet-50 whose last layer is replaced
by one logit, trained with binary cross-entropy (Sec. 3.2) — and the paper's point is its training
augmentation (Sec. 3.2, "Data augmentation"; Sec. 4.2 compares the variants):

* **Blur**: with probability p, a Gaussian blur with σ ~ U[0, 3];
* **JPEG**: independently, with probability p, JPEG compression with quality ~ U{30, ..., 100};
* applied to the 256-pixel image before the random 224 x 224 crop and the horizontal flip.

"Blur+JPEG (0.5)" (p = 0.5) is the paper's main model and the default here; "Blur+JPEG (0.1)" is
``method.aug_prob=0.1`` (preset ``cnn_aug/blur_jpeg_01``). The augmentation is the recipe's albumentations
list (``conf/method/cnn_aug.yaml``: ``GaussianBlur(sigma_limit=[0.001, 3], blur_limit=0)`` — the
kernel follows σ, as SciPy's ``gaussian_filter`` in the authors' code; σ = 0 exactly would divide by zero in
albumentations —, ``ImageCompression(quality_range=[30,
100])``, a random translation by up to 1/16 of the side before the engine's 224 centre crop of the 256
resize, which is a random 224 crop, and ``HorizontalFlip``). :data:`CNN_AUG_TRANSFORMS` names them for the
tests that check the composed parameters.

The network is :class:`~detect.methods.baseline.Baseline` (backbone, global pooling, one logit, BCE);
``fit_step`` logs the loss as ``bce``.
"""

from __future__ import annotations

from collections.abc import Mapping

from detect.engine.context import StepContext
from detect.engine.method_contract import StepOutput
from detect.methods.baseline import Baseline

#: The albumentations classes of the paper's augmentation, in the order they are applied.
CNN_AUG_TRANSFORMS = ("GaussianBlur", "ImageCompression", "Affine", "HorizontalFlip")


class CNNAug(Baseline):
    """ResNet + one logit + BCE, trained with the paper's blur and JPEG augmentation (Wang et al.)."""

    name = "cnn_aug"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        aug_prob: float = 0.5,
        dropout: float = 0.0,
        name: str = "cnn_aug",
    ) -> None:
        if not 0.0 <= float(aug_prob) <= 1.0:
            raise ValueError(f"method.aug_prob={aug_prob}: a probability in [0, 1] (the paper: 0.5 or 0.1)")
        super().__init__(backbone, optim, scheduler, loss="bce", dropout=dropout, name=name)
        self.aug_prob = float(aug_prob)  # read by the recipe's augmentation list (recorded in run_info)

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        out = super().fit_step(batch, ctx)
        out.logs["bce"] = out.loss
        return out

    def run_info(self) -> dict:
        return {"aug_prob": self.aug_prob}
