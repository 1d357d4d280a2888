"""SLADD: Chen, Zhang, Song, Liu and Wang, "Self-supervised Learning of Adversarial Example: Towards Good
Generalizations for Deepfake Detection", CVPR 2022 (arXiv:2203.12208, Sec. 3, Fig. 3; equation numbers are
not cited: the paper's text is not in the project); the authors' code (liangchen527/SLADD) for the training
numbers; DeepfakeBench ``sladd_detector.py`` / ``utils/sladd_api.py`` for ``method=sladd/dfb``.

* **Synthesiser** (the generator of Fig. 3): a policy network G (the detector's backbone with a 6-channel
  input, target ‖ source, :class:`PolicyNet`) outputs the forgery configuration as actions: the region
  ``r`` among the R region masks (categorical, :data:`detect.data.sladd_pairs.REGIONS`), the blending type
  ``b`` (categorical: alpha blend, Poisson blend, ratio blend, none) and the blending ratio ``m`` (``σ(z)``:
  the continuous action taken at its mean, ``log σ(z)`` as its log-probability and ``−σ(z)·log σ(z)`` as its
  entropy, as the released code). A real target is forged by blending the colour-corrected source into it
  inside the chosen region (:func:`synthesise`); the random parts of the synthesis (source face, mask
  deformation and blur) come from the data workers (:mod:`detect.data.sladd_pairs`), seeded per (seed,
  epoch, sample).
* **Detector** (the discriminator of Fig. 3): Xception classifies real/fake and predicts the forgery
  configuration as self-supervised auxiliary tasks: the region map from the middle flow (block7, stride 16:
  a 3 × 3 depthwise and a 1 × 1 convolution, sigmoid; target: the blend mask resized to the map), the
  blending type (5 classes: the three blends, untouched real, original fake) and the ratio (regressed where
  the type is the ratio blend). ``L = L_cls + 0.1·L_map + 0.05·L_type + 0.1·L_mag`` (:meth:`Sladd.
  detector_losses`): ``L_cls`` cross-entropy, ``L_map``/``L_mag`` mean squared errors, ``L_type`` AM-softmax
  (:func:`am_softmax_loss`, cosine margin 0.45 (authors) / 0.5 (DeepfakeBench), scale 30).
* **Adversarial training**: G maximises the detector's loss by REINFORCE (:func:`policy_loss`):
  ``L_G = −mean_i(log π(a_i)·(R_i − b)) − β·mean_i H(π_i)``, ``log π(a) = log π(r) + log π(b) + log σ(z)``,
  β = 1e-5; ``reward_baseline: none`` (the authors' code and DeepfakeBench: every action rewarded with the
  batch's detector loss) or ``mean`` (each real's own loss minus the batch mean). G has its own Adam (lr/4).

See docs/methods/sladd.md for every reading decision.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.data.blend import BlendConfig
from detect.data.sladd_pairs import REGIONS, SladdPairDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.models.backbone import build_backbone
from detect.models.staged_backbone import StagedBackbone

BLEND_TYPES = ("alpha", "poisson", "ratio", "none")
#: detector type classes: the three blends, then an untouched real and an original fake
TYPE_REAL, TYPE_FAKE = 3, 4
BASELINES = ("mean", "none")


def am_softmax_loss(logits: Tensor, target: Tensor, margin: float = 0.45, scale: float = 30.0) -> Tensor:
    """AM-softmax (cosine margin) per sample: ``CE(s·(z − m·onehot(y)), y)``, the head's outputs ``z`` read
    as cosines (DeepfakeBench's ``am_softmax`` with ``margin_type='cos'``, γ = 0, t = 1)."""
    z = logits.float() - margin * F.one_hot(target, logits.shape[1]).float()
    return F.cross_entropy(scale * z, target, reduction="none")


def policy_loss(log_prob: Tensor, entropy: Tensor, reward: Tensor, baseline: str, beta: float) -> Tensor:
    """REINFORCE: ``−mean(log π(a)·(R − b)) − β·mean(H)`` with ``R`` detached, ``b`` the batch mean
    of ``R`` (``mean``) or 0 (``none``)."""
    if baseline not in BASELINES:
        raise ValueError(f"reward_baseline={baseline!r}; use one of {BASELINES}")
    r = reward.detach().float()
    adv = r - r.mean() if baseline == "mean" else r
    return -(log_prob.float() * adv).mean() - beta * entropy.float().mean()


class PolicyNet(nn.Module):
    """G: backbone on target ‖ source (6 channels), pooled, dropout 0.5, three heads (region, type, ratio)."""

    def __init__(self, backbone: Mapping, n_regions: int, n_types: int) -> None:
        super().__init__()
        self.body = StagedBackbone(build_backbone(backbone))
        self.body.widen_input(6)
        f = self.body.backbone.num_features
        self.drop = nn.Dropout(0.5)
        self.region_fc, self.type_fc, self.mag_fc = (
            nn.Linear(f, n_regions),
            nn.Linear(f, n_types),
            nn.Linear(f, 1),
        )

    def forward(self, target: Tensor, source: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.body.nchw(self.body.run(torch.cat([target, source], 1)))
        x = self.drop(self.body.backbone.pool(x))
        return self.region_fc(x), self.type_fc(x), self.mag_fc(x).squeeze(1)


def action_log_prob(
    region_logits: Tensor, type_logits: Tensor, mag_logit: Tensor, region: Tensor, btype: Tensor
) -> tuple[Tensor, Tensor]:
    """``(log π(a), H(π))`` per sample of the actions (region, type, ratio at σ(z)): the sum over the three
    actions of ``log π`` and of the entropies (float32)."""
    lp, h = [], []
    for logits, a in ((region_logits, region), (type_logits, btype)):
        logp = F.log_softmax(logits.float(), 1)
        lp.append(logp.gather(1, a[:, None]).squeeze(1))
        h.append(-(logp.exp() * logp).sum(1))
    z = mag_logit.float()
    lp.append(F.logsigmoid(z))
    h.append(-torch.sigmoid(z) * F.logsigmoid(z))
    return lp[0] + lp[1] + lp[2], h[0] + h[1] + h[2]


def sample_actions(
    region_logits: Tensor, type_logits: Tensor, mag_logit: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(region, type, ratio, log π(a), entropy) per sample; categorical draws, the ratio at σ(z)."""
    region, btype = (
        torch.multinomial(F.softmax(x.detach().float(), 1), 1, generator=generator).squeeze(1)
        for x in (region_logits, type_logits)
    )
    log_prob, entropy = action_log_prob(region_logits, type_logits, mag_logit, region, btype)
    return region, btype, torch.sigmoid(mag_logit.detach().float()), log_prob, entropy


def poisson_blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """OpenCV's seamless clone (normal) of ``source`` into ``target`` inside ``mask > 0`` (uint8 HxWx3)."""
    m = (mask > 0).astype(np.uint8) * 255
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = 0
    x, y, w, h = cv2.boundingRect(m)
    if w == 0:
        return target
    return cv2.seamlessClone(source, target, m, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)


def synthesise(
    target: Tensor,
    source: Tensor,
    regions: Tensor,
    label: Tensor,
    region: Tensor,
    btype: Tensor,
    ratio: Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    min_area: float = 0.005,
) -> dict[str, Tensor]:
    """Blend the real targets with their sources by the actions. Returns ``images``, ``labels``,
    ``masks`` (the blend weight, 0 for untouched reals), ``types`` (detector classes), ``mag_mask`` (ratio
    blends), ``map_known`` (0 for original fakes, whose mask is unknown here) and ``forged``."""
    n = target.shape[0]
    idx = torch.arange(n, device=target.device)
    mask = regions[idx, region].float()
    real = label == 0
    forged = real & (btype != BLEND_TYPES.index("none")) & (mask.mean((1, 2)) >= min_area)
    weight = torch.where(
        (btype == BLEND_TYPES.index("ratio"))[:, None, None], mask * ratio[:, None, None], mask
    )
    weight = weight * forged[:, None, None]
    images = weight[:, None] * source + (1 - weight[:, None]) * target
    poisson = (forged & (btype == BLEND_TYPES.index("poisson"))).nonzero().flatten().tolist()
    if poisson:
        m = torch.tensor(mean, device=target.device)[:, None, None]
        s = torch.tensor(std, device=target.device)[:, None, None]
        images = images.clone()
        for i in poisson:
            to_u8 = lambda t: (t * s + m).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()  # noqa: E731
            out = poisson_blend(to_u8(target[i]), to_u8(source[i]), mask[i].cpu().numpy())
            images[i] = (torch.from_numpy(out).to(target.device).permute(2, 0, 1).float() / 255 - m) / s
    types = torch.where(forged, btype, torch.where(real, TYPE_REAL, TYPE_FAKE))
    return {
        "images": images,
        "labels": (~real | forged).float(),
        "masks": torch.where(forged[:, None, None], mask, torch.zeros_like(mask)),
        "types": types,
        "mag_mask": (forged & (btype == BLEND_TYPES.index("ratio"))).float(),
        "map_known": real.float(),
        "forged": forged,
        "ratio": ratio,
    }


class Sladd(Method):
    """Xception detector with region-map / type / ratio heads, trained against an RL forgery synthesiser."""

    name = "sladd"
    gradient_sync = "explicit"  # two optimisers; the policy's loss is not the detector's
    data_needs = frozenset({"landmarks"})

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        synth_optim: Mapping | None = None,
        weights: Mapping | None = None,
        am_margin: float = 0.45,
        am_scale: float = 30.0,
        reward_baseline: str = "none",
        entropy_beta: float = 1e-5,
        map_stride: int = 16,
        map_layers: Mapping[str, str] | None = None,
        blend: Mapping | None = None,
        landmark_points: int = 68,
        cache_dir: str = "cache",
        seed: int = 0,
        name: str = "sladd",
    ) -> None:
        super().__init__()
        if reward_baseline not in BASELINES:
            raise ValueError(f"method.reward_baseline={reward_baseline!r}; use one of {BASELINES}")
        self.body = StagedBackbone(build_backbone(backbone))
        bb = self.body.backbone
        self.mean, self.std = bb.mean, bb.std
        # the region map reads the layer named for this backbone (Xception: block7, the released code),
        # else the last layer at ``map_stride``
        layer = dict(map_layers or {}).get(bb.timm_name)
        self.tap = self.body.index(layer) if layer else self.body.last_at(int(map_stride))
        c = self.body.shape(self.tap)[0]
        self.map_head = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, 1, 1, bias=False)
        )
        f = bb.num_features
        self.cls_fc, self.type_fc, self.mag_fc = (
            nn.Linear(f, 1),
            nn.Linear(f, len(BLEND_TYPES) + 1),
            nn.Linear(f, 1),
        )
        self.policy = PolicyNet(backbone, len(REGIONS), len(BLEND_TYPES))
        w = {"map": 0.1, "type": 0.05, "mag": 0.1, **dict(weights or {})}
        self.weights = {k: float(w[k]) for k in ("map", "type", "mag")}
        self.am_margin, self.am_scale = float(am_margin), float(am_scale)
        self.reward_baseline, self.entropy_beta = reward_baseline, float(entropy_beta)
        self.optim_cfg, self.scheduler_cfg, self.synth_optim_cfg = optim, scheduler, synth_optim
        self.blend_cfg = BlendConfig.from_mapping(blend)
        self.landmark_points, self.cache_dir, self.seed = int(landmark_points), cache_dir, int(seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self.synth_optimizer: torch.optim.Optimizer | None = None

    # -- model ------------------------------------------------------------------------------------
    def detector_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("policy.")]

    def detect(self, images: Tensor) -> dict[str, Tensor]:
        """``logit [N]``, ``map [N, h, w]`` (sigmoid), ``type [N, 5]``, ``mag [N]``."""
        mid = self.body.run(images, 0, self.tap + 1)
        fmap = self.body.nchw(self.body.run(mid, self.tap + 1))
        x = self.body.backbone.pool(fmap)
        region = torch.sigmoid(self.map_head(self.body.nchw(mid))).squeeze(1)
        return {
            "logit": self.cls_fc(x).squeeze(1),
            "map": region,
            "type": self.type_fc(x),
            "mag": self.mag_fc(x).squeeze(1),
        }

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.detect(images)["logit"].float())

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self.optimizer = build_optimizer(self.optim_cfg, self.detector_params())
        sched, interval = build_scheduler(
            dict(self.scheduler_cfg or {}), self.optimizer, epochs, steps_per_epoch
        )
        syn = dict(self.synth_optim_cfg or self.optim_cfg)
        self.synth_optimizer = build_optimizer(syn, self.policy.parameters())
        return [
            OptimizerSpec("model", self.optimizer, sched, interval),
            OptimizerSpec("synthesiser", self.synth_optimizer, None, "step"),
        ]

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> SladdPairDataset:
        return SladdPairDataset(
            table, pipeline, self.blend_cfg, self.cache_dir, self.landmark_points, train=True, seed=self.seed
        )

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext) -> None:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def detector_losses(self, out: Mapping[str, Tensor], syn: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-sample terms of the detector's loss and their weighted total (float32)."""
        cls = F.binary_cross_entropy_with_logits(out["logit"].float(), syn["labels"], reduction="none")
        target = F.interpolate(
            syn["masks"][:, None].float(), size=out["map"].shape[-2:], mode="bilinear", align_corners=False
        )
        pix = ((out["map"].float() - target[:, 0]) ** 2).flatten(1).mean(1)
        lmap = pix * syn["map_known"]
        ltype = am_softmax_loss(out["type"], syn["types"], self.am_margin, self.am_scale)
        lmag = (out["mag"].float() - syn["ratio"].float()) ** 2 * syn["mag_mask"]
        w = self.weights
        total = cls + w["map"] * lmap + w["type"] * ltype + w["mag"] * lmag
        return {"cls": cls, "map": lmap, "type": ltype, "mag": lmag, "total": total}

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        target, source, regions, label = batch["image"], batch["source"], batch["regions"], batch["label"]
        with ctx.autocast():
            r_logits, t_logits, z = self.policy(target, source)
        region, btype, ratio, log_prob, entropy = sample_actions(r_logits, t_logits, z)
        with torch.no_grad():
            syn = synthesise(target, source, regions, label, region, btype, ratio, self.mean, self.std)
        with ctx.autocast():
            out = self.detect(syn["images"])
        terms = self.detector_losses(out, syn)
        loss = terms["total"].mean()
        reward = terms["total"] if self.reward_baseline == "mean" else loss.expand_as(terms["total"])
        took = label == 0  # only the reals' actions were taken
        if took.any():
            syn_loss = policy_loss(
                log_prob[took], entropy[took], reward[took], self.reward_baseline, self.entropy_beta
            )
        else:
            syn_loss = 0.0 * log_prob.sum()
        ctx.backward(loss + syn_loss)
        ctx.step(self.optimizer)
        ctx.step(self.synth_optimizer)
        logs = {f"loss_{k}": terms[k].mean().detach() for k in ("cls", "map", "type", "mag")}
        logs["loss_synthesiser"] = syn_loss.detach()
        logs["policy_entropy"] = entropy.mean().detach()
        logs["forged_fraction"] = syn["forged"].float().mean()
        return StepOutput(loss.detach(), logs, terms["total"].detach(), batch["index"])

    def run_info(self) -> dict:
        return {
            "weights": self.weights,
            "reward_baseline": self.reward_baseline,
            "regions": list(REGIONS),
            "blend_types": list(BLEND_TYPES),
        }
