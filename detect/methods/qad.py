"""QAD: Le and Woo, "Quality-Agnostic Deepfake Detection with Intra-model Collaborative Learning", ICCV 2023
(arXiv:2309.05911); the authors' repository ``Leminhbinh0209/QAD`` (its README and training configs
``configs/hkrawp_resnet.yaml`` / ``hkrawp_effnet.yaml``, read through a public copy). Not in DeepfakeBench.

One detector trained on pairs of the SAME frame at a high and a low quality (FF++ c23 with c40 of the same
source; :class:`~detect.data.quality_pairs.QualityPairDataset`), so that a single model detects every
quality. Components, named as the paper names them (the paper's full text could not be consulted here: the
abstract names the components, the authors' configs give the settings; section and equation numbers are
not cited; every reading is listed in docs/methods/qad.md):

* **Intra-model collaborative learning** by the Hilbert-Schmidt Independence Criterion: the dependency
  between the intermediate representations of the high- and the low-quality image is *maximised* at several
  layers (the paper motivates it by an upper bound of the general error expectation). With ``m`` the batch
  size, ``K`` and ``L`` the Gram matrices of the two qualities' flattened features at one layer and
  ``H = I - 11ᵀ/m`` the centring matrix, the (biased) empirical estimator of Gretton et al. (ALT 2005)::

      HSIC(X, Y) = (m - 1)^-2 tr(K H L H),   K_ij = exp(-‖x_i - x_j‖² / (2 σ² d))

  (:func:`hsic`, :func:`gaussian_gram`; ``d`` the feature dimension: the bandwidth grows with the layer's
  size, so one σ serves every layer). The collaborative loss is ``L_HSIC = -Σ_k w_k HSIC(F_k^h, F_k^l)``
  over the tapped layers ``k`` (:func:`collaborative_loss`); the authors' configs weight the first three of
  six taps (0.1, 0.25, 0.5; σ = 6), read here as the backbone's stage outputs at output strides 4, 8, 16.
* **Classification**: binary cross-entropy on both qualities (one logit; the authors' two-class softmax CE
  has the same optimum): ``L = CE(x^h) + CE(x^l) + α L_HSIC`` (α = ``hsic.alpha``).
* **Adversarial Weight Perturbation** (AWP; Wu, Xia and Wang, NeurIPS 2020), "to make the model more robust
  against image corruption": ``min_w max_{‖v_l‖ ≤ γ‖w_l‖} L(w + v)``, one ascent step per update: the
  gradient ``g`` of ``L`` at ``w`` gives, per weight tensor ``l`` (convolution and linear weights; biases and
  normalisation parameters are not perturbed, as in the AWP authors' code), ``v_l = γ ‖w_l‖ g_l / ‖g_l‖``
  (:func:`awp_perturbation`); the update's gradient is taken at ``w + v`` and applied to ``w``, the weights
  being restored exactly before the optimiser steps (:class:`PerturbedWeights`). AWP starts after
  ``awp.warmup_epochs`` epochs (the authors' ``awp_warmup: 3``). Two forwards and two backwards per step:
  the method takes the explicit gradient path (``gradient_sync = "explicit"``); under several processes the
  first gradient is averaged before ``v`` is formed, so every process perturbs by the same global ``v`` and
  ``ctx.step`` averages the second gradient. The ascent pass leaves the BatchNorm running statistics as they
  were (the AWP authors compute it on a proxy copy of the model).
* **Evaluation** takes single images: ``predict`` is the sigmoid of the logit (no pair, no quality label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import lr_scheduler

from detect.data.quality_pairs import QualityPairDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone


# -- HSIC and the collaborative loss -----------------------------------------------------------------------
def gaussian_gram(x: Tensor, sigma: float) -> Tensor:
    """``K_ij = exp(-‖x_i - x_j‖² / (2 σ² d))`` over the rows of ``x`` (``[m, ...]`` flattened to
    ``[m, d]``), in float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):  # float32 under mixed precision
        x = x.flatten(1).float()
        x = x - x.mean(dim=0, keepdim=True)  # distances are translation-invariant; this keeps them exact
        sq = (x * x).sum(dim=1)
        dist2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * x @ x.t()).clamp_min(0.0)
        return torch.exp(-dist2 / (2.0 * float(sigma) ** 2 * x.shape[1]))


def hsic(k: Tensor, l: Tensor) -> Tensor:
    """The empirical HSIC ``(m - 1)^-2 tr(K H L H)`` of two ``[m, m]`` Gram matrices (``m >= 2``)."""
    m = k.shape[0]
    if m < 2:
        raise ValueError(f"HSIC needs at least 2 samples, got a batch of {m}")
    with torch.autocast(device_type=k.device.type, enabled=False):
        k, l = k.float(), l.float()
        h = torch.eye(m, dtype=k.dtype, device=k.device) - 1.0 / m
        return torch.trace(k @ h @ l @ h) / (m - 1) ** 2


