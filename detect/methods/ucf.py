"""UCF: Yan, Zhang, Fan and Wu, "UCF: Uncovering Common Features for Generalizable Deepfake Detection",
ICCV 2023 (arXiv:2304.13949); DeepfakeBench ``training/detectors/ucf_detector.py`` (the same authors' code).

The paper (Sec. 3) disentangles an image into forgery-irrelevant *content*, *method-specific* forgery and
*common* forgery features, and detects with the common ones only. Components (docs/methods/ucf.md has every
reading decision and where DeepfakeBench differs):

* **Encoders** (Sec. 3.1): a content encoder ``E_c`` and a forgery (fingerprint) encoder ``E_f``, two
  Xceptions of the same architecture, each followed by a 1x1 conv-BN-ReLU to ``feature_dim`` = 512 channels
  (DeepfakeBench's ``adjust_channel``; Xception's features taken after its last batch norm, before its final
  ReLU: ``pre_activation``). :class:`Encoder`.
* **Specific / common split** (Sec. 3.1): two 1x1-conv MLPs on the forgery map, ``f_s = S(E_f(x))`` and
  ``f_c = C(E_f(x))``, ``feature_dim / 2`` channels each (:func:`conv_mlp`). Heads (:class:`Head`): ``H_s``
  classifies ``f_s`` into real + one class per training manipulation, ``H_c`` classifies ``f_c`` as
  real/fake; prediction is ``sigmoid(H_c(f_c))`` alone.
* **Conditional decoder** (Sec. 3.1): ``D(f, c)`` rebuilds an image from content ``c`` conditioned on the
  forgery feature ``f = [f_s, f_c]`` by adaptive instance normalisation at three scales (:func:`adain`,
  :class:`ConditionalDecoder`)::

      AdaIN(x, y) = σ(y) · (x − μ(x)) / σ(x) + μ(y)         (per sample and channel, over H×W)

* **Losses** (Sec. 3.2), on a batch of ``B`` real and ``B`` fake images (:mod:`detect.data.real_fake_pairs`):

  - common binary cross-entropy ``L_ce^c = CE(H_c(f_c), y)`` (one logit, BCE: the paper's two-way softmax
    CE has the same optimum) (:meth:`UCF.losses`);
  - specific multi-class cross-entropy ``L_ce^s = CE(H_s(f_s), y_s)``, real = class 0;
  - reconstruction, self and cross (:func:`reconstruction_losses`), with ``(i, j)`` a real/fake pair::

        L_rec = ‖x_i − D(f_i, c_i)‖₁ + ‖x_j − D(f_j, c_j)‖₁ + ‖x_i − D(f_j, c_i)‖₁ + ‖x_j − D(f_i, c_j)‖₁

    (each an element mean; a cross reconstruction is compared with the image that gave its content);
  - contrastive regularisation on the pooled common and specific features
    (:func:`contrastive_regularization`)::

        L_con = Σ_{feature ∈ {c, s}} Σ_{group ∈ {real, fake}} mean_a max(‖a − p‖₂ − ‖a − n‖₂ + m, 0)

    with ``p`` a random sample of the anchor's class (binary for the common feature, the manipulation for
    the specific one) and ``n`` a random sample of the other binary class, ``m`` = 3;
  - total ``L = L_ce^c + λ_s L_ce^s + λ_r L_rec + λ_c L_con`` with ``(λ_s, λ_r, λ_c) = (0.1, 0.3, 0.05)``.

* DeepfakeBench's extras, both named options: a dropout of 0.2 on the heads' logits (``head_dropout``) and,
  with probability 0.7 per step, a shuffle of the common features within the real and within the fake half
  before the heads and the decoder (``common_shuffle``; 0 in the paper's recipe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.real_fake_pairs import RealFakePairDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

DEFAULT_WEIGHTS = {"common": 1.0, "specific": 0.1, "reconstruction": 0.3, "contrastive": 0.05}
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.LeakyReLU)


# -- modules -------------------------------------------------------------------------------------------
def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation (Huang & Belongie, ICCV 2017; UCF Sec. 3.1): ``content``'s per-channel
    statistics over H×W replaced by ``style``'s, ``σ(y)(x − μ(x))/σ(x) + μ(y)``, with ``σ = sqrt(var + eps)``
    and the unbiased variance (DeepfakeBench's). Both ``[B, C, ...]``; their spatial sizes may differ. The
    statistics are computed in float32 at least (under bf16/fp16 autocast too); the result has ``content``'s
    dtype."""
    b, c = content.shape[:2]
    wide = torch.promote_types(content.dtype, torch.float32)
    x, y = content.to(wide).reshape(b, c, -1), style.to(wide).reshape(b, c, -1)
    view = (b, c) + (1,) * (content.dim() - 2)
    mx, my = x.mean(-1).view(view), y.mean(-1).view(view)
    sx, sy = (x.var(-1) + eps).sqrt().view(view), (y.var(-1) + eps).sqrt().view(view)
    return ((content.to(wide) - mx) / sx * sy + my).to(content.dtype)


