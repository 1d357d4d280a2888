"""DPL: dual progressive learning for cross-quality deepfake detection (Zhang et al., ACCV 2024), with
the details the paper leaves out read as docs/methods/dpl.md states them.

Per image: backbone feature f (ConvNeXt-T: 768×7×7); step counts k1 (VQI) and k2 (FII) from the CLIP
indicators (:mod:`detect.methods.dpl.indicators`); the feature selection module builds f_1 = f,
f_{t+1} = f_t − M_t ⊙ GAP(f_t) with a channel window at position l_t; the VQPL and FIPL branches run
their GRUs for k1 and k2 steps on the selected features; their features are fused (add) and classified
(Linear(c, 2)). The prediction at step t, c_t, is the classifier on the fusion of each branch's feature
at step min(t, k) (docs/methods/dpl.md, "The step predictions c_t").

Training runs in two stages (``stage``; the default config runs them as two phases of one job):

* Stage I (Sec. 3.3, Eq. 3): l_t ~ U(0, 1); focal loss on the final prediction + L_REG, the entropy of
  hard samples maximised at the first, the last or all steps up to the effective one (Table 8);
* Stage II (Eqs. 4–6): PPO on the policy Φ (window positions drawn from N(μ_t, σ_t)), every other
  parameter and buffer frozen; rewards r_t = c_t − c_{t−1} on the true class.

At evaluation l_t is Φ's mean action once Stage II has trained it. Before (Stage I, Table 5's "w/o Train
Stage II": "only applying random sampling l_t in FSM") the positions are random, as the randomiser's
(``eval_window: random``, the default): drawn per image from ``(seed, the image's bytes)``, so an image
gets the same positions in any batch and any run; ``eval_window: fixed`` uses the randomiser's mean 0.5.

Stage II runs ``ppo.epochs`` PPO updates per rollout (default 1, the released code's ``K_epochs``). With
one update the policy ratio ρ is exactly 1 (the old and the new Φ are the same), so Eq. 4's clip never
acts and L_REW is a plain policy-gradient term; more epochs let the clip matter.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from detect.data.datasets import MultiQualityDataset
from detect.data.images import read_rgb
from detect.data.jpeg import jpeg_compress
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.dpl.dpl_losses import (
    discounted_returns,
    entropy_regulariser,
    focal_loss,
    hard_mask,
    ppo_loss,
)
from detect.methods.dpl.dpl_modules import Fusion, Policy, ProgressiveBranch, select_features, window_mask
from detect.methods.dpl.indicators import KINDS, StepIndicators
from detect.models.backbone import build_backbone
from detect.quality.binning import DESCENDING, QuantileBinner
from detect.quality.score_cache import ScoreCache

BRANCHES = ("vqpl", "fipl")  # VQPL runs k1 (VQI) steps, FIPL k2 (FII) steps
CLIP_FEATURES = ("none", "concat_backbone", "add_backbone", "add_branches")  # Table 9


class DPL(Method):
    """See the module docstring; arguments are the ``method.*`` keys of ``conf/method/dpl.yaml``."""

    name = "dpl"
    # Stage I and Stage II train different parameter sets (requires_grad switches at the stage change) and
    # Stage II's PPO step runs its own policy optimiser: gradients are averaged explicitly in ctx.step.
    # Its qualities are JPEG re-compressions made on the fly, so it needs nothing beyond frames and labels.
    gradient_sync = "explicit"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        policy_optim: Mapping,
        scheduler: Mapping | None = None,
        stage: int = 1,
        branches: Sequence[str] = BRANCHES,
        n_steps: int = 5,
        window_fraction: float = 1 / 3,
        window_scale: str = "c",
        aggregate: str = "sum",
        fusion: str = "add",
        loss: str = "focal",
        focal_gamma: float = 2.0,
        focal_alpha: float = 1.0,
        reg_weight: float = 1.0,
        reg_steps: str = "all",
        step_predictions: str = "joint",
        policy: Mapping | None = None,
        ppo: Mapping | None = None,
        qualities: Sequence = (None, (30, 99), (13, 29), (8, 12)),
        quality_draws: str = "epoch",
        indicators: Mapping | None = None,
        clip_feature: str = "none",
        eval_window: str = "random",
        data_kind: str = "real",
        cache_dir: str = ".cache",
        seed: int = 0,
        name: str = "dpl",
    ) -> None:
        super().__init__()
        self._check(stage, branches, loss, reg_steps, step_predictions, quality_draws, clip_feature)
        if eval_window not in ("random", "fixed"):
            raise ValueError(f"method.eval_window={eval_window!r}; use 'random' (paper) or 'fixed' (0.5)")
        self.eval_window = eval_window
        self.stage, self.branch_names = int(stage), tuple(branches)
        self.backbone = build_backbone(backbone)
        c = self.backbone.num_features
        self.n_steps = int(n_steps) if self.branch_names else 1
        self.width = max(1, int(round(c * float(window_fraction))))
        self.window_scale, self.step_predictions = window_scale, step_predictions
        self.branches = nn.ModuleDict({b: ProgressiveBranch(c, aggregate) for b in self.branch_names})
        self.fusion = Fusion(fusion, c, max(1, len(self.branch_names)))
        self.classifier = nn.Linear(self.fusion.out_dim, 2)
        pol = dict(policy or {})
        self.policy = Policy(
            c, int(pol.get("hidden") or c), pol.get("std", "head"), pol.get("log_std_init", 0.1)
        )
        self.ppo = {"gamma": 1.0, "normalise": False, "clip": 0.2, "value_weight": 1.0, "entropy_weight": 1.0}
        self.ppo.update(ppo or {})
        self.ppo_epochs = int(self.ppo.pop("epochs", 1))
        if self.ppo_epochs < 1:
            raise ValueError(f"method.ppo.epochs={self.ppo_epochs}: at least one PPO update per rollout")
        self.loss_kind, self.focal_gamma, self.focal_alpha = loss, float(focal_gamma), float(focal_alpha)
        self.reg_weight, self.reg_steps = float(reg_weight), reg_steps
        self.qualities = [None if q is None else (int(q) if np.isscalar(q) else tuple(q)) for q in qualities]
        self.redraw = quality_draws == "epoch"
        self.optim_cfg, self.policy_optim_cfg, self.scheduler_cfg = optim, policy_optim, scheduler
        self.cache_dir, self.seed = cache_dir, int(seed)
        self.indicators: StepIndicators | None = None
        self.register_buffer("bin_edges", torch.zeros(len(KINDS), self.n_steps - 1, dtype=torch.float64))
        self.register_buffer("bins_fitted", torch.tensor(False))
        if self.branch_names or clip_feature != "none":
            cfg = dict(indicators or {})
            allow = cfg.pop("allow_random", "auto")
            allow = data_kind == "synthetic" if allow == "auto" else bool(allow)
            self.score_batch = int(cfg.pop("batch_size", 64))
            self.indicators = StepIndicators(
                **cfg, n_steps=self.n_steps, allow_random=allow, mean=backbone["mean"], std=backbone["std"]
            )
        self.clip_feature = clip_feature
        if clip_feature != "none":
            dim = self.indicators.models["vqi"][0].visual.output_dim
            self.clip_proj = nn.Linear(dim, c)
            if clip_feature == "concat_backbone":
                self.clip_merge = nn.Conv2d(2 * c, c, kernel_size=1)
        if self.stage == 2:
            for n, p in self.named_parameters():
                p.requires_grad_(n.startswith("policy."))
        self.optimizer: torch.optim.Optimizer | None = None
        self.epoch = 0
        self._train_steps: torch.Tensor | None = None
        self._pipeline: Pipeline | None = None

    @staticmethod
    def _check(stage, branches, loss, reg_steps, step_predictions, quality_draws, clip_feature) -> None:
        checks = [
            ("stage", stage, (1, 2)),
            ("loss", loss, ("focal", "ce")),
            ("reg_steps", reg_steps, ("first", "last", "all")),
            ("step_predictions", step_predictions, ("joint", "alternate")),
            ("quality_draws", quality_draws, ("epoch", "run")),
            ("clip_feature", clip_feature, CLIP_FEATURES),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"method.{key}={value!r}; use one of {list(allowed)}")
        unknown = set(branches) - set(BRANCHES)
        if unknown or len(set(branches)) != len(branches):
            raise ValueError(
                f"method.branches={list(branches)}: a subset of {list(BRANCHES)} without repeats"
            )
        if int(stage) == 2 and not branches:
            raise ValueError("Stage II trains the feature-selection policy: it needs at least one branch")
        if step_predictions == "alternate" and len(branches) != 2:
            raise ValueError(
                "step_predictions=alternate steps one branch against the other: needs both branches"
            )

    # -- set-up -------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> DPL:
        """Stage II keeps everything but Φ in eval mode (frozen batch-norm statistics, no dropout)."""
        super().train(mode)
        if self.stage == 2 and mode:
            for name, module in self.named_children():
                if name != "policy":
                    module.eval()
        return self

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        if self.stage == 1:
            params = [p for n, p in self.named_parameters() if not n.startswith("policy.")]
            cfg, label = self.optim_cfg, "model"
        else:
            params, cfg, label = list(self.policy.parameters()), self.policy_optim_cfg, "policy"
        self.optimizer = build_optimizer(cfg, params)
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec(label, self.optimizer, sched, interval)]

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> MultiQualityDataset:
        dataset = MultiQualityDataset(
            table, pipeline, self.qualities, train=True, seed=self.seed, redraw=self.redraw
        )
        self._pipeline = pipeline
        self._score_epoch(dataset, 0)
        return dataset

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext | None) -> None:
        self.epoch = epoch
        dataset.set_epoch(epoch)
        if self.redraw and epoch > 0:
            self._score_epoch(dataset, epoch)

    def _load(self, path: str, quality: int | None) -> torch.Tensor:
        img = read_rgb(path)
        return self._pipeline(img if quality is None else jpeg_compress(img, quality), augment=False)

    def _score_epoch(self, dataset: MultiQualityDataset, epoch: int) -> None:
        """Step counts [N, Q, 2] of every training image at each quality it is fed this epoch (cached)."""
        if self.indicators is None:
            return
        table = dataset.table
        items = []
        for i in range(len(table)):
            draws = dataset.draw(i)
            for slot, q in zip(self.qualities, draws, strict=True):
                items.append((table.at[i, "path"], table.at[i, "compression"], None if slot is None else q))
        device = self.bin_edges.device
        scores = self.indicators.score_items(
            ScoreCache(Path(self.cache_dir) / "scores"), items, self._load, device, self.score_batch
        )
        if self.indicators.binning == "quantile" and not bool(self.bins_fitted):
            self.fit_bins(scores)
        steps = self._steps_from_scores(scores)
        self._train_steps = torch.as_tensor(steps, dtype=torch.long).view(len(table), len(self.qualities), 2)

    def fit_bins(self, scores: np.ndarray) -> None:
        """Equal-count bins of the training scores [M, 2] (Sec. 3.1), kept as buffers so every checkpoint
        carries them (evaluation of a trained model bins test scores with its training set's edges)."""
        self.indicators.fit(np.asarray(scores))
        state = self.indicators.state()
        self.bin_edges.copy_(torch.tensor([state[k]["edges"] for k in KINDS], dtype=torch.float64))
        self.bins_fitted.fill_(True)

    def _steps_from_scores(self, scores: np.ndarray | torch.Tensor) -> np.ndarray:
        if self.indicators.binning == "quantile":
            if not bool(self.bins_fitted):
                raise RuntimeError(
                    "DPL's quantile bins are not fitted: train first or load a trained checkpoint"
                )
            edges = self.bin_edges.cpu().numpy()
            self.indicators.binners = {
                k: QuantileBinner(edges[j], DESCENDING[k]) for j, k in enumerate(KINDS)
            }
        return self.indicators.steps(scores)

    def run_info(self) -> dict:
        return {
            "indicators": None if self.indicators is None else self.indicators.describe(),
            "stage": self.stage,
        }

    # -- the network --------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backbone feature map [N, c, h, w] (with Table 9's CLIP feature merged into it, if chosen) and the
        projected CLIP feature [N, c] (None without one)."""
        fmap = self.backbone.forward_features(images)
        if self.clip_feature == "none":
            return fmap, None
        clip = self.clip_proj(self.indicators.embed(images).to(fmap.dtype))
        if self.clip_feature == "add_backbone":
            fmap = fmap + clip[:, :, None, None]
        elif self.clip_feature == "concat_backbone":
            tiled = clip[:, :, None, None].expand(-1, -1, *fmap.shape[2:])
            fmap = self.clip_merge(torch.cat([fmap, tiled], dim=1))
        return fmap, clip

    def selected_maps(self, fmap: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
        """f_1 = f and f_{t+1} = f_t − M_t ⊙ GAP(f_t) for the window positions ``actions`` [T−1, N]."""
        maps = [fmap]
        for a in actions:
            maps.append(
                select_features(maps[-1], window_mask(a, fmap.shape[1], self.width, self.window_scale))
            )
        return maps

    def effective_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """Per sample, the last step whose prediction counts: max(k1, k2) (joint), or the stepped branch's
        k (alternate: VQPL on even epochs, FIPL on odd ones, as the released code)."""
        ks = [steps[:, BRANCHES.index(b)] for b in self.branch_names]
        if self.step_predictions == "alternate":
            return ks[self.epoch % 2]
        return torch.stack(ks).amax(0)

    def heads(self, maps: list[torch.Tensor], steps: torch.Tensor, clip: torch.Tensor | None) -> dict:
        """Step and final logits from the selected maps: ``step_logits`` [T, N, 2] (c_t), ``final``
        [N, 2] (each branch at its own k) and ``fused`` [N, c'] (the fused feature of the final one)."""
        if not self.branch_names:
            fused = maps[0].mean(dim=(2, 3))
            fused = fused if clip is None else fused + clip
            logits = self.classifier(fused)
            return {"step_logits": logits[None], "final": logits, "fused": fused}
        rows = {b: self.branches[b](maps, steps[:, BRANCHES.index(b)]) for b in self.branch_names}
        last = {b: r[-1] for b, r in rows.items()}  # every branch is frozen after its own k
        t_max = len(maps)
        if self.step_predictions == "alternate":
            stepped = self.branch_names[self.epoch % 2]
            per_step = [
                [rows[b][t] if b == stepped else last[b] for b in self.branch_names] for t in range(t_max)
            ]
        else:
            per_step = [[rows[b][t] for b in self.branch_names] for t in range(t_max)]
        fused_steps = torch.stack([self.fusion(f) for f in per_step])
        if clip is not None and self.clip_feature == "add_branches":
            fused_steps = fused_steps + clip[None]
        step_logits = self.classifier(fused_steps)
        final_fused = self.fusion([last[b] for b in self.branch_names])
        if clip is not None and self.clip_feature == "add_branches":
            final_fused = final_fused + clip
        return {"step_logits": step_logits, "final": self.classifier(final_fused), "fused": final_fused}

    def _rollout_steps(self, steps: torch.Tensor) -> int:
        return int(self.effective_steps(steps).max()) if self.branch_names else 1

    def eval_positions(self, images: torch.Tensor, t_max: int) -> torch.Tensor:
        """Window positions [t_max − 1, N] before Stage II: ``random`` draws each image's positions from
        ``(seed, CRC of its bytes)`` (the same in any batch; the first t_max − 1 of its n_steps − 1 draws),
        ``fixed`` gives 0.5."""
        n = images.shape[0]
        if self.eval_window == "fixed" or t_max <= 1:
            return torch.full((max(t_max - 1, 0), n), 0.5, device=images.device)
        rows = []
        for img in images.detach().float().cpu().numpy():
            key = zlib.crc32(np.ascontiguousarray(img).tobytes())
            draws = np.random.default_rng([self.seed, key]).random(self.n_steps - 1)
            rows.append(torch.from_numpy(draws[: t_max - 1]).float())
        return torch.stack(rows, dim=1).to(images.device)

    def forward_eval(self, images: torch.Tensor, steps: torch.Tensor) -> dict:
        """The deterministic forward of evaluation: window positions Φ's mean actions once Stage II has
        trained it, else :meth:`eval_positions` (random per image, or 0.5)."""
        fmap, clip = self.features(images)
        t_max = self._rollout_steps(steps)
        if bool(self.policy.trained) and t_max > 1:
            maps, hidden = [fmap], None
            for _ in range(t_max - 1):
                mu, _, _, hidden = self.policy(maps[-1].mean(dim=(2, 3)).float(), hidden)
                maps.append(
                    select_features(maps[-1], window_mask(mu, fmap.shape[1], self.width, self.window_scale))
                )
        else:
            maps = self.selected_maps(fmap, self.eval_positions(images, t_max).to(fmap.dtype))
        return self.heads(maps, steps, clip)

    def test_steps(self, images: torch.Tensor) -> torch.Tensor:
        """Step counts [N, 2] of (perturbed) test images, scored online by the indicators."""
        if self.indicators is None:
            return torch.ones(images.shape[0], 2, dtype=torch.long, device=images.device)
        steps = self._steps_from_scores(self.indicators.scores(images))
        return torch.as_tensor(steps, dtype=torch.long, device=images.device)

    # -- the steps ----------------------------------------------------------------------------------
    def _batch(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images [B·Q, 3, H, W], labels [B·Q] (long) and step counts [B·Q, 2] of a multi-quality batch."""
        images = batch["images"]
        b, q = images.shape[:2]
        labels = batch["label"].long().repeat_interleave(q)
        if self._train_steps is None:
            steps = torch.ones(b * q, 2, dtype=torch.long)
        else:
            steps = self._train_steps[batch["index"].cpu()].view(b * q, 2)
        return images.flatten(0, 1), labels, steps.to(images.device)

    def stage1_losses(self, images: torch.Tensor, labels: torch.Tensor, steps: torch.Tensor) -> dict:
        """Eq. 3 with random window positions: focal (or CE) on the final prediction + λ·L_REG."""
        fmap, clip = self.features(images)
        t_max = self._rollout_steps(steps)
        actions = torch.rand(t_max - 1, fmap.shape[0], device=fmap.device)
        out = self.heads(self.selected_maps(fmap, actions), steps, clip)
        gamma, alpha = (self.focal_gamma, self.focal_alpha) if self.loss_kind == "focal" else (0.0, 1.0)
        per_sample = focal_loss(out["final"], labels, gamma, alpha)
        cls = per_sample.mean()
        reg = torch.zeros((), device=cls.device)
        if self.reg_weight > 0 and self.branch_names:
            hard = hard_mask(out["final"], labels)
            t = torch.arange(1, t_max + 1, device=fmap.device)[:, None]
            eff = self.effective_steps(steps)[None]
            if self.reg_steps == "first":
                logits, valid = out["step_logits"][:1], torch.ones_like(eff, dtype=torch.bool)
            elif self.reg_steps == "last":
                logits, valid = out["final"][None], torch.ones_like(eff, dtype=torch.bool)
            else:
                logits, valid = out["step_logits"], t <= eff
            reg = entropy_regulariser(logits, valid, hard)
        return {"loss": cls + self.reg_weight * reg, "cls": cls, "reg": reg, "per_sample": per_sample, **out}

    @torch.no_grad()
    def rollout(self, images: torch.Tensor, labels: torch.Tensor, steps: torch.Tensor) -> dict:
        """Stage II's rollout with the current (old) Φ, everything else frozen: states GAP(f_t), sampled
        and clamped actions l_t, their log-probabilities, and the rewards r = c_{t+1} − c_t of each action
        on the true-class probability, with the actions that count (t < the effective step)."""
        fmap, clip = self.features(images)
        t_max = self._rollout_steps(steps)
        maps, hidden, states, actions, logps = [fmap], None, [], [], []
        for _ in range(t_max - 1):
            state = maps[-1].mean(dim=(2, 3)).float()
            mu, sigma, _, hidden = self.policy(state, hidden)
            dist = torch.distributions.Normal(mu, sigma)
            action = dist.sample().clamp(0.0, 1.0)  # the released code: log-probability of the clamped action
            states.append(state)
            actions.append(action)
            logps.append(dist.log_prob(action))
            maps.append(
                select_features(maps[-1], window_mask(action, fmap.shape[1], self.width, self.window_scale))
            )
        out = self.heads(maps, steps, clip)
        conf = (
            F.softmax(out["step_logits"].float(), dim=-1)
            .gather(2, labels.view(1, -1, 1).expand(t_max, -1, 1))
            .squeeze(2)
        )  # c_t, [T, N]
        eff = self.effective_steps(steps)
        t = torch.arange(1, t_max, device=fmap.device)[:, None]
        return {
            "states": torch.stack(states),
            "actions": torch.stack(actions),
            "old_logp": torch.stack(logps),
            "rewards": conf[1:] - conf[:-1],
            "valid": t < eff[None],
            "confidence": conf,
            "final": out["final"],
        }

    def policy_terms(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Φ re-run over the stored states: log-probabilities of the stored actions, values V, entropies."""
        hidden, logps, values, ents = None, [], [], []
        for state, action in zip(states, actions, strict=True):
            mu, sigma, value, hidden = self.policy(state, hidden)
            dist = torch.distributions.Normal(mu, sigma)
            logps.append(dist.log_prob(action))
            values.append(value)
            ents.append(dist.entropy())
        return torch.stack(logps), torch.stack(values), torch.stack(ents)

    def stage2_losses(
        self, images: torch.Tensor, labels: torch.Tensor, steps: torch.Tensor, roll: dict | None = None
    ) -> dict:
        """Eqs. 4–6 for one batch: the rollout (or the given one), returns, and the PPO loss of Φ."""
        roll = self.rollout(images, labels, steps) if roll is None else roll
        returns = discounted_returns(roll["rewards"], roll["valid"], self.ppo["gamma"], self.ppo["normalise"])
        logp, values, ent = self.policy_terms(roll["states"], roll["actions"])
        terms = ppo_loss(
            logp,
            roll["old_logp"],
            values,
            returns,
            ent,
            roll["valid"],
            clip=self.ppo["clip"],
            value_weight=self.ppo["value_weight"],
            entropy_weight=self.ppo["entropy_weight"],
        )
        reward = (roll["rewards"] * roll["valid"]).sum() / roll["valid"].sum().clamp_min(1)
        return {**terms, "reward": reward, "final": roll["final"]}

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        images, labels, steps = self._batch(batch)
        if self.stage == 1:
            with ctx.autocast():
                out = self.stage1_losses(images, labels, steps)
            ctx.backward(out["loss"])
            ctx.step(self.optimizer)
            logs = {"focal": out["cls"].detach(), "reg": out["reg"].detach()}
            per = out["per_sample"].detach().view(-1, len(self.qualities)).mean(1)
            return StepOutput(out["loss"].detach(), logs, per, batch["index"])
        self.policy.trained.fill_(True)
        with ctx.autocast():
            roll = self.rollout(images, labels, steps)
        for _ in range(self.ppo_epochs):  # the released code: one PPO epoch per batch (K_epochs = 1)
            with ctx.autocast():
                out = self.stage2_losses(images, labels, steps, roll)
            ctx.backward(out["loss"])
            ctx.step(self.optimizer)
        logs = {k: out[k].detach() for k in ("reward_loss", "value_loss", "entropy", "reward")}
        return StepOutput(out["loss"].detach(), logs, None, batch["index"])

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        out = self.forward_eval(images, self.test_steps(images))
        return F.softmax(out["final"].float(), dim=-1)[:, 1]

    @torch.no_grad()
    def fused_features(self, images: torch.Tensor) -> torch.Tensor:
        """The fused feature of the final prediction (Fig. 8's t-SNE)."""
        return self.forward_eval(images, self.test_steps(images))["fused"].float()
