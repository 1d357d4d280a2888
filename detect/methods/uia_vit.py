"""UIA-ViT: Zhuang, Chu, Tan, Liu, Yuan, Miao, Luo and Yu, "UIA-ViT: Unsupervised Inconsistency-Aware Method
based on Vision Transformer for Face Forgery Detection", ECCV 2022; DeepfakeBench ``uia_vit_detector.py``
and ``loss/patch_consistency_loss.py`` (adapted from the authors' ``wany0824/UIA-ViT``).

The paper's text could not be consulted here; the equations are written out as DeepfakeBench's code computes
them, and docs/methods/uia_vit.md marks each reading.

* **Backbone** (Sec. 3): ViT-B/16 (timm), 224 px. The middle patch embeddings ``F`` (the input of block
  ``feat_block`` = 6, under their own LayerNorm ``norm_middle``) describe each patch; the attention logits
  ``A = QKᵀ/√d`` of the last blocks (``attn_blocks`` = 7..11, every head) describe how patches relate.
* **Unsupervised patch consistency learning** (Sec. 3.1, UPCL):
  - *Forgery location estimation* (:class:`PatchGaussians`, :func:`location_map`): multivariate Gaussians
    (mean and Ledoit-Wolf shrunk precision) are fitted to the middle patch embeddings of real faces (every
    patch of up to 4 reals per batch) and of fake faces (the central 8x8 of 14x14 patches of up to 4
    fakes per batch), refitted every half epoch. A patch of a fake is predicted forged when it is nearer
    the fake Gaussian: ``M(p) = [d_real(p) − d_fake(p) > 0]``, ``d`` the Mahalanobis distance.
  - *Patch consistency target* (:func:`consistency_target`): a real face's patches are all consistent,
    ``C = c_r`` off the diagonal and 1 on it; for a fake, ``C_ij = c_f`` when both patches are forged,
    ``c_r`` when both are real and ``c_x`` otherwise (diagonal included). ``c_r``, ``c_f``, ``c_x`` are
    learnable (initial 0.6, 0.6, 0.2).
  - *Patch consistency loss* (:func:`consistency_loss`): the predicted similarity ``S = σ(mean_heads A)``
    over patch pairs, ``L_pcl = Σ|S − C| / (P² − P)`` per image, averaged over the reals plus the same over
    the fakes; with the constraints on the learnable targets the objective is
    ``L = L_ce + λ₁ L_pcl + λ₂ (1/|c_r| + 1/|c_f|) + λ₃ |c_x|`` with λ = (0.06, 0.05, 0.5), active from the
    second epoch (once both Gaussians exist); the first epoch trains ``L_ce`` alone.
* **Progressive consistency weighted assemble** (Sec. 3.2, PCWA, :func:`assemble_weights`): the CLS
  token's attention logits to the patches, ``m = σ(mean_heads A[CLS, patches])``, weight the patch tokens:
  ``w = (λ(t)·1 + (1 − λ(t))·m) / P`` with ``λ(t) = σ(−k (t − thr))`` (k = 12, thr = 0.7, ``t`` the
  training progress in [0, 1]; uniform ``1/P`` for ``t < 1/8``; ``t = 1`` at evaluation). The classifier
  reads ``[x_cls, Σ_p w_p x_p]`` (2·768) with one logit, binary cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.models.backbone import build_backbone


def attention_logits(block: nn.Module, x: Tensor) -> Tensor:
    """``QKᵀ·scale`` of a timm ViT block's attention on its input tokens ``x`` ``[B, N, D]``:
    ``[B, heads, N, N]`` (before the softmax)."""
    attn = block.attn
    b, n, d = x.shape
    qkv = (
        attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    )
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return (q * attn.scale) @ k.transpose(-2, -1)


def assemble_weights(cls_map: Tensor, progress: float, k: float = 12.0, thr: float = 0.7) -> Tensor:
    """PCWA's patch weights ``[B, P]`` from ``cls_map`` = σ(mean_heads A[CLS, patches]) ``[B, P]``."""
    p = cls_map.shape[1]
    if progress < 1 / 8:
        return cls_map.new_full(cls_map.shape, 1.0 / p)
    lam = 1.0 / (1.0 + math.exp(k * (progress - thr)))  # σ(−k (t − thr))
    return (lam + (1.0 - lam) * cls_map) / p


