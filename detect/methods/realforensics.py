"""RealForensics, stage 2 (face forgery detection): Haliassos, Mira, Petridis and Pantic, "Leveraging Real
Talking Faces via Self-Supervision for Robust Forgery Detection", CVPR 2022 (arXiv:2201.07131); the
authors' code ahaliassos/RealForensics (``stage2/models/model_combined.py``, ``stage2/models/linear.py``,
``stage2/models/mlps.py``, ``stage2/models/transformer.py``, ``stage2/conf``), read for facts.

The paper's text could not be consulted here; docs/methods/realforensics.md marks every value read from
the code. What this module builds (the paper's second stage, "face forgery detection"):

* **Visual backbone**: a CSN ResNet-101 without temporal downsampling (:mod:`realforensics_csn`) on
  ``[B, T, 3, H, W]`` clips, ``[B, 2048, T]`` features, initialised from the stage-1 audio-visual
  network (a LOCAL stage-1 checkpoint, ``backbone_checkpoint``; its stage-1 pre-training on LRW with
  audio cannot run here). ``null``: a seeded random stand-in, recorded as ``random_init`` in
  ``method_info.stage1``.
* **Detector head** (``MeanLinear`` with ``norm_linear``): mean over time, then a cosine classifier,
  ``logit = s * cos(mean_t f, w)`` with ``s = 64`` (:class:`CosineHead`).
* **Loss** ``L = L_BCE + lambda L_SSL`` (``ssl_weight`` 1): binary cross-entropy on the logit shifted by
  the logit adjustment ``log(pi / (1 - pi))`` of the batch's fake prior ``pi`` (training only), and the
  self-supervised term that keeps the backbone predicting, on REAL clips, the frame-wise targets of the
  FROZEN stage-1 target network (backbone + linear projector) computed on a clean view:
  ``L_SSL = -mean_{real clips, frames} cos(h(f_aug), g(f_clean))``, ``h`` = a trainable linear projector
  (2048 -> 256, BN) and a one-block transformer predictor (:class:`FramePredictor`).
* **Score**: ``sigmoid(logit)`` per clip (no adjustment); a video's score is the mean over its clips.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.transforms import Pipeline
from detect.data.two_view_clips import TwoViewClipDataset
from detect.engine.context import StepContext
from detect.engine.method_contract import StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.clip_method import ClipBCEMethod
from detect.methods.ftcn import TransformerBlock
from detect.methods.realforensics_csn import csn_from, read_stage1_checkpoint


class CosineHead(nn.Module):
    """``s * cos(mean_t x, w)`` of ``x`` [B, D, T] (the authors' ``MeanLinear(norm_linear=True)``, one
    output, no bias, ``w`` initialised as ``nn.Linear``'s weight)."""

    def __init__(self, dim: int, scale: float = 64.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return (F.normalize(x.mean(-1).float()) @ F.normalize(self.weight.float()).t()).squeeze(
            1
        ) * self.scale


class FrameProjector(nn.Module):
    """Linear + BatchNorm1d applied to every time step: ``[B, D, T] -> [B, T, P]`` (``LinearProjector``)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.net, self.norm_layer = nn.Linear(dim, out_dim), nn.BatchNorm1d(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        b, d, t = x.shape
        y = self.norm_layer(self.net(x.transpose(1, 2).reshape(b * t, d)))
        return y.view(b, t, -1)


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the channel of ``[B, T, D]`` tokens (the predictor's ``norm: bn``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class FramePredictor(nn.Module):
    """The stage-2 predictor (``TransformerEncoder`` with ``norm: bn``, ``use_mlp_head``): Linear(P, dim),
    ``depth`` pre-norm blocks (attention after LayerNorm, GELU MLP after a token BatchNorm; no dropout),
    then BatchNorm + Linear(dim, P) per time step. No positional embedding, no class token."""

    def __init__(
        self,
        in_dim: int,
        dim: int = 512,
        heads: int = 8,
        dim_head: int = 64,
        mlp_dim: int = 2048,
        depth: int = 1,
    ) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList()
        for _ in range(int(depth)):
            block = TransformerBlock(dim, heads, dim_head, mlp_dim, dropout=0.0)
            block.mlp_norm = TokenBatchNorm(dim)
            self.blocks.append(block)
        self.out_norm, self.out = TokenBatchNorm(dim), nn.Linear(dim, in_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.projection(tokens)
        for block in self.blocks:
            x = block(x)
        return self.out(self.out_norm(x))


def fake_prior(fake_types: int, ssl_batch_ratio: float) -> float:
    """The authors' prior of fakes in a training batch: ``F / ((F + 1)(r + 1))`` for ``F`` fake types with
    one real type, and ``r`` real talking-face clips per forgery-dataset clip."""
    return fake_types / ((fake_types + 1) * (ssl_batch_ratio + 1))


def ssl_loss(predictions: Tensor, targets: Tensor, real: Tensor) -> Tensor:
    """Per-clip terms whose batch mean is ``-mean_{real clips, frames} cos(p, z)`` (0 for fakes, ``B /
    n_real`` times the clip's mean over frames for reals; 0 everywhere without reals)."""
    cos = F.cosine_similarity(predictions.float(), targets.float(), dim=-1).mean(dim=1)
    n_real = real.sum().clamp_min(1)
    return -cos * real.float() * (real.shape[0] / n_real)


class RealForensics(ClipBCEMethod):
    """RealForensics' detector stage on a stage-1 CSN backbone (Haliassos et al., CVPR 2022)."""

    name = "realforensics"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"clips"})
    clip_rule = "consecutive"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        clip_len: int = 25,
        eval_clips_per_video: int | None = None,
        clip_rule: str = "consecutive",
        csn: Mapping | None = None,
        backbone_checkpoint: str | None = None,
        seed: int = 0,
        head_scale: float = 64.0,
        projection_size: int = 256,
        predictor: Mapping | None = None,
        ssl_weight: float = 1.0,
        logit_adjustment: Mapping | None = None,
        clean_transforms: Sequence[str] = ("Affine", "HorizontalFlip"),
        random_erasing: Mapping | None = None,
        time_mask: Mapping | None = None,
        name: str = "realforensics",
    ) -> None:
        super().__init__()
        self.set_clip_sampling(clip_len, eval_clips_per_video, clip_rule)
        self.ssl_weight = float(ssl_weight)
        csn_cfg = dict(csn or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.backbone = csn_from(csn_cfg)
            dim = self.backbone.out_channels
            self.df_head = CosineHead(dim, head_scale)
            if self.ssl_weight:
                # the target network starts as a copy of the online one (stage 1's BYOL start)
                self.target_encoder = nn.Sequential(
                    copy.deepcopy(self.backbone), FrameProjector(dim, projection_size)
                )
                # frozen: no gradients; as in the authors' stage 2 its batch norms follow the module's
                # train/eval mode (batch statistics while training)
                self.target_encoder.requires_grad_(False)
                self.ssl_head = nn.Sequential(
                    FrameProjector(dim, projection_size), FramePredictor(projection_size, **(predictor or {}))
                )
        self.stage1 = self._load_stage1(backbone_checkpoint, csn_cfg, int(seed))
        adj = dict(logit_adjustment or {})
        self.logit_shift = (
            0.0
            if not adj or adj.get("enabled") is False
            else math.log(
                (p := fake_prior(int(adj["fake_types"]), float(adj["ssl_batch_ratio"]))) / (1.0 - p)
            )
        )
        self.clean_transforms = tuple(clean_transforms)
        self.random_erasing, self.time_mask = dict(random_erasing or {}), dict(time_mask or {})
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _load_stage1(self, checkpoint: str | None, csn_cfg: Mapping, seed: int) -> dict:
        """Stage-1 weights into the backbone and (with the SSL term) the frozen target network."""
        info = {
            "csn": {k: v for k, v in csn_cfg.items()},
            "checkpoint": None,
            "random_init": True,
            "seed": seed,
        }
        if checkpoint in (None, "", "none", "null", "random"):
            return info
        parts = read_stage1_checkpoint(checkpoint)
        self._strict(self.backbone, parts["backbone"], checkpoint, "model.model1.backbone.")
        if self.ssl_weight:
            for module, key, prefix in (
                (self.target_encoder[0], "target_backbone", "model.model1.target_backbone."),
                (self.target_encoder[1], "target_projector", "model.model1.target_projector."),
            ):
                if not parts[key]:
                    raise ValueError(
                        f"{checkpoint}: no '{prefix}*' tensors, which the self-supervised term's frozen "
                        "targets need (or set method.ssl_weight=0)"
                    )
                self._strict(module, parts[key], checkpoint, prefix)
        return {**info, "checkpoint": str(checkpoint), "random_init": False, "seed": None}

    @staticmethod
    def _strict(module: nn.Module, state: Mapping[str, Tensor], path: str, prefix: str) -> None:
        ours = module.state_dict()
        missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
        shapes = [k for k in set(ours) & set(state) if tuple(ours[k].shape) != tuple(state[k].shape)]
        if missing or unexpected or shapes:
            raise ValueError(
                f"{path}: '{prefix}*' does not match method.csn (missing {missing[:4]}, unexpected "
                f"{unexpected[:4]}, shapes differ {sorted(shapes)[:4]}): check method.csn.depth/stem_width"
            )
        module.load_state_dict(state, strict=True)

    # -- network ------------------------------------------------------------------------------------
    def features(self, clips: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` clips -> backbone features ``[B, D, T]``."""
        return self.backbone(clips.transpose(1, 2))

    def logits(self, clips: Tensor) -> Tensor:
        """``[B]`` detection logits (no logit adjustment: evaluation's)."""
        return self.df_head(self.features(clips))

    # -- training -----------------------------------------------------------------------------------
    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> TwoViewClipDataset:
        return TwoViewClipDataset(
            table,
            pipeline,
            self.clip_len,
            rule=self.clip_rule,
            clean_transforms=self.clean_transforms,
            erasing=self.random_erasing,
            masking=self.time_mask,
        )

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        """The optimiser over the trainable parameters; ``scheduler.name: warmup_constant`` is the
        authors' schedule (linear warm-up from 0 over ``warmup_steps`` steps, then constant), any other
        name the engine's schedules."""
        self.optimizer = build_optimizer(self.optim_cfg, [p for p in self.parameters() if p.requires_grad])
        cfg = dict(self.scheduler_cfg or {})
        if cfg.get("name") == "warmup_constant":
            warmup = int(cfg["warmup_steps"])
            if warmup < 1:
                raise ValueError(f"method.scheduler.warmup_steps={warmup}: must be at least 1")
            sched = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, s / warmup))
            return [OptimizerSpec("model", self.optimizer, sched, "step")]
        sched, interval = build_scheduler(cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-clip ``BCE(logit + shift) + lambda * L_SSL`` and the terms' logs."""
        labels = batch["label"].float()
        with ctx.autocast():
            feats = self.features(batch["clip"])
            logits = self.df_head(feats)
        bce = F.binary_cross_entropy_with_logits(logits.float() + self.logit_shift, labels, reduction="none")
        logs = {"bce": bce.mean().detach()}
        if not self.ssl_weight:
            return bce, logs
        if "clip_clean" not in batch:
            raise KeyError("RealForensics' SSL term needs the clean view: the batch has no 'clip_clean'")
        with ctx.autocast():
            predictions = self.ssl_head(feats)
            with torch.no_grad():
                targets = self.target_encoder(batch["clip_clean"].transpose(1, 2))
        ssl = ssl_loss(predictions, targets, labels < 0.5)
        logs["ssl"] = ssl.mean().detach()
        return bce + self.ssl_weight * ssl, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_clip, logs = ctx.forward(self.training_losses, batch, ctx)
        loss = per_clip.mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        return StepOutput(loss.detach(), logs, per_clip.detach())

    def run_info(self) -> dict:
        return {
            "clip_len": self.clip_len,
            "stage1": dict(self.stage1),
            "logit_shift": self.logit_shift,
            "ssl_weight": self.ssl_weight,
        }