def collaborative_loss(
    high: Sequence[Tensor], low: Sequence[Tensor], weights: Sequence[float], sigma: float
) -> tuple[Tensor, list[Tensor]]:
    """``(-Σ_k w_k HSIC(F_k^h, F_k^l), [HSIC_k])`` over the tapped layers' features of the two qualities."""
    if not (len(high) == len(low) == len(weights)):
        raise ValueError(f"{len(high)} high, {len(low)} low feature maps and {len(weights)} weights")
    values = [
        hsic(gaussian_gram(h, sigma), gaussian_gram(lo, sigma)) for h, lo in zip(high, low, strict=True)
    ]
    total = -sum(float(w) * v for w, v in zip(weights, values, strict=True))
    return total, values


# -- Adversarial weight perturbation -----------------------------------------------------------------------
def awp_perturbation(weights: Sequence[Tensor], grads: Sequence[Tensor], gamma: float) -> list[Tensor]:
    """``v_l = γ ‖w_l‖ g_l / ‖g_l‖`` per tensor (zero where ``g_l`` is zero)."""
    out = []
    for w, g in zip(weights, grads, strict=True):
        g = g.float()
        gn = g.norm()
        scale = float(gamma) * w.detach().float().norm() / gn if float(gn) > 0 else g.new_zeros(())
        out.append((scale * g).to(w.dtype))
    return out


class PerturbedWeights:
    """Within ``with``: ``w_l += v_l``; on exit the weights are restored exactly (copied back)."""

    def __init__(self, params: Sequence[nn.Parameter], perturbation: Sequence[Tensor]) -> None:
        self.params, self.perturbation = list(params), list(perturbation)
        self.saved: list[Tensor] = []

    def __enter__(self) -> PerturbedWeights:
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in self.params]
            for p, v in zip(self.params, self.perturbation, strict=True):
                p.add_(v)
        return self

    def __exit__(self, *exc) -> None:
        with torch.no_grad():
            for p, w in zip(self.params, self.saved, strict=True):
                p.copy_(w)
        self.saved = []


