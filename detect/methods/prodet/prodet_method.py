"""ProDet: deepfake detection with a progressive transition real → SBI → CBI → deepfake (Cheng et al.,
"Can We Leave Deepfake Data Behind in Training Deepfake Detector?", NeurIPS 2024; docs/methods/prodet.md).

Per aligned tuple batch (Algorithm 1): F = 1×1-conv(backbone(I)) for every anchor; the oriented progressive
regularizer (OPR) predicts the forgery attributes A = Ca(F) (Eq. 1), the projector turns them into an
attention map M = P(A) (Eq. 2), and the final classifier detects y = Cf(F ⊙ M) (Eq. 3). After the warm-up,
feature bridging (Eq. 4) appends mixed features of adjacent anchors with mixed attribute labels to Ca's
input. Loss (Eq. 8): L = L_d (Eq. 7) + β·L_o (Eq. 6) + γ·L_t (Eq. 5).

Variants (Tables 1–3, 5, 7) are settings of the same class: ``attribute_classifier=none`` is plain binary
detection (VHT with all anchors, DF-only with real+deepfake, BF-only with real+SBI+CBI, SBI with real+SBI);
``anchors`` chooses the anchor subset, ``bridge`` the bridged edges (named by their later anchor),
``organisation`` the arrangement, ``oriented_weight=0``/``transition_weight=0`` drop L_o/L_t.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from detect.data.anchor_tuples import AnchorTupleDataset
from detect.data.blend import BlendConfig
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.prodet.organisation import ANCHORS, check_anchors, get_organisation
from detect.methods.prodet.prodet_losses import (
    bridge,
    bridge_ratios,
    detection_loss,
    oriented_loss,
    transition_loss,
)
from detect.methods.prodet.prodet_modules import (
    AttributeClassifier,
    ClassifierHead,
    Projector,
    TransitionModule,
)
from detect.models.backbone import build_backbone


class ProDet(Method):
    """See the module docstring; every argument is a ``method.*`` config key (``conf/method/prodet.yaml``)."""

    name = "prodet"
    gradient_sync = "ddp"  # one forward of the tuple batch, one backward of L (Eq. 8)
    # Feature bridging after the warm-up feeds mixed features to Ca (and Cf), which train on the unmixed
    # features from the first step: no parameter is idle before or after the warm-up (scripts/gpu_check.py
    # counts them for every ProDet option), so DDP need not search for unused parameters.
    find_unused_parameters = False
    data_needs = frozenset({"landmarks", "aligned_groups"})

    @classmethod
    def needs_for(cls, hyper: Mapping) -> frozenset[str]:
        """Landmarks when SBI or CBI anchors are blended (from real faces); aligned groups when a deepfake
        anchor joins each real frame (the fake of its own source video)."""
        anchors = set(hyper.get("anchors") or ANCHORS)
        needs = {"landmarks"} if anchors & {"sbi", "cbi"} else set()
        if "deepfake" in anchors:
            needs.add("aligned_groups")
        return frozenset(needs)

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        anchors: Sequence[str] = ANCHORS,
        organisation: str = "r2b2d",
        attribute_classifier: str = "triplet",
        feature_dim: int = 512,
        hidden_dim: int = 256,
        oriented_weight: float = 1.0,
        transition_weight: float = 10.0,
        bridge: Sequence[str] = ("sbi", "cbi", "deepfake"),
        bridge_alpha: Sequence[float] = (0.5, 2.0),
        warmup_epochs: int = 2,
        bridge_detection: bool = False,
        shared_transition: bool = False,
        deepfake_domains: Sequence[str] | None = None,
        blend: Mapping | None = None,
        landmark_points: int = 68,
        cache_dir: str = "cache",
        seed: int = 0,
        name: str = "prodet",
    ) -> None:
        super().__init__()
        self.anchors = check_anchors(anchors)
        self.org = get_organisation(organisation)
        self.strategy = None if attribute_classifier in (None, "none") else str(attribute_classifier)
        self.beta, self.gamma = float(oriented_weight), float(transition_weight)
        self.bridge_alpha, self.warmup_epochs = tuple(bridge_alpha), int(warmup_epochs)
        self.bridge_detection = bool(bridge_detection)
        self.edges = self.org.edges(self.anchors)
        self.bridged = self._bridged_edges(list(bridge or []))
        self._check_settings()

        self.backbone = build_backbone(backbone)
        _, h, w = self.backbone.feature_shape(self.backbone.input_size)
        self.map_size = (h, w)
        self.reduce = nn.Conv2d(self.backbone.num_features, feature_dim, 1)  # 1792 → 512, no BN/activation
        self.classifier = ClassifierHead(feature_dim, 2, hidden_dim)
        if self.strategy is not None:
            n_classes = len(self.anchors)
            self.attributes = AttributeClassifier(feature_dim, self.strategy, n_classes, hidden_dim)
            self.projector = Projector(feature_dim, self.attributes.out_dims, self.map_size, hidden_dim)
        self.transitions = nn.ModuleDict()
        if self.gamma > 0:
            if shared_transition:
                self.transitions["shared"] = TransitionModule(feature_dim)
            else:
                for a, b in self.edges:
                    self.transitions[f"{a}_to_{b}"] = TransitionModule(feature_dim)
        self.shared_transition = bool(shared_transition)

        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.blend_cfg = BlendConfig.from_mapping(blend)
        self.deepfake_domains = list(deepfake_domains) if deepfake_domains else None
        self.landmark_points, self.cache_dir, self.seed = int(landmark_points), str(cache_dir), int(seed)
        self.bridging_active = self.warmup_epochs <= 0
        self.optimizer: torch.optim.Optimizer | None = None

    # -- configuration ----------------------------------------------------------------------------
    def _bridged_edges(self, later: list[str]) -> list[tuple[str, str]]:
        ends = {b: (a, b) for a, b in self.edges}
        unknown = [x for x in later if x not in ends]
        if unknown:
            raise ValueError(
                f"method.bridge={later}: {unknown} end no edge of {self.org.name} among anchors "
                f"{self.anchors}; edges: {[f'{a}->{b}' for a, b in self.edges]}"
            )
        return [ends[x] for x in later]

    def _check_settings(self) -> None:
        if self.strategy is None:
            if self.beta or self.gamma or self.bridged or self.bridge_detection:
                raise ValueError(
                    "method.attribute_classifier=none (plain binary) uses none of oriented_weight, "
                    "transition_weight, bridge, bridge_detection: set them to 0 / [] / false"
                )
        elif self.bridged and self.beta == 0 and not self.bridge_detection:
            raise ValueError(
                "bridged features are trained by L_o only: with oriented_weight=0 set bridge=[] or "
                "bridge_detection=true (manifold mixup, the paper's w/o L_o reading)"
            )
        if self.gamma < 0 or self.beta < 0:
            raise ValueError("oriented_weight and transition_weight must be >= 0")

    # -- forward pieces ---------------------------------------------------------------------------
    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """F: the reduced backbone feature map [N, C, h, w]."""
        return self.reduce(self.backbone.forward_features(images))

    def attend(self, feature: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(F ⊙ P(Ca(F)), Ca's logits); plain binary: (F, [])."""
        if self.strategy is None:
            return feature, []
        logits = self.attributes(feature)
        return feature * self.projector(feature, logits), logits

    def _transition(self, a: str, b: str) -> TransitionModule:
        return self.transitions["shared" if self.shared_transition else f"{a}_to_{b}"]

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> AnchorTupleDataset:
        return AnchorTupleDataset(
            table,
            pipeline,
            anchors=self.anchors,
            blend=self.blend_cfg,
            cache_dir=self.cache_dir,
            train=True,
            seed=self.seed,
            deepfake_domains=self.deepfake_domains,
            landmark_points=self.landmark_points,
        )

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext) -> None:
        self.bridging_active = epoch >= self.warmup_epochs
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def losses(self, images: torch.Tensor, anchor_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """All loss terms for a tuple batch: ``images`` [B, A, 3, H, W], ``anchor_ids`` [B, A] (canonical
        ids, the same order in every row). Returns per-image ``detection`` [A·B] (anchor-major) and the
        scalar ``loss_d``, ``loss_o``, ``loss_t``, ``loss``, plus ``ca_batch`` (Ca's input size)."""
        b, a = images.shape[:2]
        x = images.transpose(0, 1).reshape(a * b, *images.shape[2:])
        ids = anchor_ids.transpose(0, 1).reshape(-1)
        order = [ANCHORS[int(k)] for k in anchor_ids[0]]
        fake = (ids != ANCHORS.index("real")).float()
        feature = self.feature_map(x)
        per_anchor = dict(zip(order, feature.split(b), strict=True))
        out: dict[str, torch.Tensor] = {}

        attended, logits = self.attend(feature)
        det_logits = self.classifier(attended)
        det = detection_loss(det_logits, fake)
        det_terms = [det]
        zero = feature.new_zeros(()).float()
        loss_o, n_ca = zero, 0
        if self.strategy is not None:
            targets = self._attribute_targets(ids)
            mixed, mixed_targets, mixed_fake = self._bridge(per_anchor, targets, order, b)
            ca_logits = logits
            if mixed is not None:
                mixed_logits = self.attributes(mixed)
                ca_logits = [torch.cat([lg, m], 0) for lg, m in zip(logits, mixed_logits, strict=True)]
                targets = torch.cat([targets, mixed_targets], 0)
                if self.bridge_detection:
                    mixed_det = self.classifier(mixed * self.projector(mixed, mixed_logits))
                    det_terms.append(detection_loss(mixed_det, mixed_fake))
            n_ca = ca_logits[0].shape[0]
            if self.beta > 0:
                loss_o = oriented_loss(ca_logits, targets, self.strategy).mean()
        loss_t = zero
        if self.gamma > 0:
            pred = [self._transition(s, t)(per_anchor[s]) for s, t in self.edges]
            loss_t = transition_loss(pred, [per_anchor[t] for _, t in self.edges])
        loss_d = torch.cat(det_terms).mean()
        out.update(
            detection=det,
            loss_d=loss_d,
            loss_o=loss_o,
            loss_t=loss_t,
            loss=loss_d + self.beta * loss_o + self.gamma * loss_t,
            ca_batch=torch.tensor(n_ca),
        )
        return out

    def _attribute_targets(self, ids: torch.Tensor) -> torch.Tensor:
        if self.strategy == "multiclass":
            return self.org.class_targets(ids, self.anchors)
        return self.org.attribute_targets(ids)

    def _bridge(self, per_anchor: dict, targets: torch.Tensor, order: list[str], b: int):
        """Mixed features, their mixed attribute targets and fake labels for the bridged edges (or Nones)."""
        if not (self.bridging_active and self.bridged):
            return None, None, None
        t = dict(zip(order, targets.split(b), strict=True))
        feats, tgts, fakes = [], [], []
        for early, late in self.bridged:
            lam = bridge_ratios(b, self.bridge_alpha, per_anchor[early].device)
            feats.append(bridge(per_anchor[early], per_anchor[late], lam))
            tgts.append(bridge(t[early], t[late], lam))
            y = torch.full((b,), float(early != "real"), device=lam.device)
            fakes.append(bridge(y, torch.ones_like(y), lam))
        return torch.cat(feats), torch.cat(tgts), torch.cat(fakes)

    def training_losses(self, batch: Mapping, ctx: StepContext) -> dict[str, torch.Tensor]:
        """``losses`` of a tuple batch under autocast (the forward ``ctx.forward`` runs)."""
        with ctx.autocast():
            return self.losses(batch["images"], batch["anchors"])

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        out = ctx.forward(self.training_losses, batch, ctx)
        ctx.backward(out["loss"])
        ctx.step(self.optimizer)
        logs = {k: out[k].detach() for k in ("loss_d", "loss_o", "loss_t")}  # synced only when logged
        logs["bridging"] = float(self.bridging_active)
        indices = batch["indices"].transpose(0, 1).reshape(-1)
        return StepOutput(out["loss"].detach(), logs, out["detection"].detach(), indices)

    # -- inference --------------------------------------------------------------------------------
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Cf's 2-way logits (Eq. 3)."""
        return self.classifier(self.attend(self.feature_map(images))[0])

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).float().softmax(-1)[:, 1]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled feature fed to the final classifier, GAP(F ⊙ M) [N, C] (mPD, t-SNE, Fig. 4a)."""
        return self.attend(self.feature_map(images))[0].float().mean(dim=(2, 3))

    @torch.no_grad()
    def attribute_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Ca's attribute probabilities [N, 3] (triplet/multilabel) or class probabilities (multiclass)."""
        if self.strategy is None:
            raise ValueError("attribute_classifier=none has no attribute heads")
        return self.attributes.probabilities(self.attributes(self.feature_map(images)))