def conv_mlp(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """Three 1x1 convolutions with LeakyReLU between them (the specific / common split, Sec. 3.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 1),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, 1),
    )


class Head(nn.Module):
    """Global average pooling, Linear-LeakyReLU-Linear, dropout on the logits: ``(logits, pooled)``."""

    def __init__(self, in_features: int, hidden: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden), nn.LeakyReLU(inplace=True), nn.Linear(hidden, out_features)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        pooled = fmap.mean(dim=(2, 3))
        return self.dropout(self.mlp(pooled)), pooled


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class ConditionalDecoder(nn.Module):
    """``D(f, c)``: three rounds of AdaIN(content | condition), ×2 bilinear up-sampling, dropout and a double
    3x3 convolution (widths ``d → d/2 → d/4 → d/8``; the condition goes through the same convolutions so its
    statistics follow the content's scale), a 1x1 convolution to RGB, up-sampling to the image size, tanh."""

    def __init__(self, channels: int, dropout: float = 0.3) -> None:
        super().__init__()
        widths = [channels, channels // 2, channels // 4, channels // 8]
        if widths[-1] < 1:
            raise ValueError(f"the decoder needs feature_dim >= 8 (got {channels})")
        self.blocks = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(3))
        self.to_image = nn.Conv2d(widths[-1], 3, 1)
        self.dropout = nn.Dropout(dropout)

    def up(self, x: Tensor) -> Tensor:
        return self.dropout(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))

    def forward(self, condition: Tensor, content: Tensor, size: Sequence[int]) -> Tensor:
        x, c = content, condition
        for i, block in enumerate(self.blocks):
            x = block(self.up(adain(x, c)))
            if i < len(self.blocks) - 1:
                c = block(self.up(c))
        x = F.interpolate(self.to_image(x), size=tuple(size), mode="bilinear", align_corners=True)
        return torch.tanh(x)


class Encoder(nn.Module):
    """A backbone's feature map (optionally before its final activation) and a 1x1 conv-BN-ReLU to ``dim``."""

    def __init__(self, backbone: Mapping, dim: int, pre_activation: bool) -> None:
        super().__init__()
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: UCF needs a convolutional backbone")
        last = self.body.backbone.model.get_submodule(self.body.names[-1])
        self.stop = (
            len(self.body) - 1 if pre_activation and isinstance(last, _ACTIVATIONS) else len(self.body)
        )
        channels = self.body.shape(self.stop - 1)[0]
        self.adjust = nn.Sequential(nn.Conv2d(channels, dim, 1), nn.BatchNorm2d(dim), nn.ReLU(inplace=False))

    def forward(self, images: Tensor) -> Tensor:
        return self.adjust(self.body.run(images, 0, self.stop))


# -- losses --------------------------------------------------------------------------------------------
def triplet_terms(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Per anchor ``max(‖a − p‖₂ − ‖a − n‖₂ + m, 0)`` (``F.pairwise_distance``, eps 1e-6), ``[N]``."""
    d_pos = F.pairwise_distance(anchor, positive)
    d_neg = F.pairwise_distance(anchor, negative)
    return F.relu(d_pos - d_neg + margin)


def _permute_within(keys: Tensor, generator: torch.Generator | None) -> Tensor:
    """For each sample another one (possibly itself) with the same key: a permutation inside each group."""
    out = torch.arange(len(keys))
    for k in keys.unique():
        members = torch.nonzero(keys == k).flatten()
        out[members] = members[torch.randperm(len(members), generator=generator)]
    return out


def draw_partners(
    labels: Tensor, classes: Tensor, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Random partners for :func:`contrastive_regularization` (CPU index tensors ``[N]``): ``common`` (same
    binary label), ``specific`` (same manipulation class) and ``negative`` (the other binary label; a
    permutation of the other half when the halves are equal, else drawn with replacement)."""
    labels, classes = labels.detach().cpu().long(), classes.detach().cpu().long()
    negative = torch.empty(len(labels), dtype=torch.long)
    for value in (0, 1):
        own, other = torch.nonzero(labels == value).flatten(), torch.nonzero(labels != value).flatten()
        if len(own) == 0:
            continue
        if len(other) == 0:
            raise ValueError("UCF's contrastive regularisation needs real and fake samples in the batch")
        if len(other) == len(own):
            negative[own] = other[torch.randperm(len(other), generator=generator)]
        else:
            negative[own] = other[torch.randint(len(other), (len(own),), generator=generator)]
    return {
        "common": _permute_within(labels, generator),
        "specific": _permute_within(classes, generator),
        "negative": negative,
    }


def contrastive_regularization(
    common: Tensor, specific: Tensor, labels: Tensor, partners: Mapping[str, Tensor], margin: float
) -> Tensor:
    """UCF's contrastive regularisation (Sec. 3.2; see the module docstring): for the common and the specific
    features, the triplet term of every anchor averaged within the real and within the fake samples, the
    four means summed (DeepfakeBench's reduction)."""
    neg = partners["negative"].to(common.device)
    total = common.new_zeros(())
    for feats, key in ((common, "common"), (specific, "specific")):
        terms = triplet_terms(feats, feats[partners[key].to(feats.device)], feats[neg], margin)
        for value in (0, 1):
            group = labels == value
            if bool(group.any()):
                total = total + terms[group].mean()
    return total


def reconstruction_losses(recon: Mapping[str, Tensor], real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """``(self, cross)`` L1 terms (Sec. 3.2): ``self = ‖x_f − D(f_f, c_f)‖₁ + ‖x_r − D(f_r, c_r)‖₁``,
    ``cross = ‖x_r − D(f_f, c_r)‖₁ + ‖x_f − D(f_r, c_f)‖₁`` (element means)."""
    self_term = F.l1_loss(recon["self_fake"], fake) + F.l1_loss(recon["self_real"], real)
    cross_term = F.l1_loss(recon["cross_real"], real) + F.l1_loss(recon["cross_fake"], fake)
    return self_term, cross_term


# -- the method ----------------------------------------------------------------------------------------
class UCF(Method):
    """Content / specific / common forgery disentanglement with a conditional decoder (Yan et al.)."""

    name = "ucf"
    gradient_sync = "ddp"  # one forward of the whole loss, one backward
    data_needs = frozenset({"manipulation_labels"})

    @classmethod
    def needs_for(cls, hyper: Mapping) -> frozenset[str]:
        """Manipulation names when training on two or more manipulations (with one, the specific head is a
        second real/fake classifier, as in DPL's Table 3 single-manipulation runs)."""
        manipulations = hyper.get("manipulations")
        return cls.data_needs if manipulations is None or len(manipulations) >= 2 else frozenset()

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        manipulations: Sequence[str],
        scheduler: Mapping | None = None,
        feature_dim: int = 512,
        pre_activation: bool = True,
        head_dropout: float = 0.2,
        decoder_dropout: float = 0.3,
        weights: Mapping | None = None,
        margin: float = 3.0,
        common_shuffle: float = 0.0,
        seed: int = 0,
        name: str = "ucf",
    ) -> None:
        super().__init__()
        if not manipulations:
            raise ValueError("UCF needs method.manipulations: the training manipulations, in class order")
        self.manipulations = [str(m) for m in manipulations]
        dim, half = int(feature_dim), int(feature_dim) // 2
        self.forgery_encoder = Encoder(backbone, dim, pre_activation)
        self.content_encoder = Encoder(backbone, dim, pre_activation)
        h, w = self.forgery_encoder.body.shape(self.forgery_encoder.stop - 1)[1:]
        if h * w < 2:
            raise ValueError(
                f"UCF's AdaIN needs a feature map of at least 2 positions; {backbone.get('name')} "
                f"gives {h}x{w} at {backbone.get('input_size')} px: raise the input size"
            )
        self.split_specific = conv_mlp(dim, half, half)
        self.split_common = conv_mlp(dim, half, half)
        self.head_specific = Head(half, dim, 1 + len(self.manipulations), head_dropout)
        self.head_common = Head(half, dim, 1, head_dropout)
        self.decoder = ConditionalDecoder(dim, decoder_dropout)
        unknown = set(dict(weights or {})) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown UCF loss weights {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in dict(weights or {}).items()}}
        self.margin, self.common_shuffle = float(margin), float(common_shuffle)
        self.seed = int(seed)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    # -- data and optimiser -------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def build_train_dataset(self, table, pipeline: Pipeline) -> RealFakePairDataset:
        return RealFakePairDataset(table, pipeline, self.manipulations, train=True, seed=self.seed)

    @staticmethod
    def pair_batch(batch: Mapping) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A pair batch (``images [B, 2, 3, H, W]``, real then fake) as ``[reals; fakes]``: images
        ``[2B, ...]``, binary labels, manipulation classes and table rows ``[2B]``."""
        images = batch["images"]
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError(
                f"UCF trains on real/fake pairs [B, 2, 3, H, W]; got images {tuple(images.shape)}"
            )

        def flat(t: Tensor) -> Tensor:
            return t.transpose(0, 1).reshape(-1, *t.shape[2:])

        return (
            flat(images),
            flat(batch["labels"]).float(),
            flat(batch["classes"]).long(),
            flat(batch["indices"]),
        )

    # -- network ------------------------------------------------------------------------------------
    def common_logits(self, images: Tensor) -> Tensor:
        """``H_c(f_c)``: the detection logit, ``[B]`` (content encoder and decoder unused)."""
        return self.head_common(self.split_common(self.forgery_encoder(images)))[0].squeeze(1)

    def _shuffle_common(self, common: Tensor, labels: Tensor) -> Tensor:
        if not (self.training and self.common_shuffle > 0) or float(torch.rand(())) >= self.common_shuffle:
            return common
        index = _permute_within(labels.detach().cpu().long(), None).to(common.device)
        return common[index]

    def forward_train(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Every output of a training forward on ``[reals; fakes]``."""
        forgery, content = self.forgery_encoder(images), self.content_encoder(images)
        specific, common = self.split_specific(forgery), self.split_common(forgery)
        common = self._shuffle_common(common, labels)
        specific_logits, specific_pooled = self.head_specific(specific)
        common_logits, common_pooled = self.head_common(common)
        f_real, f_fake = torch.cat([specific, common], dim=1).chunk(2)
        c_real, c_fake = content.chunk(2)
        # the four decodings in one call: self (fake, real), then cross (content of real / of fake)
        out = self.decoder(
            torch.cat([f_fake, f_real, f_fake, f_real]),
            torch.cat([c_fake, c_real, c_real, c_fake]),
            images.shape[-2:],
        )
        self_fake, self_real, cross_real, cross_fake = out.chunk(4)
        return {
            "common_logit": common_logits.squeeze(1),
            "specific_logits": specific_logits,
            "common_pooled": common_pooled,
            "specific_pooled": specific_pooled,
            "self_fake": self_fake,
            "self_real": self_real,
            "cross_real": cross_real,
            "cross_fake": cross_fake,
        }

    def losses(
        self, out: Mapping[str, Tensor], images: Tensor, labels: Tensor, classes: Tensor, partners: Mapping
    ) -> dict[str, Tensor]:
        """Each loss term (float32) and the weighted total ``loss``; ``detection`` is the per-sample BCE."""
        detection = F.binary_cross_entropy_with_logits(out["common_logit"].float(), labels, reduction="none")
        specific = F.cross_entropy(out["specific_logits"].float(), classes)
        real, fake = images.float().chunk(2)
        recon = {k: out[k].float() for k in ("self_fake", "self_real", "cross_real", "cross_fake")}
        rec_self, rec_cross = reconstruction_losses(recon, real, fake)
        contrastive = contrastive_regularization(
            out["common_pooled"].float(), out["specific_pooled"].float(), labels, partners, self.margin
        )
        w = self.weights
        common = detection.mean()
        loss = (
            w["common"] * common
            + w["specific"] * specific
            + w["reconstruction"] * (rec_self + rec_cross)
            + w["contrastive"] * contrastive
        )
        return {
            "loss": loss,
            "detection": detection,
            "common_ce": common,
            "specific_ce": specific,
            "rec_self": rec_self,
            "rec_cross": rec_cross,
            "contrastive": contrastive,
        }

    def training_losses(self, batch: Mapping, ctx: StepContext) -> dict[str, Tensor]:
        images, labels, classes, _ = self.pair_batch(batch)
        with ctx.autocast():
            out = self.forward_train(images, labels)
        return self.losses(out, images, labels, classes, draw_partners(labels, classes))

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        out = ctx.forward(self.training_losses, batch, ctx)
        ctx.backward(out["loss"])
        ctx.step(self.optimizer)
        logs = {
            k: out[k].detach() for k in ("common_ce", "specific_ce", "rec_self", "rec_cross", "contrastive")
        }
        indices = self.pair_batch(batch)[3]
        return StepOutput(out["loss"].detach(), logs, out["detection"].detach(), indices)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.common_logits(images).float())

    def run_info(self) -> dict:
        enc = self.forgery_encoder
        return {
            "encoder_output": enc.body.names[enc.stop - 1],
            "specific_classes": ["real", *self.manipulations],
        }