def mahalanobis(x: Tensor, mean: Tensor, precision: Tensor) -> Tensor:
    """``sqrt((x − μ)ᵀ Σ⁻¹ (x − μ))`` per row of ``x`` ``[N, D]``."""
    d = x - mean
    return torch.einsum("nd,de,ne->n", d, precision, d).clamp_min(0).sqrt()


def location_map(feats: Tensor, gaussians: PatchGaussians) -> Tensor:
    """Predicted forged patches ``[B, P]`` (bool): nearer the fake Gaussian than the real one."""
    b, p, c = feats.shape
    flat = feats.reshape(b * p, c).float()
    d_real = mahalanobis(flat, gaussians.real_mean, gaussians.real_precision)
    d_fake = mahalanobis(flat, gaussians.fake_mean, gaussians.fake_precision)
    return (d_real - d_fake > 0).reshape(b, p)


def consistency_target(
    forged: Tensor, c_real: Tensor, c_fake: Tensor, c_cross: Tensor, real: Tensor
) -> Tensor:
    """``C`` ``[B, P, P]``: reals (``real[b]``) ``c_r`` off the diagonal and 1 on it; fakes ``c_f`` between
    two forged patches, ``c_r`` between two real ones, ``c_x`` across."""
    f = forged.float()
    both_f = f[:, :, None] * f[:, None, :]
    both_r = (1 - f)[:, :, None] * (1 - f)[:, None, :]
    fake_t = c_fake * both_f + c_real * both_r + c_cross * (1 - both_f - both_r)
    eye = torch.eye(forged.shape[1], device=forged.device)
    real_t = (1 - c_real) * eye + c_real
    return torch.where(real[:, None, None], real_t.expand_as(fake_t), fake_t)


def consistency_loss(similarity: Tensor, target: Tensor) -> Tensor:
    """Per-image ``Σ|S − C| / (P² − P)``."""
    p = similarity.shape[-1]
    return (similarity.float() - target.float()).abs().flatten(1).sum(1) / (p * p - p)


