"""ForensicTransfer: Cozzolino, Thies, Rössler, Riess, Nießner and Verdoliva, "ForensicTransfer:
Weakly-supervised Domain Adaptation for Forgery Detection", arXiv:1812.02510 (2018).

An autoencoder whose latent space is split into a part for real and a part for fake images (the paper's
Sec. 3 and its architecture figure; the paper's text could not be consulted while this was written, so
its equations are named, not numbered, and the layer sizes below are a reading to check against its
figure, see docs/methods/forensic_transfer.md):

* **Autoencoder** (:class:`ForensicAutoencoder`, not a timm architecture): an encoder of five 3×3
  convolutions (32, 64, 64, 128, 128 channels; stride 1 then 2, 2, 2, 2), each followed by BN and ReLU,
  gives the latent ``h`` (128 channels at output stride 16); the decoder mirrors it (four nearest ×2
  up-samplings, each with a 3×3 convolution, BN, ReLU: 128, 64, 64, 32 channels; a last 3×3 convolution to
  3 channels with ``tanh``).
* **Latent split and activations**: ``h = [h_0; h_1]``, the first and the second half of the channels
  (real, fake); the activation of part c of sample i is its mean absolute value,
  ``a_{i,c} = ||h_{i,c}||_1 / K_c`` with ``K_c`` its number of elements (:func:`half_activations`).
* **Activation loss**: ``L_act = 1/N Σ_i |a_{i,1} - y_i| + |a_{i,0} - (1 - y_i)|`` (:func:`activation_loss`):
  a real image should activate only h_0 (at level 1), a fake only h_1; no margin.
* **Selection block**: during training the decoder sees only the part of the latent of the image's own
  class (the other half set to zero), so each half must carry the image's information
  (``selection: false`` decodes the whole latent).
* **Reconstruction loss**: ``L_rec = 1/N Σ_i mean |x_i - x̂_i|`` (L1) and the objective
  ``L = L_act + γ L_rec`` with γ = 0.1 (``reconstruction_weight``).
* **Classification**: a sample is fake when ``a_1 > a_0`` (:meth:`ForensicTransfer.classify`);
  ``predict`` returns ``a_1 / (a_0 + a_1)`` (0.5 when both are 0), which is above 0.5 exactly then, so
  accuracy at 0.5 follows the paper's rule and AUC/EER rank by the relative fake activation.

The network is the method's own: ``backbone`` only gives the input size (its ``input_size``); which timm
model the backbone config names does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec


# -- losses and the decision rule -----------------------------------------------------------------------
def half_activations(latent: Tensor) -> tuple[Tensor, Tensor]:
    """``(a_0, a_1)``, each ``[B]``: the mean absolute value of the first and second half of the channels."""
    c = latent.shape[1]
    if c % 2:
        raise ValueError(f"ForensicTransfer's latent needs an even number of channels, got {c}")
    h = latent.float().abs()
    return h[:, : c // 2].flatten(1).mean(dim=1), h[:, c // 2 :].flatten(1).mean(dim=1)


def activation_loss(a0: Tensor, a1: Tensor, labels: Tensor) -> Tensor:
    """Per-sample ``|a_1 - y| + |a_0 - (1 - y)|`` (y = 1 for fake), ``[B]``."""
    y = labels.float()
    return (a1 - y).abs() + (a0 - (1 - y)).abs()


def select_half(latent: Tensor, labels: Tensor) -> Tensor:
    """The selection block: a real sample keeps only ``h_0``, a fake only ``h_1`` (the rest set to 0)."""
    c = latent.shape[1] // 2
    fake = labels.view(-1, 1, 1, 1).to(latent.dtype)
    keep = torch.cat([(1 - fake).expand(-1, c, 1, 1), fake.expand(-1, c, 1, 1)], dim=1)
    return latent * keep


# -- the network -------------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ForensicAutoencoder(nn.Module):
    """Encoder (3×3 convolutions, BN, ReLU) to a latent at output stride 2^(#stride-2 layers), and a
    mirrored decoder (nearest ×2 up-sampling + 3×3 convolution) back to 3 channels with ``tanh``."""

    def __init__(
        self, channels: Sequence[int] = (32, 64, 64, 128, 128), strides: Sequence[int] = (1, 2, 2, 2, 2)
    ) -> None:
        super().__init__()
        channels, strides = [int(c) for c in channels], [int(s) for s in strides]
        if len(channels) != len(strides) or any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"encoder channels {channels} and strides {strides}: same length, strides 1 or 2"
            )
        if channels[-1] % 2:
            raise ValueError(f"the latent ({channels[-1]} channels) must split into two equal halves")
        ins = [3, *channels[:-1]]
        self.encoder = nn.Sequential(
            *(_conv(i, o, s) for i, o, s in zip(ins, channels, strides, strict=True))
        )
        layers: list[nn.Module] = []
        # mirror: each encoder layer but the first is undone by (up-sampling if it was strided) + conv
        for i in range(len(channels) - 1, 0, -1):
            if strides[i] == 2:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers.append(_conv(channels[i], channels[i - 1]))
        if strides[0] == 2:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.Conv2d(channels[0], 3, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)
        self.latent_channels = channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, latent: Tensor, size: Sequence[int]) -> Tensor:
        """The reconstruction at ``size`` (resized bilinearly when the strides do not divide the input)."""
        out = self.decoder(latent)
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out


# -- the method --------------------------------------------------------------------------------------
class ForensicTransfer(Method):
    """Autoencoder with a real/fake split latent, activation loss + γ·reconstruction (Cozzolino et al.)."""

    name = "forensic_transfer"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        channels: Sequence[int] = (32, 64, 64, 128, 128),
        strides: Sequence[int] = (1, 2, 2, 2, 2),
        reconstruction_weight: float = 0.1,
        selection: bool = True,
        name: str = "forensic_transfer",
    ) -> None:
        super().__init__()
        self.input_size = int(backbone["input_size"])
        self.ignored_backbone = str(backbone.get("name", "?"))
        self.autoencoder = ForensicAutoencoder(channels, strides)
        self.reconstruction_weight, self.selection = float(reconstruction_weight), bool(selection)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def activations(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return half_activations(self.autoencoder(images))

    @staticmethod
    def classify(a0: Tensor, a1: Tensor) -> Tensor:
        """The paper's rule: 1 (fake) where the fake half is the more active, else 0."""
        return (a1 > a0).long()

    @staticmethod
    def fake_score(a0: Tensor, a1: Tensor) -> Tensor:
        """``a_1 / (a_0 + a_1)`` in [0, 1] (0.5 where both are 0); > 0.5 exactly where ``classify`` is 1."""
        total = a0 + a1
        return torch.where(total > 0, a1 / total.clamp_min(1e-12), torch.full_like(total, 0.5))

    # -- training -----------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample ``L_act + γ L_rec`` (their batch mean is the objective) and the logged terms."""
        images, labels = batch["image"], batch["label"]
        with ctx.autocast():
            latent = self.autoencoder(images)
            decoded = latent if not self.selection else select_half(latent, labels)
            reconstruction = self.autoencoder.decode(decoded, images.shape[-2:])
        a0, a1 = half_activations(latent)
        act = activation_loss(a0, a1, labels)
        rec = (reconstruction.float() - images.float()).abs().flatten(1).mean(dim=1)
        per_sample = act + self.reconstruction_weight * rec
        logs = {
            "activation": act.mean().detach(),
            "reconstruction": rec.mean().detach(),
            "a_real_half": a0.mean().detach(),
            "a_fake_half": a1.mean().detach(),
        }
        return per_sample, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return self.fake_score(*self.activations(images))

    def run_info(self) -> dict:
        return {
            "network": "ForensicTransfer autoencoder (own; the backbone config only sets the input size)",
            "backbone_config_unused": self.ignored_backbone,
            "latent_channels": self.autoencoder.latent_channels,
        }
