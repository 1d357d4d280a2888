"""Face X-ray: Li, Bao, Zhang, Yang, Chen, Wen and Guo, "Face X-ray for More General Face Forgery Detection",
CVPR 2020 (arXiv:1912.13458); DeepfakeBench ``facexray_detector.py`` for ``method=face_xray/dfb``.

* **Blended images** (Sec. 3.2-3.3, Eq. 1): ``I_M = M ⊙ I_F + (1 − M) ⊙ I_B``: a real background face
  ``I_B``, a foreground ``I_F`` from another video whose landmarks are nearest to the background's, colour
  corrected, and a soft mask M from the background's landmark hull. The synthesis is the project's CBI
  (``detect.data.blend.cbi``, shared with ProDet; soft mask and colour transfer as docs/blendfakes.md), with
  blend ratio 1 by default (``blend.ratios: [1.0]``) so the mask blended with is M itself. It runs in the
  data workers (``detect.data.synth_pairs``), seeded per (seed, epoch, pair).
* **Face X-ray** (Eq. 2): ``B = 4 · M ⊙ (1 − M)`` (:func:`boundary_map`), zero for a real image: the blending
  boundary. Training data: every real frame and its blended image (reals + blends, the paper's default).
* **Network** (Sec. 4, "Implementation detail"): HRNet (``backbone=hrnet_w48``); the four resolutions
  upsampled to the largest (stride 4: 64 × 64 at 256 px) and concatenated
  (:class:`MultiResolutionFeatures`; other backbones: the last layer at each output stride 4, 8, 16, 32),
  a 1 × 1 convolution to one channel, bilinear upsampling to the input size and a sigmoid: the predicted
  X-ray B̂. The classifier NN_c takes B̂: global average pooling, a fully connected layer, a two-way softmax
  (one logit with a sigmoid here: the same model) (``head: paper``).
* **Loss** (Eq. 3-5): ``L = λ·L_b + L_c``: ``L_b`` the pixel-wise binary cross-entropy between B and B̂
  (averaged over pixels; the paper's sum over pixels would multiply λ by 65 536 at 256 px), ``L_c`` the
  cross-entropy of real/fake, λ = 100.
* **Schedule** (Sec. 4): Adam, lr 2e-4, batch 32, 200 000 iterations; the backbone frozen at its ImageNet
  weights for the first 50 000 (``warmup_steps``), the learning rate decayed linearly to 0 over the last
  50 000 (``decay_steps``, of ``total_steps``).

``head: dfb`` is DeepfakeBench's: the concatenated features through ``post_process`` (3 × 3 conv 256, BN,
ReLU, 3 × 3 conv 128, BN, ReLU, 1 × 1 conv 1, bilinear upsampling to the input size, corners aligned: the
raw map, no sigmoid), the map average-pooled to half the input size and flattened into ``fc`` (Linear 1024,
BN, ReLU, Linear 128, BN, ReLU, Linear to the logit), with ``map_loss: mse`` (mean squared error of the raw
map against B) and ``map_weight: 1000``. See docs/methods/face_xray.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import lr_scheduler

from detect.data.blend import BlendConfig
from detect.data.synth_pairs import CrossBlendSynthesiser, SynthPairDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.models.backbone import Backbone, build_backbone
from detect.models.staged_backbone import StagedBackbone

HEADS = ("paper", "dfb")
MAP_LOSSES = ("bce", "mse")
TAP_STRIDES = (4, 8, 16, 32)


def boundary_map(mask: Tensor) -> Tensor:
    """Face X-ray's Eq. 2: ``B = 4 · M · (1 − M)`` of a blend mask M in [0, 1] (0 where M is 0 or 1)."""
    return 4.0 * mask * (1.0 - mask)