def _mean_over_processes(tensors: list[Tensor]) -> list[Tensor]:
    """The tensors averaged over the processes, one all-reduce per dtype (themselves under one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    world = dist.get_world_size()
    out: list[Tensor] = list(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for idx in by_dtype.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in idx])
        dist.all_reduce(flat)
        flat /= world
        for i, chunk in zip(idx, flat.split([tensors[i].numel() for i in idx]), strict=True):
            out[i] = chunk.view_as(tensors[i])
    return out


def _norm_buffers(module: nn.Module) -> list[Tensor]:
    return [
        b
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        for b in (m.running_mean, m.running_var, m.num_batches_tracked)
        if b is not None
    ]


# -- The detector ------------------------------------------------------------------------------------------
class QAD(Method):
    """A backbone trained on quality pairs with CE + HSIC collaborative loss + AWP (Le and Woo, ICCV 2023)."""

    name = "qad"
    gradient_sync = "explicit"  # AWP: two forwards and backwards per update

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        hsic: Mapping | None = None,
        awp: Mapping | None = None,
        pairs: Mapping | None = None,
        seed: int = 0,
        name: str = "qad",
    ) -> None:
        super().__init__()
        self.body = StagedBackbone(build_backbone(backbone))
        if self.body.nhwc:
            raise NotImplementedError(f"{self.body.backbone.timm_name}: QAD taps NCHW convolutional stages")
        hsic = {
            "alpha": 0.003,
            "sigma": 6.0,
            "strides": [4, 8, 16],
            "weights": [0.1, 0.25, 0.5],
            **(hsic or {}),
        }
        if len(hsic["strides"]) != len(hsic["weights"]):
            raise ValueError(
                f"method.hsic: {len(hsic['strides'])} strides but {len(hsic['weights'])} weights"
            )
        self.taps = [self.body.last_at(int(s)) for s in hsic["strides"]]
        if len(set(self.taps)) != len(self.taps):
            names = [self.body.names[i] for i in self.taps]
            raise ValueError(f"method.hsic.strides {list(hsic['strides'])} tap the same layer twice: {names}")
        self.hsic_alpha, self.hsic_sigma = float(hsic["alpha"]), float(hsic["sigma"])
        self.hsic_weights = [float(w) for w in hsic["weights"]]
        awp = {"gamma": 0.002, "warmup_epochs": 3, **(awp or {})}
        self.awp_gamma, self.awp_warmup = float(awp["gamma"]), int(awp["warmup_epochs"])
        self.pairs = {"high": "c23", "low": ["c40"], "jpeg_ranges": None, **dict(pairs or {})}
        self.head = nn.Linear(self.body.backbone.num_features, 1)
        self.optim_cfg, self.scheduler_cfg, self.seed = optim, scheduler, int(seed)
        self.optimizer: torch.optim.Optimizer | None = None

    # -- declarations and data ------------------------------------------------------------------------------
    @classmethod
    def needs_for(cls, hyper: Mapping) -> frozenset[str]:
        """Stored pairs need the training videos at two levels; JPEG partners need nothing."""
        pairs = hyper.get("pairs") or {}
        return frozenset() if pairs.get("jpeg_ranges") else frozenset({"multi_quality"})

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> QualityPairDataset:
        p = self.pairs
        return QualityPairDataset(
            table, pipeline, p["high"], list(p["low"] or []), p["jpeg_ranges"], train=True, seed=self.seed
        )

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext | None) -> None:
        dataset = getattr(dataset, "dataset", dataset)  # through a Subset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        """One optimiser; ``scheduler.name: one_cycle`` is PyTorch's OneCycleLR per step, peaking at the
        optimiser's lr after ``warmup_epochs`` (the authors' ``one_cycle`` with ``warming_up: 3``)."""
        cfg = dict(self.scheduler_cfg or {})
        if cfg.get("name") != "one_cycle":
            return self.one_optimizer(epochs, steps_per_epoch)
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        total = max(1, int(epochs) * int(steps_per_epoch))
        warm = float(cfg.get("warmup_epochs", 3)) / max(1, int(epochs))
        sched = lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=[g["lr"] for g in self.optimizer.param_groups],
            total_steps=total,
            pct_start=min(max(warm, 1e-3), 0.999),
            anneal_strategy=str(cfg.get("anneal", "cos")),
        )
        return [OptimizerSpec("model", self.optimizer, sched, "step")]

    # -- model ----------------------------------------------------------------------------------------------
    def forward_taps(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        """The tapped layers' feature maps and the logit ``[B]``."""
        taps, x, start = [], images, 0
        for i in self.taps:
            x = self.body.run(x, start, i + 1)
            taps.append(x)
            start = i + 1
        fmap = self.body.run(x, start)
        return taps, self.head(self.body.backbone.pool(fmap)).squeeze(1)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.body.backbone.pool(self.body.run(images))).squeeze(1)

    def losses(self, batch: Mapping) -> dict[str, Tensor]:
        """Every term of ``L = CE(x^h) + CE(x^l) + α L_HSIC`` on a batch of pairs
        (``images [B, 2, 3, H, W]``: high, low)."""
        images, labels = batch["images"], batch["label"].float()
        b = images.shape[0]
        taps, logits = self.forward_taps(torch.cat([images[:, 0], images[:, 1]]))  # one pass, BN over both
        logits = logits.float()
        ce_high = F.binary_cross_entropy_with_logits(logits[:b], labels, reduction="none")
        ce_low = F.binary_cross_entropy_with_logits(logits[b:], labels, reduction="none")
        collab, values = collaborative_loss(
            [t[:b] for t in taps], [t[b:] for t in taps], self.hsic_weights, self.hsic_sigma
        )
        per_sample = ce_high + ce_low
        total = per_sample.mean() + self.hsic_alpha * collab
        out = {
            "loss": total,
            "per_sample": per_sample,
            "ce_high": ce_high.mean(),
            "ce_low": ce_low.mean(),
            "loss_hsic": self.hsic_alpha * collab,
        }
        for i, v in zip(self.taps, values, strict=True):
            out[f"hsic_{self.body.names[i]}"] = v
        return out

    def perturbed_params(self) -> list[nn.Parameter]:
        """The weights AWP perturbs: every trainable tensor of two or more dimensions."""
        return [p for p in self.parameters() if p.requires_grad and p.dim() > 1]

    def awp_active(self, epoch: int) -> bool:
        return self.awp_gamma > 0 and int(epoch) >= self.awp_warmup

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        logs: dict[str, float | Tensor] = {}
        if self.awp_active(ctx.epoch):
            params = self.perturbed_params()
            stats = [b.clone() for b in _norm_buffers(self)]
            with ctx.autocast():
                clean = self.losses(batch)
            ctx.backward(clean["loss"])
            with torch.no_grad():
                for buf, saved in zip(_norm_buffers(self), stats, strict=True):
                    buf.copy_(saved)  # the ascent pass does not count as a BatchNorm update
            grads = _mean_over_processes(
                [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            )
            finite = all(bool(torch.isfinite(g).all()) for g in grads)  # fp16 overflow: no perturbation
            v = (
                awp_perturbation(params, grads, self.awp_gamma)
                if finite
                else [torch.zeros_like(p) for p in params]
            )
            self.zero_grad(set_to_none=True)
            with PerturbedWeights(params, v):
                with ctx.autocast():
                    terms = self.losses(batch)
                ctx.backward(terms["loss"])
            logs["loss_clean"] = clean["loss"].detach()
            logs["awp_norm"] = torch.stack([x.float().norm() for x in v]).norm()
        else:
            with ctx.autocast():
                terms = self.losses(batch)
            ctx.backward(terms["loss"])
        ctx.step(self.optimizer)
        logs.update({k: v.detach() for k, v in terms.items() if k not in ("loss", "per_sample")})
        return StepOutput(terms["loss"].detach(), logs, terms["per_sample"].detach(), batch["index"])

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(images).float())

    def run_info(self) -> dict:
        return {
            "hsic_layers": [self.body.names[i] for i in self.taps],
            "awp_from_epoch": self.awp_warmup,
            "pairs": "jpeg" if self.pairs["jpeg_ranges"] else "stored",
        }
