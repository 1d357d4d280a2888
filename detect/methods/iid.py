"""IID: Huang, Wang, Yang, Ai, Zou, Wang and Ye, "Implicit Identity Driven Deepfake Face Swapping
Detection", CVPR 2023; DeepfakeBench ``iid_detector.py`` (with ``detectors/utils/iid_api.py``).

The paper's text could not be consulted here; docs/methods/iid.md marks each reading. Components:

* **Explicit identity** (Sec. 3.1): a frozen face-recognition network (ArcFace iresnet50,
  :mod:`detect.methods.iid_iresnet`) embeds the face, resized to 112x112, as ``e_exp`` (512-d).
* **Implicit identity** (Sec. 3.1): the detector's backbone feature map, a 1x1 convolution to 512
  channels with BN and ReLU, global average pooling: ``e_imp`` (DeepfakeBench's ``adjust_channel``).
* **Explicit identity contrast, EIC** (Sec. 3.2, :func:`eic_loss`): pull ``e_imp`` towards ``e_exp`` for
  reals and push it away for fakes, ``L_EIC = mean_fake cos(e_imp, e_exp) − mean_real cos(e_imp, e_exp)``.
* **Implicit identity exploration, IIE** (Sec. 3.2, :func:`arcface_logits`): an ArcFace-margin classifier
  over identities on ``e_imp`` (scale s = 64, additive angular margin m = 0.4, 1000 identities: FF++'s
  source videos), labels from the video ids (``AAA`` real, ``AAA_BBB`` fake: ``BBB``;
  :mod:`detect.data.identity_view`).
* **Classifier**: a linear logit on the difference ``e_imp − e_exp`` (DeepfakeBench's ``last_linear(x −
  id_feat)``), so the decision reads the gap between the implicit and the explicit identity.
* **Objective**: ``L = L_cls + 0.05 L_IIE + 0.1 L_EIC`` (DeepfakeBench's weights; ``iie_weight``,
  ``eic_weight``). ``L_cls`` is binary cross-entropy on one logit (DeepfakeBench: a sigmoid-margin
  two-class loss, docs/methods/iid.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.identity_view import IdentityFrameDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.methods.iid_iresnet import load_identity_network
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

#: DeepfakeBench's IID embeds Xception's bn4 output, before the final ReLU (timm's ``act4``).
XCEPTION_STOP = "act4"


def arcface_logits(embeddings: Tensor, kernel: Tensor, labels: Tensor, scale: float, margin: float) -> Tensor:
    """ArcFace (Deng et al., CVPR 2019, Eq. 3): ``s·cos θ_j`` for every class, ``s·cos(θ_y + m)`` for the
    label, with the usual fallback ``cos θ_y − m·sin m`` where ``θ_y + m > π``. ``kernel`` ``[D, C]``."""
    cos = F.normalize(embeddings.float(), dim=1) @ F.normalize(kernel.float(), dim=0)
    cos = cos.clamp(-1.0, 1.0)
    target = cos.gather(1, labels.view(-1, 1))
    sin = (1.0 - target.pow(2)).clamp_min(0.0).sqrt()
    shifted = target * math.cos(margin) - sin * math.sin(margin)
    fallback = target - math.sin(math.pi - margin) * margin
    target_m = torch.where(target > math.cos(math.pi - margin), shifted, fallback)
    return scale * cos.scatter(1, labels.view(-1, 1), target_m)


def eic_loss(implicit: Tensor, explicit: Tensor, labels: Tensor) -> Tensor:
    """Per-sample terms whose mean is ``mean_fake cos − mean_real cos`` (a group absent from the batch
    contributes 0): ``±B·cos_i / n_group``."""
    cos = F.cosine_similarity(implicit.float(), explicit.float(), dim=1)
    fake = labels > 0.5
    n_fake, n_real = fake.sum().clamp_min(1), (~fake).sum().clamp_min(1)
    weight = torch.where(fake, 1.0 / n_fake, -1.0 / n_real) * cos.shape[0]
    return weight * cos


class IID(Method):
    """Implicit identity embedding + frozen explicit identity network, ArcFace IIE and EIC (Huang et al.)."""

    name = "iid"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset()  # identities are derived from FF++ video ids by the training view

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        id_network: Mapping | None = None,
        freeze_id_network: bool = True,
        embedding_size: int = 512,
        num_identities: int = 1000,
        arcface_scale: float = 64.0,
        arcface_margin: float = 0.4,
        iie_weight: float = 0.05,
        eic_weight: float = 0.1,
        id_input_size: int = 112,
        name: str = "iid",
    ) -> None:
        super().__init__()
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: IID needs an NCHW backbone")
        xception = self.body.backbone.timm_name == "legacy_xception"
        self.stop = self.body.index(XCEPTION_STOP) if xception else len(self.body)
        channels = self.body.shape(self.stop - 1)[0]
        self.adjust = nn.Sequential(
            nn.Conv2d(channels, embedding_size, 1), nn.BatchNorm2d(embedding_size), nn.ReLU()
        )
        self.head = nn.Linear(embedding_size, 1)
        self.kernel = nn.Parameter(torch.randn(embedding_size, int(num_identities)) * 0.01)
        self.identity, self.id_info = load_identity_network(dict(id_network or {}))
        self.freeze_id_network = bool(freeze_id_network)
        if self.freeze_id_network:
            self.identity.requires_grad_(False)
        self.num_identities, self.id_input_size = int(num_identities), int(id_input_size)
        self.scale, self.margin = float(arcface_scale), float(arcface_margin)
        self.iie_weight, self.eic_weight = float(iie_weight), float(eic_weight)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def train(self, mode: bool = True) -> IID:
        super().train(mode)
        if self.freeze_id_network:
            self.identity.eval()  # a frozen network keeps its batch-norm statistics
        return self

    # -- network ------------------------------------------------------------------------------------
    def explicit(self, images: Tensor) -> Tensor:
        """``e_exp``: the identity network's embedding of the face at 112x112."""
        x = F.interpolate(images, size=(self.id_input_size,) * 2, mode="bilinear", align_corners=False)
        return self.identity(x)

    def forward_parts(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logit [B], e_imp [B, D], e_exp [B, D])``."""
        e_imp = self.adjust(self.body.run(images, 0, self.stop)).mean(dim=(2, 3))
        e_exp = self.explicit(images)
        return self.head(e_imp - e_exp).squeeze(1), e_imp, e_exp

    # -- training -----------------------------------------------------------------------------------
    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> IdentityFrameDataset:
        return IdentityFrameDataset(table, pipeline, self.num_identities, train=True)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample ``L_cls + λ_IIE L_IIE + λ_EIC L_EIC`` and the terms' logs."""
        if "identity" not in batch:
            raise KeyError("IID trains on identities: the batch has no 'identity' (IdentityFrameDataset)")
        with ctx.autocast():
            logit, e_imp, e_exp = self.forward_parts(batch["image"])
        labels = batch["label"].float()
        cls = F.binary_cross_entropy_with_logits(logit.float(), labels, reduction="none")
        logits = arcface_logits(e_imp, self.kernel, batch["identity"], self.scale, self.margin)
        iie = F.cross_entropy(logits, batch["identity"], reduction="none")
        eic = eic_loss(e_imp, e_exp, labels)
        logs = {"cls": cls.mean().detach(), "iie": iie.mean().detach(), "eic": eic.mean().detach()}
        return cls + self.iie_weight * iie + self.eic_weight * eic, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_parts(images)[0].float())

    def run_info(self) -> dict:
        return {"identity_network": dict(self.id_info), "freeze_id_network": self.freeze_id_network}