def map_losses(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-sample map loss averaged over pixels (float32): ``bce`` of logits ``pred`` against B (Eq. 3) or
    ``mse`` of the raw map against B (DeepfakeBench)."""
    pred, target = pred.float().flatten(1), target.float().flatten(1)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none").mean(1)
    if kind == "mse":
        return ((pred - target) ** 2).mean(1)
    raise ValueError(f"map loss {kind!r}; use one of {MAP_LOSSES}")


class MultiResolutionFeatures(nn.Module):
    """The backbone's feature maps at several resolutions, upsampled (bilinear) to the largest and
    concatenated. HRNet (timm ``hrnet_*``): its four branch outputs after stage 4 (the classification
    head's modules are removed: they are not used); other backbones: the last layer at each of the output
    strides 4, 8, 16, 32 that the backbone has (:class:`StagedBackbone`)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        model = backbone.model
        self.hrnet = hasattr(model, "stages") and hasattr(model, "transition1")
        if self.hrnet:
            model.incre_modules = None  # timm's forward_features then returns the branch outputs
            model.downsamp_modules = None
            model.final_layer = None
            self.backbone = backbone
        else:
            self.body = StagedBackbone(backbone)
            red = [self.body.reduction(i) for i in range(len(self.body))]
            self.taps = sorted({self.body.last_at(s) for s in TAP_STRIDES if s in red})
            if not self.taps:
                raise ValueError(f"{backbone.timm_name}: no layer at output stride 4, 8, 16 or 32")
        size = backbone.input_size
        with torch.no_grad():
            modes = {m: m.training for m in self.modules()}
            self.eval()
            maps = self.maps(torch.zeros(1, 3, size, size))
            for m, mode in modes.items():
                m.training = mode
        self.channels = [int(f.shape[1]) for f in maps]
        self.out_channels = sum(self.channels)

    def maps(self, x: Tensor) -> list[Tensor]:
        if self.hrnet:
            return list(self.backbone.model.forward_features(x))
        out, start = [], 0
        for i in self.taps:
            x = self.body.run(x, start, i + 1)
            start = i + 1
            out.append(self.body.nchw(x))
        return out

    def forward(self, x: Tensor) -> Tensor:
        maps = self.maps(x)
        size = maps[0].shape[-2:]
        up = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        return torch.cat(up, 1)


def tail_decay_schedule(optimizer: torch.optim.Optimizer, total: int, decay: int) -> lr_scheduler.LambdaLR:
    """Per step: the base rate until ``total − decay`` steps, then linear to 0 at ``total`` (Face X-ray)."""
    start = max(0, int(total) - int(decay))

    def factor(step: int) -> float:
        if step < start or decay <= 0:
            return 1.0
        return max(0.0, (int(total) - step) / int(decay))

    return lr_scheduler.LambdaLR(optimizer, factor)


class FaceXray(Method):
    """Multi-resolution backbone → face X-ray map B̂ → real/fake logit; trained on reals + blended images."""

    name = "face_xray"
    gradient_sync = "explicit"  # the frozen-backbone warm-up leaves the backbone without gradients
    data_needs = frozenset({"landmarks"})

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        head: str = "paper",
        map_loss: str = "bce",
        map_weight: float = 100.0,
        warmup_steps: int = 0,
        blend: Mapping | None = None,
        landmark_points: int = 68,
        cache_dir: str = "cache",
        seed: int = 0,
        name: str = "face_xray",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"method.head={head!r}; use one of {HEADS}")
        if map_loss not in MAP_LOSSES:
            raise ValueError(f"method.map_loss={map_loss!r}; use one of {MAP_LOSSES}")
        bb = build_backbone(backbone)
        self.input_size = bb.input_size
        self.features = MultiResolutionFeatures(bb)
        c = self.features.out_channels
        self.head_kind, self.map_loss, self.map_weight = head, map_loss, float(map_weight)
        size = (self.input_size, self.input_size)
        if head == "paper":
            self.to_xray = nn.Conv2d(c, 1, kernel_size=1)
            self.classify = nn.Linear(1, 1)
        else:
            self.post_process = nn.Sequential(
                nn.Conv2d(c, 256, 3, padding=1),
                nn.BatchNorm2d(256),
                nn.ReLU(),
                nn.Conv2d(256, 128, 3, padding=1),
                nn.BatchNorm2d(128),
                nn.ReLU(),
                nn.Conv2d(128, 1, 1),
                nn.Upsample(size=size, mode="bilinear", align_corners=True),
            )
            self.pooled = self.input_size // 2
            self.fc = nn.Sequential(
                nn.Linear(self.pooled * self.pooled, 1024),
                nn.BatchNorm1d(1024),
                nn.ReLU(),
                nn.Linear(1024, 128),
                nn.BatchNorm1d(128),
                nn.ReLU(),
                nn.Linear(128, 1),
            )
        self.warmup_steps = int(warmup_steps)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.blend_cfg = BlendConfig.from_mapping(blend)
        self.landmark_points, self.cache_dir, self.seed = int(landmark_points), cache_dir, int(seed)
        self.optimizer: torch.optim.Optimizer | None = None

    # -- model ------------------------------------------------------------------------------------
    def forward_parts(self, images: Tensor, frozen_backbone: bool = False) -> tuple[Tensor, Tensor]:
        """(map ``[N, H, W]``: X-ray logits (paper) or the raw map (dfb), logit ``[N]``)."""
        if frozen_backbone:
            with torch.no_grad():
                fused = self.features(images)
        else:
            fused = self.features(images)
        if self.head_kind == "paper":
            xray = F.interpolate(
                self.to_xray(fused), size=images.shape[-2:], mode="bilinear", align_corners=False
            )
            logit = self.classify(torch.sigmoid(xray).mean(dim=(2, 3))).squeeze(1)
            return xray.squeeze(1), logit
        raw = self.post_process(fused)
        pooled = F.adaptive_avg_pool2d(raw, self.pooled).flatten(1)
        return raw.squeeze(1), self.fc(pooled).squeeze(1)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_parts(images)[1].float())

    @torch.no_grad()
    def xray(self, images: Tensor) -> Tensor:
        """The predicted face X-ray B̂ ``[N, H, W]`` (the raw map for ``head: dfb``)."""
        pred = self.forward_parts(images)[0].float()
        return torch.sigmoid(pred) if self.map_loss == "bce" else pred

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        cfg = dict(self.scheduler_cfg or {})
        if cfg.get("name") == "tail_decay":
            total = int(cfg.get("total_steps") or epochs * steps_per_epoch)
            sched = tail_decay_schedule(self.optimizer, total, int(cfg.get("decay_steps", 0)))
            return [OptimizerSpec("model", self.optimizer, sched, "step")]
        sched, interval = build_scheduler(cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> SynthPairDataset:
        synth = CrossBlendSynthesiser(table, self.blend_cfg, self.cache_dir, self.landmark_points)
        return SynthPairDataset(table, pipeline, synth, train=True, seed=self.seed)

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext) -> None:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def losses(self, batch: Mapping, frozen_backbone: bool = False) -> dict[str, Tensor]:
        """Per-sample ``map`` and ``cls`` losses, and the total, of a pair batch (reals first)."""
        images = batch["images"]
        b, a = images.shape[:2]
        x = images.transpose(0, 1).reshape(a * b, *images.shape[2:])
        masks = batch["masks"].transpose(0, 1).reshape(a * b, *batch["masks"].shape[2:])
        labels = batch["labels"].transpose(0, 1).reshape(-1).float()
        pred_map, logit = self.forward_parts(x, frozen_backbone)
        target = boundary_map(masks.float())
        loss_map = map_losses(pred_map, target, self.map_loss)
        loss_cls = F.binary_cross_entropy_with_logits(logit.float(), labels, reduction="none")
        return {"map": loss_map, "cls": loss_cls, "total": self.map_weight * loss_map + loss_cls}

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        frozen = ctx.global_step < self.warmup_steps
        with ctx.autocast():
            out = ctx.forward(self.losses, batch, frozen)
        loss = out["total"].mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        logs = {"loss_map": out["map"].mean().detach(), "loss_cls": out["cls"].mean().detach()}
        logs["backbone_frozen"] = float(frozen)
        indices = batch["indices"].transpose(0, 1).reshape(-1)
        return StepOutput(loss.detach(), logs, out["total"].detach(), indices)

    def run_info(self) -> dict:
        return {"head": self.head_kind, "map_loss": self.map_loss, "map_weight": self.map_weight}
