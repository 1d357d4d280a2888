"""LTW: learning to weight (Sun et al., "Domain General Face Forgery Detection by Learning to Weight",
AAAI 2021), with Eqs. 1–6 read consistently as docs/methods/ltw.md ("The update") states.

Per meta-paired batch (training sample x_i of the epoch's training domains, meta partner x'_i of a meta
domain, ``MetaPairDataset``):

1. meta-training (Eq. 1): T(θ, w) = (1/K) Σ p(f_i; w)·L_i, L_i the per-sample BCE + λ·ICC (Eq. 11), p the
   weight-aware network on the detector's last feature map f_i (detached there: the weights steer θ only
   through the meta gradient);
2. virtual step (Eq. 2): θ' = θ − α∇θT(θ, w), the graph kept; meta-testing (Eq. 3): M(θ') the **unweighted**
   loss on the meta batch, run with ``torch.func.functional_call`` on θ' and copies of the buffers (the
   BatchNorm running statistics are not touched by the virtual forward);
3. updates (Eqs. 4–6): θ by ∇θ[T + β·M(θ'(θ, w))] (second order; ``first_order=true`` drops the θθ Hessian,
   using ∇θ'M), w by ∇w M only — w reaches M through θ', the mixed derivative ∂²T/∂θ∂w, so it learns.

The virtual step's rate α follows the detector optimiser's schedule (``alpha_schedule: follow_lr``:
α_t = α·lr_t/lr_0, the released code's behaviour and the paper's reading: Sec. 4 gives α = γ = 0.001 "with
Adam optimizer" and then "a stepLR scheduler (step 5, gamma 0.1)" for them); ``constant`` keeps α fixed
while the optimiser's rate decays (1000× by epoch 16 with StepLR(5, 0.1)), which weights the meta
gradient relatively more and more as training goes on.

Readings the paper leaves open (its Eq. 1 weights "the loss" of a sample, Eq. 11 the loss with ICC):
``weight_icc: true`` puts each sample's ICC contribution under its weight inside T and ``meta_icc: true``
keeps ICC in M; the released code (``ltw/official``) weights the BCE only (ICC unweighted in T) and uses
BCE alone in M. The weight network's input is detached in both (the code and Meta-Weight-Net do so).

``weight_grad=false`` freezes the weight network (the released code computes it under ``no_grad``: the
``ltw/official`` preset); ``meta_weight=0`` with a frozen weight network is the w/o-meta-testing ablation.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import pandas as pd
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from detect.data.datasets import MetaPairDataset
from detect.data.images import read_rgb
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.distributed import mean_across_processes
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.ltw.ltw_losses import sample_losses, weighted_terms
from detect.methods.ltw.meta_split import meta_split
from detect.methods.ltw.weight_net import WeightNetwork
from detect.models.backbone import build_backbone


def _caption(image: np.ndarray, text: str, size: int = 128) -> np.ndarray:
    """A ``size``×``size`` tile of ``image`` with ``text`` written along its bottom."""
    tile = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    cv2.rectangle(tile, (0, size - 18), (size, size), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


class Detector(nn.Module):
    """f(θ): backbone, global pooling, Linear(C, 1); returns (logit [N], last feature map)."""

    def __init__(self, backbone: Mapping) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.head = nn.Linear(self.backbone.num_features, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.backbone.forward_features(images)
        return self.head(self.backbone.pool(fmap)).squeeze(1), fmap


class LTW(Method):
    """See the module docstring; arguments are the ``method.*`` keys of ``conf/method/ltw.yaml``."""

    name = "ltw"
    # The virtual step θ' = θ − α∇θT takes the *global* batch's gradient (averaged over the processes
    # differentiably, so the second-order terms see it too) and w and θ have their own optimisers: DDP's
    # one-backward reducer cannot express this, so gradients are averaged explicitly in ctx.step.
    gradient_sync = "explicit"
    data_needs = frozenset({"manipulation_labels", "aligned_groups"})  # meta-split by domain, meta pairs

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        weight_optim: Mapping,
        scheduler: Mapping | None = None,
        icc_weight: float = 0.01,
        meta_weight: float = 1.0,
        inner_lr: float = 1e-3,
        alpha_schedule: str = "follow_lr",
        weight_icc: bool = True,
        meta_icc: bool = True,
        first_order: bool = False,
        weighting: bool = True,
        weight_grad: bool = True,
        weight_offset: float = 0.0,
        weight_dropout: float = 0.5,
        seed: int = 0,
        name: str = "ltw",
    ) -> None:
        super().__init__()
        self.detector = Detector(backbone)
        self.weights = WeightNetwork(self.detector.backbone.num_features, weight_dropout, weight_offset)
        self.icc_weight, self.beta, self.alpha = float(icc_weight), float(meta_weight), float(inner_lr)
        self.first_order, self.weighting, self.weight_grad = (
            bool(first_order),
            bool(weighting),
            bool(weight_grad),
        )
        if not self.weighting and self.weight_grad:
            raise ValueError(
                "method.weighting=false (all weights 1) leaves nothing to learn: set weight_grad=false"
            )
        if self.beta < 0 or self.alpha < 0:
            raise ValueError("method.meta_weight and method.inner_lr must be >= 0")
        if alpha_schedule not in ("follow_lr", "constant"):
            raise ValueError(
                f"method.alpha_schedule={alpha_schedule!r}; use 'follow_lr' (α scaled with the optimiser's "
                "schedule) or 'constant'"
            )
        self.alpha_schedule = alpha_schedule
        self.weight_icc, self.meta_icc = bool(weight_icc), bool(meta_icc)
        for p in self.weights.parameters():
            p.requires_grad_(self.weight_grad)
        self.optim_cfg, self.weight_optim_cfg, self.scheduler_cfg = optim, weight_optim, scheduler
        self.seed = int(seed)
        self.split: tuple[list[str], list[str]] = ([], [])
        self.optimizer: torch.optim.Optimizer | None = None
        self.weight_optimizer: torch.optim.Optimizer | None = None

    # -- set-up -------------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.detector.parameters())
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        specs = [OptimizerSpec("detector", self.optimizer, sched, interval)]
        if self.weight_grad:
            self.weight_optimizer = build_optimizer(self.weight_optim_cfg, self.weights.parameters())
            wsched, winterval = build_scheduler(
                self.scheduler_cfg, self.weight_optimizer, epochs, steps_per_epoch
            )
            specs.append(OptimizerSpec("weights", self.weight_optimizer, wsched, winterval))
        return specs

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> MetaPairDataset:
        dataset = MetaPairDataset(table, pipeline, train=True, seed=self.seed)
        self.on_epoch_start(0, dataset, None)
        return dataset

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext | None) -> None:
        """The epoch's meta-split (seeded by ``seed`` and the epoch) and its meta pairs."""
        train, meta = meta_split(dataset.by_domain, self.seed, epoch)
        self.split = (train, meta)
        dataset.set_domains(train, meta, epoch)

    def extra_state(self) -> dict:
        return {"split_train": list(self.split[0]), "split_meta": list(self.split[1])}

    def load_extra_state(self, state: Mapping) -> None:
        self.split = (list(state.get("split_train", [])), list(state.get("split_meta", [])))

    # -- the step -----------------------------------------------------------------------------------
    def current_alpha(self) -> float:
        """α of the virtual step now: ``inner_lr`` scaled by the detector optimiser's lr_t / lr_0
        (``follow_lr``), or ``inner_lr`` (``constant``, or before the optimiser exists)."""
        if self.alpha_schedule == "constant" or self.optimizer is None:
            return self.alpha
        group = self.optimizer.param_groups[0]
        base = float(group.get("initial_lr", group["lr"]))
        return self.alpha * float(group["lr"]) / base if base > 0 else self.alpha

    def sample_weights(self, fmap: torch.Tensor) -> torch.Tensor:
        """p(f_i; w) per sample (ones without weighting); the feature map is detached (see the docstring)."""
        if not self.weighting:
            return torch.ones(fmap.shape[0], device=fmap.device)
        w = self.weights(fmap.detach())
        return w.to(torch.promote_types(w.dtype, torch.float32))

    def _meta_train(self, batch: Mapping) -> dict[str, torch.Tensor]:
        """Meta-training (Eq. 1): per-sample losses L_i, weights p(f_i; w) and T = mean(p_i·ℓ_i) + rest,
        ℓ_i the weighted part of L_i (all of it, or the BCE only: ``weight_icc``)."""
        logits, fmap = self.detector(batch["image"])
        per_sample = sample_losses(logits, batch["label"], self.icc_weight)
        weighted, rest = weighted_terms(logits, batch["label"], self.icc_weight, self.weight_icc)
        weight = self.sample_weights(fmap)
        return {
            "train_loss": (weight * weighted).mean() + rest,
            "per_sample": per_sample,
            "weighted": weighted,
            "rest": rest,
            "weight": weight,
        }

    def _meta_test(self, params: Mapping[str, torch.Tensor], batch: Mapping) -> torch.Tensor:
        """Meta-testing (Eq. 3): the unweighted loss of the meta batch under ``params`` (θ' and the rest),
        on copies of the buffers so the virtual forward leaves the BatchNorm running statistics alone."""
        buffers = {n: b.clone() for n, b in self.detector.named_buffers()}
        meta_logits, _ = functional_call(self.detector, {**params, **buffers}, (batch["meta_image"],))
        icc = self.icc_weight if self.meta_icc else 0.0
        return sample_losses(meta_logits, batch["meta_label"], icc).mean()

    def meta_losses(self, batch: Mapping) -> dict[str, torch.Tensor | list]:
        """T, θ' (as a dict of tensors), M(θ') and the per-sample training losses (no optimiser step)."""
        params = dict(self.detector.named_parameters())
        out: dict = self._meta_train(batch)
        if self.beta == 0 and not self.weight_grad:
            return out
        names = [n for n, p in params.items() if p.requires_grad]
        grads = torch.autograd.grad(
            out["train_loss"], [params[n] for n in names], create_graph=True, allow_unused=True
        )
        used = [i for i, g in enumerate(grads) if g is not None]  # the same on every process
        grads = list(grads)
        means = mean_across_processes([grads[i] for i in used], differentiable=True)
        for i, g in zip(used, means, strict=True):
            grads[i] = g
        alpha = self.current_alpha()
        virtual = {
            n: params[n] - alpha * g if g is not None else params[n]
            for n, g in zip(names, grads, strict=True)
        }
        out["meta_loss"] = self._meta_test({**params, **virtual}, batch)
        out["virtual"] = virtual
        return out

    def first_order_terms(self, batch: Mapping) -> dict[str, torch.Tensor | list]:
        """The first-order step's pieces without second derivatives: g = ∇θT, θ' = θ − αg (constant),
        v = ∂M/∂θ' and w's exact meta gradient through θ'(w): ∂M/∂w = −(α/K) Σ_i (v·∇θL_i) ∂p_i/∂w, with
        v·∇θL_i from one forward-mode pass (a JVP of the per-sample losses along v, on copies of the
        buffers). Returns ``theta_grad`` (∇θT + β·v per parameter) and ``weight_objective`` (its gradient
        in w is ∂M/∂w)."""
        params = dict(self.detector.named_parameters())
        names = [n for n, p in params.items() if p.requires_grad]
        out: dict = self._meta_train(batch)
        weighted, weight = out["weighted"], out["weight"]
        theta_loss = (weight.detach() * weighted).mean() + out["rest"]
        g = torch.autograd.grad(theta_loss, [params[n] for n in names])
        g = mean_across_processes(g)  # the global batch's ∇θT (θ' is the same on every process)
        alpha = self.current_alpha()
        virtual = {
            n: (params[n] - alpha * gi).detach().requires_grad_() for n, gi in zip(names, g, strict=True)
        }
        meta = self._meta_test({**params, **virtual}, batch)
        v = mean_across_processes(torch.autograd.grad(meta, [virtual[n] for n in names]))
        out["meta_loss"] = meta
        out["theta_grad"] = {n: gi + self.beta * vi for n, gi, vi in zip(names, g, v, strict=True)}
        if self.weight_grad:
            with fwAD.dual_level():
                dual = {n: fwAD.make_dual(params[n].detach(), vi) for n, vi in zip(names, v, strict=True)}
                copies = {n: b.clone() for n, b in self.detector.named_buffers()}
                dual_logits, _ = functional_call(self.detector, {**dual, **copies}, (batch["image"],))
                dual_terms, _ = weighted_terms(dual_logits, batch["label"], self.icc_weight, self.weight_icc)
                slope = fwAD.unpack_dual(dual_terms).tangent
            out["weight_objective"] = -(alpha / len(slope)) * (slope.detach() * weight).sum()
        return out

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        """One LTW update. Second order, β > 0: a single backward pass through the double-backward graph
        gives θ's ∇θ[T + β·M] and w's ∇w M (T's own dependence on w is cut by using T with detached weights
        as θ's term, so w's gradient is β·∇w M, divided by β). First order: no second derivatives at all
        (``first_order_terms``)."""
        theta = list(self.detector.parameters())
        w = list(self.weights.parameters()) if self.weight_grad else []
        if self.first_order and (self.beta > 0 or self.weight_grad):
            with ctx.autocast():
                out = self.first_order_terms(batch)
            scale = ctx.scaler.get_scale() if ctx.scaler.is_enabled() else 1.0
            for name, p in self.detector.named_parameters():
                if name in out["theta_grad"]:
                    p.grad = out["theta_grad"][name].detach() * scale
            if w:
                ctx.backward(out["weight_objective"], inputs=w)
        else:
            with ctx.autocast():
                out = self.meta_losses(batch)
            # T with the weights as constants: the same value and θ-gradient (f_i is detached at p's input)
            train_theta = (out["weight"].detach() * out["weighted"]).mean() + out["rest"]
            if "meta_loss" not in out:
                ctx.backward(train_theta, inputs=theta)
            elif self.beta > 0:
                ctx.backward(train_theta + self.beta * out["meta_loss"], inputs=theta + w)
                for p in w:
                    if p.grad is not None:
                        p.grad.div_(self.beta)
            else:  # β = 0 with a learning weight network: θ by ∇θT, w by ∇w M
                if w:
                    ctx.backward(out["meta_loss"], inputs=w, retain_graph=True)
                ctx.backward(train_theta, inputs=theta)
        logs = {
            "train_loss": out["train_loss"].detach(),
            "mean_weight": out["weight"].detach().mean(),
            "alpha": torch.tensor(self.current_alpha()),
        }
        if "meta_loss" in out:
            logs["meta_loss"] = out["meta_loss"].detach()
        ctx.step(self.optimizer)
        if self.weight_grad:
            ctx.step(self.weight_optimizer)
        return StepOutput(out["train_loss"].detach(), logs, out["per_sample"].detach(), batch["index"])

    def report_images(self, dataset, n: int = 8) -> dict[str, np.ndarray]:
        """The paper's Fig. 4: training faces with their predicted weights, fakes (left) and reals (right),
        each column sorted by weight; ``n`` of each, picked evenly over the training table."""
        table = dataset.table
        tiles = []
        for label in (1, 0):
            rows = np.flatnonzero(table["label"].to_numpy() == label)
            if len(rows) == 0:
                continue
            rows = rows[np.linspace(0, len(rows) - 1, min(n, len(rows))).astype(int)]
            raw = [read_rgb(table.at[int(r), "path"]) for r in rows]
            x = torch.stack([dataset.pipeline(img, augment=False) for img in raw])
            device = next(self.parameters()).device
            weight = self.predict_weights(x.to(device)).cpu().numpy()
            order = np.argsort(-weight)
            tiles.append(
                [_caption(raw[i], f"{'fake' if label else 'real'} w={weight[i]:.3f}") for i in order]
            )
        height = max(len(col) for col in tiles)
        blank = np.zeros_like(tiles[0][0])
        columns = [np.concatenate(col + [blank] * (height - len(col)), axis=0) for col in tiles]
        return {"ltw_weights": np.concatenate(columns, axis=1)}

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.detector(images)[0].float())

    @torch.no_grad()
    def predict_weights(self, images: torch.Tensor) -> torch.Tensor:
        """The weight-aware network's weights of ``images`` (the paper's Fig. 4)."""
        return self.weights(self.detector(images)[1]).float()
