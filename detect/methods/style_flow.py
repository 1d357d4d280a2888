"""Style-latent flows: Choi, Kim, Jeong, Baek and Choi, "Exploiting Style Latent Flows for Generalizing
Deepfake Video Detection", CVPR 2024 (arXiv:2403.06592). docs/methods/style_flow.md.

The paper's text could not be consulted here; the components are named as its abstract and Fig. 2 name them,
their sizes read from the authors' released stage-1 code (jongwook-Choi/StyleFlow) and, for stage 2, which
the authors did not release, from FTCN's released setting the StyleFlow stage 2 builds on (readings, listed
in the docs):

* **pSp encoder** (frozen; :mod:`detect.methods.style_flow_encoder`): per-frame W+ style latents ``S_t``
  (18 x 512), computed on the fly from the clip's frames.
* **Style flow + StyleGRU** (:mod:`detect.methods.style_flow_gru`): ``dS_t = S_{t+1} - S_t`` encoded by the
  StyleGRU into ``E_style`` (16384 values); **stage 1** trains it alone with ``L_tri + L_cls`` on in-batch
  triplets; in **stage 2** it is frozen (Fig. 2).
* **Content feature** ``C_content``: a temporal 3D ResNet-50 (FTCN's fully temporal convolution network,
  :class:`detect.methods.ftcn.TemporalResNet`, with the I3D's temporal max-pooling (2, 1, 1) after res2 that
  FTCN's released setting keeps), averaged over space: ``T / 2`` tokens of 1024.
* **Style attention module (SAM)**: ``E_style`` reshaped to ``T / 2`` tokens of 1024 gives keys and values,
  ``C_content`` the queries; ``C_content + W_o softmax(Q K^T / sqrt(d)) V`` with ``W_o`` zero-initialised
  (:class:`StyleAttention`).
* **Temporal Transformer Encoder (TTE)** + MLP head: FTCN's Temporal Transformer on the fused tokens, one
  logit per clip; **stage 2** trains the 3D CNN, SAM and TTE with BCE (``L_bce``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.clip_method import ClipBCEMethod
from detect.methods.ftcn import TemporalResNet, TemporalTransformer
from detect.methods.style_flow_encoder import load_style_encoder
from detect.methods.style_flow_gru import (
    StyleGRU,
    pick_triplets,
    read_style_gru_state,
    style_flow,
    triplet_loss,
)


class ContentNetwork(nn.Module):
    """``[B, 3, T, H, W] -> [B, T // 2, 1024]``: FTCN's temporal-only ResNet-50 to res4 with the I3D's
    temporal max-pooling (kernel and stride (2, 1, 1)) after res2, averaged over space."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TemporalResNet(time_pool=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).mean(dim=(3, 4)).transpose(1, 2)


class StyleAttention(nn.Module):
    """SAM: queries from the content tokens, keys and values from the style tokens (single head),
    ``content + W_o(softmax(W_q c (W_k s)^T / sqrt(d)) W_v s)``; ``W_o``'s weight starts at zero, so the
    module starts as the identity on the content plus ``W_o``'s bias."""

    def __init__(self, dim: int = 1024) -> None:
        super().__init__()
        self.w_q, self.w_k, self.w_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.w_o = nn.Linear(dim, dim)
        nn.init.zeros_(self.w_o.weight)

    def weights(self, content: Tensor, style: Tensor) -> Tensor:
        """``[B, T_c, T_s]`` attention of each content token over the style tokens (rows sum to 1)."""
        q, k = self.w_q(content), self.w_k(style)
        return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return content + self.w_o(self.weights(content, style) @ self.w_v(style))


class StyleFlow(ClipBCEMethod):
    """Frozen pSp latents -> style flows -> StyleGRU (stage 1: triplet + BCE), SAM with a temporal 3D CNN and
    a Temporal Transformer (stage 2: BCE) (Choi et al., CVPR 2024)."""

    name = "style_flow"
    gradient_sync = "explicit"  # two stages, two optimisers: ctx.step averages the gradients
    data_needs = frozenset({"clips"})
    clip_rule = "consecutive"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        style_optim: Mapping | None = None,
        clip_len: int = 32,
        eval_clips_per_video: int | None = None,
        clip_rule: str = "consecutive",
        encoder: str | None = None,
        encoder_seed: int = 0,
        encoder_net: Mapping | None = None,
        style_gru: Mapping | None = None,
        style_gru_checkpoint: str | None = None,
        stage1_steps: int = 0,
        triplet_margin: float = 1.0,
        cls_weight: float = 1.0,
        triplet_weight: float = 1.0,
        transformer: Mapping | None = None,
        name: str = "style_flow",
    ) -> None:
        super().__init__()
        flow = "a style flow is the difference of two frames"
        self.set_clip_sampling(clip_len, eval_clips_per_video, clip_rule, minimum=2, why=flow)
        self.encoder, self.encoder_info = load_style_encoder(encoder, encoder_seed, **dict(encoder_net or {}))
        feature_size = self.encoder.n_styles * self.encoder.style_dim
        self.style_gru = StyleGRU(feature_size, self.clip_len - 1, **dict(style_gru or {}))
        self.content = ContentNetwork()
        self.tokens, dim = self.clip_len // 2, TemporalResNet.out_channels
        if self.style_gru.out_dim != self.tokens * dim:
            raise ValueError(
                f"E_style has {self.style_gru.out_dim} values (2 x layers x hidden) but SAM reshapes it to "
                f"clip_len // 2 = {self.tokens} tokens of {dim}: set method.style_gru.hidden to "
                f"{self.tokens * dim // (2 * self.style_gru.gru.num_layers)}"
            )
        self.sam = StyleAttention(dim)
        self.head = TemporalTransformer(self.tokens, dim=dim, **dict(transformer or {}))
        self.style_gru_info = self._load_style_gru(style_gru_checkpoint)
        self.stage1_steps = int(stage1_steps)
        self.margin, self.cls_weight, self.triplet_weight = (
            float(triplet_margin),
            float(cls_weight),
            float(triplet_weight),
        )
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.style_optim_cfg = style_optim or optim
        self.optimizer: torch.optim.Optimizer | None = None
        self.style_optimizer: torch.optim.Optimizer | None = None
        self._stage = 1 if self.stage1_steps > 0 else 2

    def _load_style_gru(self, checkpoint: str | None) -> dict:
        """A stage-1 StyleGRU from a local file (then stage 1 may be skipped with ``stage1_steps: 0``)."""
        if checkpoint in (None, "", "none"):
            return {"checkpoint": None}
        path = Path(str(checkpoint)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"method.style_gru_checkpoint={path}: no such file (a stage-1 StyleGRU state dict of the "
                "authors' code or of this runner), or null to train stage 1 here"
            )
        self.style_gru.load_state_dict(read_style_gru_state(path), strict=True)
        return {"checkpoint": str(path)}

    # -- stages -------------------------------------------------------------------------------------
    def stage_at(self, step: int) -> int:
        """1 for the first ``stage1_steps`` optimisation steps, then 2."""
        return 1 if step < self.stage1_steps else 2

    def train(self, mode: bool = True) -> StyleFlow:
        super().train(mode)
        self.encoder.eval()  # frozen: pSp's batch-norm statistics stay
        if self._stage == 2:
            self.style_gru.eval()  # frozen in stage 2 (Fig. 2): no dropout, running BN statistics
        return self

    def _enter_stage(self, stage: int) -> None:
        if stage != self._stage:
            self._stage = stage
            self.train(self.training)
        self.style_gru.requires_grad_(stage == 1)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        """Stage 1: ``style_optim`` over the StyleGRU; stage 2: ``optim`` (+ ``scheduler``) over the 3D CNN,
        SAM and the Temporal Transformer."""
        self.style_optimizer = build_optimizer(self.style_optim_cfg, self.style_gru.parameters())
        detector = [p for n, p in self.named_parameters() if not n.startswith(("encoder.", "style_gru."))]
        self.optimizer = build_optimizer(self.optim_cfg, detector)
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [
            OptimizerSpec("style_gru", self.style_optimizer),
            OptimizerSpec("detector", self.optimizer, sched, interval),
        ]

    # -- network ------------------------------------------------------------------------------------
    def flows(self, clips: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` clips -> ``[B, T - 1, n_styles * dim]`` style flows of the frozen encoder's
        latents (float32; no gradient)."""
        b, t = clips.shape[:2]
        with torch.no_grad(), torch.autocast(clips.device.type, enabled=False):
            latents = self.encoder.encode_frames(clips.flatten(0, 1).float())
        return style_flow(latents.view(b, t, *latents.shape[1:]))

    def logits(self, clips: Tensor) -> Tensor:
        """Stage 2's clip logit: ``[B, T, C, H, W] -> [B]``."""
        if clips.shape[1] != self.clip_len:
            raise ValueError(f"clips of {clips.shape[1]} frames, but method.clip_len={self.clip_len}")
        e_style = self.style_gru.features(self.flows(clips).to(clips.dtype))
        content = self.content(clips.transpose(1, 2))
        style = e_style.view(-1, self.tokens, content.shape[-1]).to(content.dtype)
        return self.head(self.sam(content, style))

    # -- training -----------------------------------------------------------------------------------
    def stage1_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """``cls_weight * L_cls + triplet_weight * L_tri`` of the StyleGRU on in-batch triplets."""
        labels = batch["label"].float()
        flows = self.flows(batch["clip"])
        with ctx.autocast():
            logit, e_style = self.style_gru(flows)
        cls = F.binary_cross_entropy_with_logits(logit.float(), labels)
        triplets = pick_triplets(labels.cpu()).to(labels.device)
        if triplets.numel():
            e = e_style.float()
            tri = triplet_loss(e[triplets[:, 0]], e[triplets[:, 1]], e[triplets[:, 2]], self.margin).mean()
        else:
            tri = e_style.float().sum() * 0.0  # one label only in this batch: no triplet
        loss = self.cls_weight * cls + self.triplet_weight * tri
        return loss, {
            "stage": 1.0,
            "cls": cls.detach(),
            "tri": tri.detach(),
            "triplets": float(len(triplets)),
        }

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        stage = self.stage_at(ctx.global_step)
        self._enter_stage(stage)
        if stage == 1:
            loss, logs = self.stage1_losses(batch, ctx)
            ctx.backward(loss)
            ctx.step(self.style_optimizer)
            return StepOutput(loss.detach(), logs)
        per_clip = self.training_losses(batch, ctx)
        loss = per_clip.mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        return StepOutput(loss.detach(), {"stage": 2.0, "bce": loss.detach()}, per_clip.detach())

    @torch.no_grad()
    def predict(self, clips: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(clips).float())

    def run_info(self) -> dict:
        return {
            "clip_len": self.clip_len,
            "encoder": dict(self.encoder_info),
            "style_gru": dict(self.style_gru_info),
            "stage1_steps": self.stage1_steps,
        }
