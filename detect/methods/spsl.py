"""SPSL: Liu, Li, Zhou, Chen, He, Xue, Zhang and Yu, "Spatial-Phase Shallow Learning: Rethinking Face Forgery
Detection in Frequency Domain", CVPR 2021 (arXiv:2103.01856); DeepfakeBench ``spsl_detector.py``.

Components as the paper names them (section and equation numbers are not cited: the paper's text could not
be consulted here):

* **Phase spectrum** (the phase-only reconstruction): with the DFT ``F(x) = |F(x)| e^{iφ(x)}`` of a
  channel, keep the phase and drop the amplitude, ``P(x) = Re F^{-1}(e^{iφ(x)})``, per channel over the two
  spatial axes (:func:`phase_spectrum`; a zero coefficient, whose phase is undefined, counts as phase 0).
  The paper's argument: the up-sampling every face-forgery pipeline ends with changes the phase spectrum
  more than the amplitude spectrum, so the phase-only image carries the up-sampling artefacts.
* **Spatial-phase input**: the phase image is concatenated with the RGB image along channels and the
  backbone's input convolution is widened to take it (:meth:`StagedBackbone.widen_input`: the pretrained RGB
  filters are kept and each new channel starts from their mean over RGB). ``phase: gray`` (default) takes
  the phase of the channel mean, a 4-channel input as in DeepfakeBench (``phase_without_amplitude``, whose
  ``torch.fft.fftn`` without ``dim`` also transforms over the batch and channel axes; here the FFT is 2-D
  per image); ``phase: rgb`` takes the phase of each colour channel, a 6-channel input.
* **Shallow learning** ("shallow network"): local texture matters more than high-level semantics,
  so the receptive field is reduced by removing layers. ``shallow: auto`` gives Xception (``legacy_xception``)
  without its middle flow (blocks 4-11: entry flow straight into the exit flow, DeepfakeBench's
  ``shallow_xception`` mode, which its own SPSL row does not use) and any other chain-like backbone without
  its stride-32 stage (it ends after the last stride-16 layer: one down-sampling fewer); ``shallow: null``
  keeps the full backbone (DeepfakeBench's SPSL row); an integer S ends the backbone after its last layer
  at output stride <= S.
* **Classifier**: global average pooling and one logit with binary cross-entropy (the paper's two-class
  softmax cross-entropy has the same optimum); ``predict`` is the sigmoid.
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

#: Xception's middle flow (Chollet, CVPR 2017, Fig. 5), removed by SPSL's shallow network.
XCEPTION_MIDDLE_FLOW = [f"block{i}" for i in range(4, 12)]


def phase_spectrum(x: Tensor) -> Tensor:
    """``Re F^{-1}(exp(i·angle(F(x))))`` over the last two axes, per channel, in float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        spec = torch.fft.fft2(x.float())
        unit = torch.polar(torch.ones_like(spec.real), spec.angle())
        return torch.fft.ifft2(unit).real


class SPSL(Method):
    """Backbone on [RGB, phase spectrum] with a shallow network, one logit, BCE (Liu et al., CVPR 2021)."""

    name = "spsl"
    gradient_sync = "ddp"  # one forward, one backward

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        phase: str = "gray",
        shallow: str | int | None = "auto",
        dropout: float = 0.0,
        name: str = "spsl",
    ) -> None:
        super().__init__()
        if phase not in ("gray", "rgb"):
            raise ValueError(f"method.phase={phase!r}; use gray (4-channel input) or rgb (6-channel input)")
        self.phase = phase
        self.body = StagedBackbone(build_backbone(backbone))
        last = self.body.names[-1]
        self.removed = self._shallow(shallow)
        # the backbone's own pooling (timm's head path) only fits its own last feature map
        self.pool_with_backbone = self.body.names[-1] == last
        self.input_conv = self.body.widen_input(3 + (1 if phase == "gray" else 3))
        self.num_features = self.body.shape(len(self.body) - 1)[0]
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, 1))
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _shallow(self, shallow: str | int | None) -> list[str]:
        body = self.body
        if shallow is None or shallow in ("none", "null"):
            return []
        if shallow == "auto":
            if body.backbone.timm_name == "legacy_xception":
                body.drop(XCEPTION_MIDDLE_FLOW)
                return list(XCEPTION_MIDDLE_FLOW)
            shallow = 16
        if isinstance(shallow, str) and not shallow.isdigit():
            raise ValueError(f"method.shallow={shallow!r}; use auto, null or an output stride (e.g. 16)")
        stop = body.last_at(int(shallow)) + 1
        removed = body.names[stop:]
        body.truncate(stop)
        return removed

    def spatial_phase(self, images: Tensor) -> Tensor:
        """``[B, 3 + 1 or 3, H, W]``: the image and its phase spectrum (of the channel mean / per channel)."""
        source = images.mean(dim=1, keepdim=True) if self.phase == "gray" else images
        return torch.cat([images, phase_spectrum(source).to(images.dtype)], dim=1)

    def logits(self, images: Tensor) -> Tensor:
        fmap = self.body.nchw(self.body.run(self.spatial_phase(images)))
        pooled = self.body.backbone.pool(fmap) if self.pool_with_backbone else fmap.mean(dim=(2, 3))
        return self.head(pooled).squeeze(1)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        return self.one_optimizer(epochs, steps_per_epoch)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> Tensor:
        """Per-sample BCE of a batch (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            logits = self.logits(batch["image"])
        return F.binary_cross_entropy_with_logits(logits.float(), batch["label"].float(), reduction="none")

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        return self.update_on(ctx.forward(self.training_losses, batch, ctx), batch, ctx)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(images).float())

    def run_info(self) -> dict:
        return {"removed_layers": self.removed, "input_conv": self.input_conv, "phase": self.phase}
