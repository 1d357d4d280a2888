"""Capsule-Forensics: Nguyen, Yamagishi and Echizen, "Capsule-Forensics: Using Capsule Networks to Detect
Forged Images and Videos", ICASSP 2019 (arXiv:1810.11215), and its v2, "Use of a Capsule Network to Detect
Fake Images and Videos" (arXiv:1910.12467); the authors' code (nii-yamagishilab/Capsule-Forensics and
Capsule-Forensics-v2); DeepfakeBench ``capsule_net_detector.py`` and ``loss/capsule_loss.py``.

The pipeline (Sec. 3 of the ICASSP paper; the paper's text is not in this repository, so section and
equation numbers are not cited; where the authors' released code fixes a detail, it is named):

* **Feature extractor**: VGG-19 (ImageNet weights) up to its third max-pooling layer (256 channels at
  output stride 8): the *first* layer of the backbone at output stride 8 (:class:`StagedBackbone`; VGG-19
  ``features.18``, VGG-19-BN ``features.26``). The authors keep it frozen (``train_extractor: false``: it is
  not in their optimiser and its output is detached); DeepfakeBench trains it (``true``).
* **Primary capsules** (:class:`PrimaryCapsule`): each is conv3x3 (C -> 64) - BN - ReLU - conv3x3 (64 ->
  16) - BN - ReLU, *statistical pooling* (the mean and the standard deviation of each of the 16 maps over
  its positions: a 2 x 16 "signal"), Conv1d (2 -> 8, kernel 5, stride 2) - BN - Conv1d (8 -> 1, kernel 3) -
  BN: an 8-dimensional vector u_i. ``num_primary`` = 3 (ICASSP 2019) or 10 (v2, DeepfakeBench). The vectors
  are squashed, :func:`squash`, ``v = |s|^2 / (1 + |s|^2) · s / |s|``. ``primary_squash: capsule`` squashes
  each capsule's 8-vector (the capsule non-linearity as the paper defines it); ``across`` squashes, for each
  of the 8 dimensions, the vector of the capsules' values (what the authors' code and DeepfakeBench do: they
  stack the capsules on the last axis and squash along it).
* **Dynamic routing** (:class:`DynamicRouting`, the routing-by-agreement of Sabour et al., NeurIPS 2017, as
  the authors implement it): predictions ``û_{j|i} = W_ij u_i`` (W: 2 output capsules x N inputs x 4 x 8,
  drawn from N(0, 1)); logits ``b = 0``; for each of ``iterations`` (2) rounds, ``c = softmax_i(b)`` (over
  the *input* capsules), ``v_j = squash(Σ_i c_ij ⊙ û_{j|i})``, and, but after the last round,
  ``b <- b + û_{j|i} ⊙ v_j``. The logits and the agreement are per dimension of the output capsule (an
  element-wise product), as in the authors' code, not Sabour et al.'s scalar dot product. Training
  regularisers: Gaussian noise (σ = ``weight_noise``, 0.01) added to W at every training forward
  (ICASSP 2019) and dropout of the predictions û with rate ``prior_dropout`` (v2: 0.05; kept values are not
  rescaled). DeepfakeBench uses neither.
* **Output** (:func:`capsule_scores`): the two output capsules v_real, v_fake (4-dimensional); for each
  dimension d, ``softmax(v_real[d], v_fake[d])``; the class scores are their mean over d, ``predict`` the
  fake one. The loss (:func:`capsule_loss`, the authors' ``CapsuleLoss``) is the sum over d of the
  cross-entropy of the per-dimension class scores, which ``nn.CrossEntropyLoss`` applies to those
  probabilities as if they were logits (a second softmax) — kept, as the released models are trained so.
  The class scores are not the capsules' lengths (Sabour et al.'s classifier): the authors compare the
  activations of the two capsules dimension by dimension.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

SQUASH_MODES = ("capsule", "across")


def squash(s: Tensor, dim: int, eps: float = 0.0) -> Tensor:
    """The capsule non-linearity ``|s|^2 / (1 + |s|^2) · s / |s|`` along ``dim`` (``eps`` guards |s| = 0)."""
    sq = (s * s).sum(dim=dim, keepdim=True)
    return sq / (1.0 + sq) * s / torch.sqrt(sq + eps)


class StatsPooling(nn.Module):
    """``[B, C, H, W]`` -> ``[B, 2, C]``: the mean and the (unbiased) standard deviation of each map."""

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)
        return torch.stack([flat.mean(dim=2), flat.std(dim=2)], dim=1)


class PrimaryCapsule(nn.Module):
    """One primary capsule: two conv-BN-ReLU, statistical pooling, two Conv1d-BN -> an 8-vector."""

    def __init__(self, in_channels: int, dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.pool = StatsPooling()
        self.stats = nn.Sequential(
            nn.Conv1d(2, 8, 5, stride=2, padding=2),
            nn.BatchNorm1d(8),
            nn.Conv1d(8, 1, 3, padding=1),
            nn.BatchNorm1d(1),
        )
        self.dim = dim
        for m in self.modules():  # the authors' initialisation
            if isinstance(m, nn.Conv2d | nn.Conv1d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stats(self.pool(self.conv(x)))  # [B, 1, 8]: 16 statistics -> 8 after the stride 2
        if out.shape[-1] != self.dim:
            raise ValueError(f"primary capsule gives {out.shape[-1]} values, expected {self.dim}")
        return out.flatten(1)


class DynamicRouting(nn.Module):
    """Routing of N input capsules (``in_dim``) to M output capsules (``out_dim``), per dimension."""

    def __init__(self, num_in: int, num_out: int = 2, in_dim: int = 8, out_dim: int = 4, iterations: int = 2):
        super().__init__()
        if iterations < 1:
            raise ValueError(f"method.iterations={iterations}: routing needs at least one iteration")
        self.iterations = iterations
        self.weight = nn.Parameter(torch.randn(num_out, num_in, out_dim, in_dim))

    def predictions(self, u: Tensor, weight_noise: float = 0.0, prior_dropout: float = 0.0) -> Tensor:
        """``û[b, j, i] = W_ij u_i``: ``[B, M, N, out_dim]`` from ``u`` ``[B, N, in_dim]``."""
        w = self.weight
        if weight_noise > 0:
            w = w + weight_noise * torch.randn_like(w)
        priors = torch.einsum("jiod,bid->bjio", w, u)
        if prior_dropout > 0:
            priors = priors * torch.bernoulli(torch.full_like(priors, 1.0 - prior_dropout))
        return priors

    def route(self, priors: Tensor) -> Tensor:
        """Routing by agreement on ``priors`` ``[B, M, N, D]``: the output capsules ``[B, M, D]``."""
        logits = torch.zeros_like(priors)
        for r in range(self.iterations):
            coupling = torch.softmax(logits, dim=2)  # over the input capsules
            outputs = squash((coupling * priors).sum(dim=2, keepdim=True), dim=3)
            if r < self.iterations - 1:
                logits = logits + priors * outputs
        return outputs.squeeze(2)

    def forward(self, u: Tensor, weight_noise: float = 0.0, prior_dropout: float = 0.0) -> Tensor:
        return self.route(self.predictions(u, weight_noise, prior_dropout))


def capsule_scores(outputs: Tensor) -> tuple[Tensor, Tensor]:
    """Output capsules ``[B, M, D]`` -> (per-dimension class probabilities ``[B, D, M]``, their mean over
    the dimensions ``[B, M]``)."""
    per_dim = torch.softmax(outputs.transpose(1, 2), dim=-1)
    return per_dim, per_dim.mean(dim=1)


def capsule_loss(per_dim: Tensor, labels: Tensor) -> Tensor:
    """Per-sample ``Σ_d CE(per_dim[:, d, :], y)``, the cross-entropy taking the probabilities as logits."""
    target = labels.long()
    return sum(F.cross_entropy(per_dim[:, d], target, reduction="none") for d in range(per_dim.shape[1]))


class Capsule(Method):
    """VGG-19 features -> primary capsules -> dynamic routing -> two output capsules (Nguyen et al.)."""

    name = "capsule"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        tap_stride: int = 8,
        train_extractor: bool = False,
        num_primary: int = 3,
        primary_dim: int = 8,
        output_dim: int = 4,
        iterations: int = 2,
        primary_squash: str = "capsule",
        weight_noise: float = 0.01,
        prior_dropout: float = 0.0,
        name: str = "capsule",
    ) -> None:
        super().__init__()
        if primary_squash not in SQUASH_MODES:
            raise ValueError(f"method.primary_squash={primary_squash!r}; use one of {SQUASH_MODES}")
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: Capsule needs an NCHW backbone")
        at = [i for i in range(len(self.body)) if self.body.reduction(i) == tap_stride]
        if not at:
            raise ValueError(f"{self.body.backbone.timm_name} has no layer at output stride {tap_stride}")
        self.tap = self.body.names[at[0]]  # the first layer at that stride (VGG: its third max-pooling)
        self.body.truncate(at[0] + 1)
        self.train_extractor = bool(train_extractor)
        if not self.train_extractor:
            for p in self.body.parameters():
                p.requires_grad_(False)
        channels = self.body.shape(at[0])[0]
        self.primary = nn.ModuleList(PrimaryCapsule(channels, primary_dim) for _ in range(num_primary))
        self.routing = DynamicRouting(num_primary, 2, primary_dim, output_dim, iterations)
        self.primary_squash = primary_squash
        self.weight_noise, self.prior_dropout = float(weight_noise), float(prior_dropout)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def train(self, mode: bool = True) -> Capsule:
        super().train(mode)
        if not self.train_extractor:
            self.body.eval()  # a frozen extractor keeps its batch-norm statistics (VGG-19 has none)
        return self

    def primary_capsules(self, images: Tensor) -> Tensor:
        """The squashed primary capsules ``[B, N, 8]``."""
        if self.train_extractor:
            fmap = self.body.run(images)
        else:
            with torch.no_grad():
                fmap = self.body.run(images)
        u = torch.stack([cap(fmap) for cap in self.primary], dim=1)  # [B, N, 8]
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = u.float()
            return squash(u, dim=2) if self.primary_squash == "capsule" else squash(u, dim=1)

    def output_capsules(self, images: Tensor) -> Tensor:
        """The two output capsules ``[B, 2, 4]`` (real, fake), in float32."""
        u = self.primary_capsules(images)
        noise, drop = (self.weight_noise, self.prior_dropout) if self.training else (0.0, 0.0)
        with torch.autocast(device_type=u.device.type, enabled=False):
            return self.routing(u, noise, drop)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> Tensor:
        """Per-sample capsule losses of a batch (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            outputs = self.output_capsules(batch["image"])
        per_dim, _ = capsule_scores(outputs.float())
        return capsule_loss(per_dim, batch["label"])

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        out = self.update_on(ctx.forward(self.training_losses, batch, ctx), batch, ctx)
        out.logs["capsule_ce"] = out.loss
        return out

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return capsule_scores(self.output_capsules(images))[1][:, 1]

    def run_info(self) -> dict:
        return {"tap": self.tap, "train_extractor": self.train_extractor, "num_primary": len(self.primary)}
