"""MesoNet: Afchar, Nozick, Yamagishi and Echizen, "MesoNet: a Compact Facial Video Forgery Detection
Network", WIFS 2018 (arXiv:1809.00888); the authors' Keras code (DariusAf/MesoNet, ``classifiers.py``);
DeepfakeBench ``meso4_detector.py``, ``meso4Inception_detector.py`` and ``networks/mesonet.py``.

Two small networks "at the mesoscopic level" (Sec. 3), written here (they are not in timm):

* **Meso-4** (Sec. 3.1, Fig. 4): four convolution blocks, each convolution (ReLU) -> batch normalisation ->
  max pooling: 8 filters 3x3, 8 filters 5x5, 16 filters 5x5, 16 filters 5x5, "same" padding, pools 2x2,
  2x2, 2x2, 4x4 (256 px in -> 16 x 8 x 8). Then a fully-connected layer of 16 units with leaky ReLU (slope
  0.1) between two dropouts (0.5) and one output unit with a sigmoid. 27,977 trainable parameters at
  256 px (the paper's count).
* **MesoInception-4** (Sec. 3.2, Fig. 5): the first two blocks are replaced by inception modules
  (Szegedy et al.) in which the 3x3 convolutions of three branches are dilated 1, 2 and 3 (the paper's
  variant "with dilated convolutions" instead of 5x5): branch widths (a, b, c, d) = (1, 4, 4, 2) then
  (2, 4, 4, 2), each branch a 1x1 convolution, three of them followed by their dilated 3x3; the four
  outputs concatenated (11, then 12 channels), batch-normalised and max-pooled 2x2. The last two blocks and
  the classifier are Meso-4's. 28,615 trainable parameters at 256 px.

The parameter counts pin the layout of the authors' Keras models: every convolution has a bias and ReLU
activation (inside the inception branches too), and each block has its own batch normalisation.
``layout: paper`` builds that (Keras' default Glorot-uniform initialisation, zero biases).

``layout: dfb`` builds DeepfakeBench's re-implementation (what its released checkpoints hold): convolutions
without bias, no ReLU inside the inception branches, and ONE batch normalisation shared by the first two
plain blocks of Meso-4 (``bn1``: conv1, conv2) and by its last two (``bn2``: conv3, conv4), and by the two
plain blocks of MesoInception-4 (``bn1``); a two-logit head read as softmax (here one logit: the converter
takes ``w1 - w0``). Its ``Dropout2d`` on the flattened feature vector is plain dropout here: what it does
on a 2-D tensor depends on the PyTorch version (elementwise in old releases, whole samples in recent ones);
the Keras original uses ordinary ``Dropout``.

Loss (:func:`meso_losses`): ``loss: mse`` (default) is the authors' released code's, the mean squared error
between the sigmoid output and the label, ``(σ(z) - y)^2`` (their models compile with
``mean_squared_error``); ``loss: bce`` is binary cross-entropy on the logit, DeepfakeBench's two-class
cross-entropy in one-logit form (its ``/dfb`` preset). ``predict`` is the sigmoid.

The network does not use the ``backbone`` group's model: only ``backbone.input_size`` (the resolution the
engine feeds, a multiple of 32) sizes the first fully-connected layer. ``backbone=none`` is the input-only
option the method configs select (256 px).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec

ARCHITECTURES = ("meso4", "meso_inception4")
LAYOUTS = ("paper", "dfb")
#: Inception branch widths (a, b, c, d) of MesoInception-4's two modules (Sec. 3.2).
INCEPTION_WIDTHS = ((1, 4, 4, 2), (2, 4, 4, 2))
#: Max-pooling sizes of the four blocks (both networks): 256 px -> 8 x 8.
POOLS = (2, 2, 2, 4)


class InceptionBranch(nn.Module):
    """A 1x1 convolution, optionally followed by a 3x3 convolution with dilation ``dilation``."""

    def __init__(self, in_ch: int, width: int, dilation: int | None, bias: bool, relu: bool) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, width, 1, bias=bias)
        self.conv = (
            nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, bias=bias) if dilation else None
        )
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        x = F.relu(x) if self.relu else x
        if self.conv is not None:
            x = self.conv(x)
            x = F.relu(x) if self.relu else x
        return x


class MesoInception(nn.Module):
    """MesoInception-4's inception module: branches (a: 1x1), (b: 1x1, 3x3), (c: 1x1, 3x3 dilated 2),
    (d: 1x1, 3x3 dilated 3), concatenated along channels (a + b + c + d channels)."""

    def __init__(self, in_ch: int, widths: Sequence[int], bias: bool, relu: bool) -> None:
        super().__init__()
        a, b, c, d = widths
        self.branches = nn.ModuleList(
            [
                InceptionBranch(in_ch, a, None, bias, relu),
                InceptionBranch(in_ch, b, 1, bias, relu),
                InceptionBranch(in_ch, c, 2, bias, relu),
                InceptionBranch(in_ch, d, 3, bias, relu),
            ]
        )
        self.out_channels = a + b + c + d

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class MesoNetwork(nn.Module):
    """Meso-4 or MesoInception-4: four blocks (layer -> [ReLU] -> BN -> max-pool) and the classifier
    dropout -> FC 16 -> leaky ReLU -> dropout -> FC 1."""

    def __init__(
        self,
        architecture: str = "meso4",
        layout: str = "paper",
        input_size: int = 256,
        dropout: float = 0.5,
        leaky_slope: float = 0.1,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"method.architecture={architecture!r}; use one of {ARCHITECTURES}")
        if layout not in LAYOUTS:
            raise ValueError(
                f"method.layout={layout!r}; use paper (the authors' Keras) or dfb (DeepfakeBench)"
            )
        reduction = 1
        for p in POOLS:
            reduction *= p
        if input_size % reduction:
            raise ValueError(
                f"MesoNet needs an input size divisible by {reduction} (its four poolings), got "
                f"backbone.input_size={input_size}: use 256 (the paper's) or another multiple of {reduction}"
            )
        paper = layout == "paper"
        self.architecture, self.layout = architecture, layout
        layers: list[nn.Module] = []
        # plain convolutions: (in, out, kernel); ReLU after each (Keras' Conv2D(activation='relu'))
        if architecture == "meso4":
            plain = [(3, 8, 3), (8, 8, 5), (8, 16, 5), (16, 16, 5)]
            channels = [8, 8, 16, 16]
        else:
            first = MesoInception(3, INCEPTION_WIDTHS[0], bias=paper, relu=paper)
            second = MesoInception(first.out_channels, INCEPTION_WIDTHS[1], bias=paper, relu=paper)
            layers += [first, second]
            plain = [(second.out_channels, 16, 5), (16, 16, 5)]
            channels = [first.out_channels, second.out_channels, 16, 16]
        layers += [nn.Conv2d(i, o, k, padding=k // 2, bias=paper) for i, o, k in plain]
        self.layers = nn.ModuleList(layers)
        self.relu_after = [isinstance(m, nn.Conv2d) for m in layers]
        if paper:  # one batch normalisation per block
            self.norm_of = [0, 1, 2, 3]
        elif architecture == "meso4":  # DeepfakeBench: bn1 after conv1 and conv2, bn2 after conv3 and conv4
            self.norm_of = [0, 0, 1, 1]
        else:  # DeepfakeBench: one BN per inception module, bn1 after both plain convolutions
            self.norm_of = [0, 1, 2, 2]
        widths = {}
        for block, n in enumerate(self.norm_of):
            widths.setdefault(n, channels[block])
        self.norms = nn.ModuleList(nn.BatchNorm2d(widths[n]) for n in sorted(widths))
        self.flat = 16 * (input_size // reduction) ** 2
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.flat, 16),
            nn.LeakyReLU(leaky_slope),
            nn.Dropout(dropout),
            nn.Linear(16, 1),
        )
        if paper:  # Keras' defaults: Glorot-uniform kernels, zero biases
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The output of each of the four blocks (after pooling)."""
        maps, x = [], images
        for block, layer in enumerate(self.layers):
            x = layer(x)
            if self.relu_after[block]:
                x = F.relu(x)
            x = F.max_pool2d(self.norms[self.norm_of[block]](x), POOLS[block])
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        """One logit per image, ``[B]``."""
        return self.classifier(self.feature_maps(images)[-1].flatten(1)).squeeze(1)


