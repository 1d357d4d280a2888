"""Multi-task: Nguyen, Fang, Yamagishi and Echizen, "Multi-task Learning for Detecting and Segmenting
Manipulated Facial Images and Videos", BTAS 2019 (arXiv:1906.06876); the authors' code
``nii-yamagishilab/ClassNSeg`` (``model/ae.py``, ``train.py``). DeepfakeBench does not implement it.

Components as the paper names them (its Sec. III; the paper's text could not be consulted here, so the
equations are written out rather than cited by number; docs/methods/multitask.md marks each reading):

* **Y-shaped autoencoder** (Sec. III-A, its Fig. 2): an encoder of nine 3x3 convolutions (BN + ReLU each;
  8, 8, 16, 16, 32, 32, 64, 64, 128 channels, every second one at stride 2: a 128 x S/16 x S/16 latent), a
  decoder trunk shared by both branches (transposed convolutions 128 -> 64 -> 64 (x2) -> 32 -> 32 (x2)),
  then a **segmentation branch** (32 -> 16 -> 16 (x2) -> 8 -> 8 (x2) -> 2 classes per pixel) and a
  **reconstruction branch** (the same widths -> 3 channels, tanh) (:class:`YShapedAutoencoder`).
* **Classification from the latent activation** (as in ForensicTransfer): the latent's channels split into a
  real half ``h_0`` and a fake half ``h_1``; the activations are ``a_c = mean |h_c|`` and the detector calls
  a face fake when ``a_1 > a_0``; ``predict`` returns ``softmax([a_0, a_1])_1 = σ(a_1 − a_0)`` (the
  authors' score). Only the encoder runs at test time.
* **Activation loss**: ``L_act = 1/B Σ_i |a_1,i − y_i| + |a_0,i − (1 − y_i)|`` (:func:`activation_loss`).
* **Label-selected decoding**: during training the decoder sees the latent with the other class's half
  zeroed (``h ⊙ onehot(y)`` per half), so each half alone must carry its class's image and mask.
* **Segmentation loss**: pixel-wise two-class cross-entropy against the manipulation mask binarised at 0.5
  (all zeros for a real face) (:func:`segmentation_loss`).
* **Reconstruction loss**: ``L_rec = mean (x̂ − x)²`` against the (normalised) input
  (:func:`reconstruction_loss`).
* **Objective**: ``L = γ_act L_act + γ_seg L_seg + γ_rec L_rec`` with γ_act = γ_seg = γ_rec = 1 (the
  authors' ``loss_act + γ·loss_seg + γ·loss_rect`` with ``--gamma 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.mask_view import MaskedFrameDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec

#: Encoder widths of the authors' model: each pair is a stride-1 then a stride-2 convolution, then 128.
ENCODER_WIDTHS = (8, 16, 32, 64)
LATENT = 128


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


def _up(cin: int, cout: int, stride: int, bn: bool = True) -> list[nn.Module]:
    layer = nn.ConvTranspose2d(cin, cout, 3, stride=stride, padding=1, output_padding=stride - 1)
    return [layer, nn.BatchNorm2d(cout), nn.ReLU()] if bn else [layer]


class YShapedAutoencoder(nn.Module):
    """Encoder -> latent ``[B, 128, S/16, S/16]``; shared decoder trunk -> segmentation and reconstruction."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        layers, c = [], in_channels
        for w in ENCODER_WIDTHS:
            layers += _conv(c, w, 1) + _conv(w, w, 2)
            c = w
        self.encoder = nn.Sequential(*layers, *_conv(c, LATENT, 1))
        self.shared = nn.Sequential(*_up(LATENT, 64, 1), *_up(64, 64, 2), *_up(64, 32, 1), *_up(32, 32, 2))

        def branch(out: int) -> nn.Sequential:
            return nn.Sequential(
                *_up(32, 16, 1), *_up(16, 16, 2), *_up(16, 8, 1), *_up(8, 8, 2), *_up(8, out, 1, bn=False)
            )

        self.segmenter = branch(2)  # two-class logits per pixel
        self.reconstructor = branch(in_channels)

    def decode(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """(segmentation logits ``[B, 2, S, S]``, reconstruction ``[B, 3, S, S]`` in [-1, 1])."""
        trunk = self.shared(latent)
        return self.segmenter(trunk), torch.tanh(self.reconstructor(trunk))


def activations(latent: Tensor) -> tuple[Tensor, Tensor]:
    """``(a_0, a_1)``: the mean absolute value of the real (first) and fake (second) half of the channels."""
    real, fake = latent.float().chunk(2, dim=1)
    return real.abs().flatten(1).mean(dim=1), fake.abs().flatten(1).mean(dim=1)


def activation_loss(a0: Tensor, a1: Tensor, labels: Tensor) -> Tensor:
    """Per-sample ``|a_1 − y| + |a_0 − (1 − y)|`` (ForensicTransfer's activation loss)."""
    y = labels.float()
    return (a1 - y).abs() + (a0 - (1 - y)).abs()


def select_half(latent: Tensor, labels: Tensor) -> Tensor:
    """The latent with the half of the other class zeroed: a real keeps ``h_0``, a fake ``h_1``."""
    y = labels.to(latent.dtype).view(-1, 1, 1, 1)
    real, fake = latent.chunk(2, dim=1)
    return torch.cat([real * (1 - y), fake * y], dim=1)


def segmentation_loss(logits: Tensor, masks: Tensor, softmax_twice: bool = False) -> Tensor:
    """Per-sample pixel-mean two-class cross-entropy against ``masks`` ``[B, 1, S, S]`` binarised at 0.5.
    ``softmax_twice``: the cross-entropy of the softmax *probabilities* (the authors' code feeds its
    softmax output to ``nn.CrossEntropyLoss``)."""
    target = (masks[:, 0] >= 0.5).long()
    if target.shape[-2:] != logits.shape[-2:]:
        raise ValueError(
            f"mask size {tuple(target.shape[-2:])} != segmentation size {tuple(logits.shape[-2:])}"
        )
    inputs = logits.float().softmax(dim=1) if softmax_twice else logits.float()
    return F.cross_entropy(inputs, target, reduction="none").flatten(1).mean(dim=1)


def reconstruction_loss(reconstruction: Tensor, images: Tensor) -> Tensor:
    """Per-sample ``mean (x̂ − x)²`` over channels and pixels."""
    return (reconstruction.float() - images.float()).pow(2).flatten(1).mean(dim=1)


class MultiTask(Method):
    """Y-shaped autoencoder: activation-based detection, segmentation, reconstruction (Nguyen et al.)."""

    name = "multitask"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"masks"})

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        weights: Mapping[str, float] | None = None,
        seg_softmax_twice: bool = False,
        name: str = "multitask",
    ) -> None:
        super().__init__()
        # Multi-task brings its own network: the run's backbone config only sets the input size.
        size = int(backbone.get("input_size", 256)) if isinstance(backbone, Mapping) else 256
        if size % 16:
            raise ValueError(
                f"Multi-task's encoder halves the input four times: input size {size} is not a multiple of 16"
            )
        self.net = YShapedAutoencoder()
        w = {"act": 1.0, "seg": 1.0, "rec": 1.0, **dict(weights or {})}
        unknown = sorted(set(w) - {"act", "seg", "rec"})
        if unknown:
            raise ValueError(f"method.weights has unknown terms {unknown}; use act, seg, rec")
        self.weights = {k: float(v) for k, v in w.items()}
        self.seg_softmax_twice = bool(seg_softmax_twice)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> MaskedFrameDataset:
        """Frames with their masks (zeros for reals) under one geometric draw."""
        return MaskedFrameDataset(table, pipeline, train=True)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def heads(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """The three heads: activations ``a0``, ``a1`` ``[B]``, segmentation logits and reconstruction."""
        latent = self.net.encoder(images)
        a0, a1 = activations(latent)
        seg, rec = self.net.decode(select_half(latent, labels))
        return {"a0": a0, "a1": a1, "seg": seg, "rec": rec}

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample ``γ_act L_act + γ_seg L_seg + γ_rec L_rec`` and each term's log."""
        images, labels = batch["image"], batch["label"].float()
        if "mask" not in batch:
            raise KeyError("Multi-task trains on masks: the batch has no 'mask'")
        with ctx.autocast():
            out = self.heads(images, labels)
        act = activation_loss(out["a0"], out["a1"], labels)
        seg = segmentation_loss(out["seg"], batch["mask"], self.seg_softmax_twice)
        rec = reconstruction_loss(out["rec"], images)
        w = self.weights
        logs = {"act": act.mean().detach(), "seg": seg.mean().detach(), "rec": rec.mean().detach()}
        return w["act"] * act + w["seg"] * seg + w["rec"] * rec, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        a0, a1 = activations(self.net.encoder(images))
        return torch.sigmoid(a1 - a0)

    def parameter_counts(self) -> Mapping[str, int]:
        """Parameters per part (encoder, shared decoder, segmentation and reconstruction branches)."""
        parts: Sequence[tuple[str, nn.Module]] = [
            ("encoder", self.net.encoder),
            ("shared", self.net.shared),
            ("segmenter", self.net.segmenter),
            ("reconstructor", self.net.reconstructor),
        ]
        return {k: sum(p.numel() for p in m.parameters()) for k, m in parts}