class PatchGaussians(nn.Module):
    """The real and fake patch-embedding Gaussians (means, Ledoit-Wolf precisions) saved with the model."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        for kind in ("real", "fake"):
            self.register_buffer(f"{kind}_mean", torch.zeros(dim))
            self.register_buffer(f"{kind}_precision", torch.eye(dim))
        self.register_buffer("fitted", torch.tensor(False))

    def fit(self, real: Tensor, fake: Tensor) -> None:
        from sklearn.covariance import LedoitWolf

        for kind, x in (("real", real), ("fake", fake)):
            if x.shape[0] < 2:
                raise ValueError(f"UIA-ViT: {x.shape[0]} {kind} patch embeddings collected; need at least 2")
            est = LedoitWolf().fit(x.double().cpu().numpy())
            getattr(self, f"{kind}_mean").copy_(torch.from_numpy(est.location_))
            getattr(self, f"{kind}_precision").copy_(torch.from_numpy(np.asarray(est.precision_)))
        self.fitted.fill_(True)


class UIAViT(Method):
    """ViT-B/16, unsupervised patch consistency learning, progressive weighted assembly (Zhuang et al.)."""

    name = "uia_vit"
    gradient_sync = "ddp"  # one forward, one backward
    find_unused_parameters = True  # the first epoch trains L_ce alone: the c's are idle

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        feat_block: int | str = 6,
        attn_blocks: Sequence[int] | str = (7, 8, 9, 10, 11),
        pcl_weight: float = 0.06,
        c_weight: float = 0.05,
        cross_weight: float = 0.5,
        c_init: Sequence[float] = (0.6, 0.6, 0.2),
        k: float = 12.0,
        thr: float = 0.7,
        progressive: bool = True,
        per_batch: int = 4,
        fake_centre: float = 8 / 14,
        max_gaussian_samples: int = 100_000,
        name: str = "uia_vit",
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        vit = self.backbone.model
        if not hasattr(vit, "blocks") or not hasattr(vit, "cls_token") or vit.num_prefix_tokens != 1:
            raise NotImplementedError(
                f"{self.backbone.timm_name}: UIA-ViT needs a timm ViT with one CLS token (backbone=vit_b16; "
                "its recipe makes scale=smoke's backbone=tiny timm's test_vit)"
            )
        depth, dim = len(vit.blocks), vit.embed_dim
        # auto: the paper's placement relative to depth (ViT-B/16's 12 blocks: features at 6, attention 7..11)
        if feat_block == "auto":
            feat_block = depth // 2
        if attn_blocks == "auto":
            attn_blocks = range(depth // 2 + 1, depth)
        blocks = sorted(int(b) for b in attn_blocks)
        if not 0 < feat_block < depth or not blocks or blocks[0] < 0 or blocks[-1] >= depth:
            raise ValueError(
                f"method.feat_block={feat_block} / attn_blocks={blocks}: the ViT has {depth} blocks"
            )
        self.feat_block, self.attn_blocks = int(feat_block), blocks
        self.grid = vit.patch_embed.grid_size
        # the middle embeddings only place the Gaussians' indicator, through which no gradient flows: their
        # LayerNorm never learns (DeepfakeBench's stays at its initial 1/0), so it is frozen here
        self.norm_middle = nn.LayerNorm(dim, eps=1e-6).requires_grad_(False)
        self.c_real = nn.Parameter(torch.tensor(float(c_init[0])))
        self.c_fake = nn.Parameter(torch.tensor(float(c_init[1])))
        self.c_cross = nn.Parameter(torch.tensor(float(c_init[2])))
        self.head = nn.Linear(2 * dim, 1)
        self.gaussians = PatchGaussians(dim)
        self.pcl_weight, self.c_weight, self.cross_weight = (
            float(pcl_weight),
            float(c_weight),
            float(cross_weight),
        )
        self.k, self.thr, self.progressive = float(k), float(thr), bool(progressive)
        self.per_batch, self.fake_centre = int(per_batch), float(fake_centre)
        self.max_gaussian_samples = int(max_gaussian_samples)
        self._real_bank: list[Tensor] = []
        self._fake_bank: list[Tensor] = []
        self.steps_per_epoch, self.total_steps = 1, 1
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    # -- network ------------------------------------------------------------------------------------
    def forward_parts(self, images: Tensor, progress: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """``(logit [B], middle patch embeddings [B, P, D], mean attention logits [B, N, N])``."""
        vit = self.backbone.model
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        feats, logits = None, []
        for i, blk in enumerate(vit.blocks):
            if i == self.feat_block:
                feats = self.norm_middle(x)[:, 1:]
            if i in self.attn_blocks:
                logits.append(attention_logits(blk, x))
            x = blk(x)
        x = vit.norm(x)
        attn = torch.cat(logits, dim=1).float().mean(dim=1)  # mean over every head of every chosen block
        cls_map = torch.sigmoid(attn[:, 0, 1:])
        w = (
            assemble_weights(cls_map, progress, self.k, self.thr)
            if self.progressive
            else cls_map / cls_map.shape[1]
        )
        patches = x[:, 1:]
        pooled = torch.bmm(w.to(patches.dtype)[:, None], patches).squeeze(1)
        logit = self.head(torch.cat([x[:, 0], pooled], dim=-1)).squeeze(1)
        return logit, feats, attn

    # -- the Gaussians ------------------------------------------------------------------------------
    def _centre(self) -> slice:
        side = max(1, round(self.grid[0] * self.fake_centre))
        start = (self.grid[0] - side) // 2
        return slice(start, start + side)

    def collect(self, feats: Tensor, labels: Tensor) -> None:
        """Bank the middle embeddings of up to ``per_batch`` reals (all patches) and fakes (the centre)."""
        h, w = self.grid
        grid = feats.detach().float().reshape(feats.shape[0], h, w, -1)
        real, fake = grid[labels == 0][: self.per_batch], grid[labels == 1][: self.per_batch]
        c = self._centre()
        self._real_bank.append(real.reshape(-1, grid.shape[-1]).cpu())
        self._fake_bank.append(fake[:, c, c].reshape(-1, grid.shape[-1]).cpu())

    def refit(self) -> None:
        """Fit both Gaussians on the banked embeddings (evenly thinned to ``max_gaussian_samples``)."""

        def thin(bank: list[Tensor]) -> Tensor:
            x = torch.cat(bank) if bank else torch.zeros(0, self.gaussians.real_mean.numel())
            step = max(1, math.ceil(x.shape[0] / self.max_gaussian_samples))
            return x[::step]

        self.gaussians.fit(thin(self._real_bank), thin(self._fake_bank))
        self._real_bank, self._fake_bank = [], []

    # -- training -----------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = max(1, int(epochs) * self.steps_per_epoch)
        return self.one_optimizer(epochs, steps_per_epoch)

    def pcl_active(self, step: int) -> bool:
        """The consistency terms run from the second epoch, once both Gaussians are fitted."""
        return bool(self.gaussians.fitted) and step > self.steps_per_epoch

    def training_losses(self, batch: Mapping, ctx: StepContext) -> tuple[Tensor, dict]:
        """Per-sample ``L_ce + λ₁ L_pcl + λ₂ (1/|c_r| + 1/|c_f|) + λ₃ |c_x|`` and each term's log."""
        step = int(ctx.global_step)
        half = max(1, self.steps_per_epoch // 2)
        if step > 0 and step % half == 0 and self._real_bank:
            self.refit()
        progress = min(1.0, step / self.total_steps)
        labels = batch["label"]
        with ctx.autocast():
            logit, feats, attn = self.forward_parts(batch["image"], progress)
        self.collect(feats, labels)
        ce = F.binary_cross_entropy_with_logits(logit.float(), labels.float(), reduction="none")
        logs: dict = {"bce": ce.mean().detach()}
        if not self.pcl_active(step):
            return ce, logs
        real = labels == 0
        with torch.no_grad():
            forged = location_map(feats, self.gaussians)
        target = consistency_target(forged, self.c_real, self.c_fake, self.c_cross, real)
        pcl = consistency_loss(torch.sigmoid(attn[:, 1:, 1:]), target)
        # each group's mean, summed (the loss's form): per sample, scaled by B / group size
        n = float(len(labels))
        group = torch.where(real, real.sum(), (~real).sum()).clamp_min(1).float()
        pcl_per = pcl * n / group
        reg = 1 / self.c_real.abs() + 1 / self.c_fake.abs()
        cross = self.c_cross.abs()
        logs.update(
            pcl_real=(pcl[real].mean() if real.any() else pcl.new_zeros(())).detach(),
            pcl_fake=(pcl[~real].mean() if (~real).any() else pcl.new_zeros(())).detach(),
            c_reg=reg.detach(),
            c_cross=cross.detach(),
        )
        return ce + self.pcl_weight * pcl_per + self.c_weight * reg + self.cross_weight * cross, logs

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_sample, logs = ctx.forward(self.training_losses, batch, ctx)
        return self.update_on(per_sample, batch, ctx, logs)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_parts(images, 1.0)[0].float())

    def run_info(self) -> dict:
        return {"grid": list(self.grid), "feat_block": self.feat_block, "attn_blocks": self.attn_blocks}