LOSSES = ("mse", "bce")


def meso_losses(logits: Tensor, labels: Tensor, loss: str) -> Tensor:
    """Per-sample loss in float32: ``(σ(z) - y)^2`` (mse, the authors' code) or BCE(z, y) (bce)."""
    z, y = logits.float(), labels.float()
    if loss == "mse":
        return (torch.sigmoid(z) - y) ** 2
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")


class MesoNet(Method):
    """Meso-4 / MesoInception-4 trained with binary cross-entropy (Afchar et al., WIFS 2018)."""

    name = "meso4"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        architecture: str = "meso4",
        layout: str = "paper",
        dropout: float = 0.5,
        leaky_slope: float = 0.1,
        loss: str = "mse",
        name: str = "meso4",
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"method.loss={loss!r}; use mse (the authors' code) or bce (DeepfakeBench)")
        self.loss_kind = loss
        # only the input resolution of the backbone group is used: MesoNet is its own network
        self.net = MesoNetwork(architecture, layout, int(backbone["input_size"]), dropout, leaky_slope)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def logits(self, images: Tensor) -> Tensor:
        return self.net(images)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> Tensor:
        """Per-sample losses of a batch (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logits = self.logits(batch["image"])
        return meso_losses(logits, batch["label"], self.loss_kind)

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        out = self.update_on(ctx.forward(self.training_losses, batch, ctx), batch, ctx)
        out.logs[self.loss_kind] = out.loss
        return out

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(images).float())

    def run_info(self) -> dict:
        return {
            "architecture": self.net.architecture,
            "layout": self.net.layout,
            "parameters": sum(p.numel() for p in self.net.parameters() if p.requires_grad),
        }
