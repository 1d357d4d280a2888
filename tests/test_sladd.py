"""SLADD (Chen et al., CVPR 2022): the synthesiser trained by policy gradient with the detector's loss as its
reward (on a fixed batch its update raises the detector's loss), the REINFORCE and AM-softmax losses and
Eq. 4 against hand computations, the blends (alpha / ratio / Poisson / none) against their formulas, the
region masks inside the regions they claim, the seeded data view, one update reaching every parameter with
each loss term logged, both recipes' configs, and a smoke run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import compose, cpu_step_context, tiny_df_train_table
from step_probe import (
    predicts_probabilities,
    short_smoke_metrics,
    smoke_method,
    spy_step_gradients,
    without_gradient,
)
from torch import nn

import detect.methods.sladd as sladd_mod
from detect.data.blend import BlendConfig
from detect.data.sladd_pairs import REGIONS, SladdPairDataset, part_segment, postprocess_mask, region_mask
from detect.data.transforms import Pipeline
from detect.methods.sladd import (
    BLEND_TYPES,
    Sladd,
    action_log_prob,
    am_softmax_loss,
    policy_loss,
    synthesise,
)

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
HALF = (0.5, 0.5, 0.5)
PLAIN = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


def _batch(n: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    regions = torch.zeros(n, len(REGIONS), 64, 64)
    regions[:, :, 16:48, 16:48] = torch.rand(n, len(REGIONS), 32, 32, generator=g)
    return {
        "image": torch.rand(n, 3, 64, 64, generator=g) * 2 - 1,
        "source": torch.rand(n, 3, 64, 64, generator=g) * 2 - 1,
        "regions": regions,
        "label": torch.tensor([0.0] * (n - 1) + [1.0]),
        "index": torch.arange(n),
    }


# -- losses by hand ---------------------------------------------------------------------------------------
def test_am_softmax_by_hand():
    z = torch.tensor([[0.2, 0.7], [0.9, -0.1]])
    y = torch.tensor([1, 0])
    want = []
    for row, t in zip(z.tolist(), y.tolist(), strict=True):
        a = [30 * (v - (0.5 if k == t else 0.0)) for k, v in enumerate(row)]
        want.append(-a[t] + math.log(sum(math.exp(v) for v in a)))
    torch.testing.assert_close(am_softmax_loss(z, y, margin=0.5), torch.tensor(want))


def test_policy_loss_by_hand():
    lp, h, r = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([2.0, 1.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])
    # baseline mean(r) = 2: advantages -1, 1, 0
    want = -((-1.0 * -1) + (-2.0 * 1) + 0) / 3 - 1e-5 * 2.0
    assert float(policy_loss(lp, h, r, "mean", 1e-5)) == pytest.approx(want)
    want_none = -((-1.0 * 1) + (-2.0 * 3) + (-0.5 * 2)) / 3
    assert float(policy_loss(lp, h, r, "none", 0.0)) == pytest.approx(want_none)
    with pytest.raises(ValueError, match="reward_baseline"):
        policy_loss(lp, h, r, "ema", 0.0)


def test_action_log_prob_by_hand():
    rl, tl, z = (
        torch.tensor([[0.0, math.log(3.0)]]),
        torch.tensor([[1.0, 1.0, 1.0, 1.0]]),
        torch.tensor([0.0]),
    )
    lp, h = action_log_prob(rl, tl, z, torch.tensor([1]), torch.tensor([2]))
    assert float(lp) == pytest.approx(math.log(0.75) + math.log(0.25) + math.log(0.5))
    h_region = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(h) == pytest.approx(h_region + math.log(4) + 0.5 * math.log(2))


def test_reinforce_raises_log_prob_of_above_baseline_actions():
    """A tabular policy (one row of logits per sample): one SGD step on the REINFORCE loss raises the
    log-probability of the action whose reward is above the batch mean and lowers the one below."""
    logits = nn.Parameter(torch.zeros(3, 4))
    actions, reward = torch.tensor([0, 1, 2]), torch.tensor([3.0, 1.0, 2.0])
    before = F.log_softmax(logits, 1).gather(1, actions[:, None]).squeeze(1).detach()
    lp = F.log_softmax(logits, 1).gather(1, actions[:, None]).squeeze(1)
    policy_loss(lp, torch.zeros(3), reward, "mean", 0.0).backward()
    torch.optim.SGD([logits], lr=0.1).step()
    after = F.log_softmax(logits, 1).gather(1, actions[:, None]).squeeze(1).detach()
    assert after[0] > before[0] and after[1] < before[1] and after[2] == pytest.approx(float(before[2]))


@pytest.mark.parametrize("baseline", ["mean", "none"])
def test_synthesiser_update_raises_the_detectors_loss(monkeypatch, baseline):
    """On a fixed batch, the synthesiser's step (detector frozen at lr 0) moves the policy so that the
    importance-weighted detector loss of the actions it took, Σ π'(a)/π(a)·(L − b), rises above its value
    at the old policy (0 with the mean baseline; Σ L with none)."""
    torch.manual_seed(0)
    m = Sladd(
        TINY,
        {"_target_": "torch.optim.SGD", "lr": 0.0},
        synth_optim={"_target_": "torch.optim.SGD", "lr": 1e-2},
        reward_baseline=baseline,
        entropy_beta=0.0,
    )
    m.policy.drop.p = 0.0
    m.configure_optimizers(1, 1)
    m.train()
    seen = {}
    sample = sladd_mod.sample_actions

    def spy(*args, **kw):
        out = sample(*args, **kw)
        seen["region"], seen["type"], seen["log_prob"] = out[0], out[1], out[3].detach()
        return out

    monkeypatch.setattr(sladd_mod, "sample_actions", spy)
    batch = _batch(6)
    out = m.fit_step(batch, cpu_step_context())
    real = batch["label"] == 0
    # the reward: each real's detector loss (mean baseline) or the batch's loss (DeepfakeBench)
    reward = (
        out.sample_losses[real] if baseline == "mean" else out.sample_losses.mean().expand(int(real.sum()))
    )
    adv = reward - reward.mean() if baseline == "mean" else reward
    assert float(adv.abs().sum()) > 0
    with torch.no_grad():
        r_logits, t_logits, z = m.policy(batch["image"], batch["source"])
    new_lp, _ = action_log_prob(r_logits, t_logits, z, seen["region"], seen["type"])
    ratio = (new_lp - seen["log_prob"])[real].exp()
    j_new, j_old = float((ratio * adv).sum()), float(adv.sum())
    assert j_new > j_old
    assert out.logs["loss_synthesiser"] == pytest.approx(
        float(policy_loss(seen["log_prob"][real], torch.zeros(int(real.sum())), reward, baseline, 0.0))
    )


def test_detector_losses_by_hand():
    torch.manual_seed(0)
    m = Sladd(TINY, ADAM)
    out = {
        "logit": torch.tensor([0.5, -1.0]),
        "map": torch.full((2, 2, 2), 0.5),
        "type": torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 0.0, 0.0, 0.0, 1.0]]),
        "mag": torch.tensor([0.3, 0.9]),
    }
    masks = torch.zeros(2, 4, 4)
    masks[0, :2, :2] = 1.0  # the top-left map cell fully forged
    syn = {
        "labels": torch.tensor([1.0, 0.0]),
        "masks": masks,
        "map_known": torch.tensor([1.0, 1.0]),
        "types": torch.tensor([2, 3]),
        "ratio": torch.tensor([0.7, 0.2]),
        "mag_mask": torch.tensor([1.0, 0.0]),
    }
    t = m.detector_losses(out, syn)
    cls = [math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(-1.0))]
    lmap = [(0.25 + 3 * 0.25) / 4, 0.25]
    lmag = [(0.3 - 0.7) ** 2, 0.0]
    ltype = am_softmax_loss(out["type"], syn["types"]).tolist()
    torch.testing.assert_close(t["cls"], torch.tensor(cls))
    torch.testing.assert_close(t["map"], torch.tensor(lmap))
    torch.testing.assert_close(t["mag"], torch.tensor(lmag))
    want = [cls[i] + 0.1 * lmap[i] + 0.05 * ltype[i] + 0.1 * lmag[i] for i in range(2)]
    torch.testing.assert_close(t["total"], torch.tensor(want))


# -- blends -------------------------------------------------------------------------------------------------
def test_synthesise_blends_by_the_actions():
    b = _batch(5)
    b["label"] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    region = torch.tensor([0, 3, 5, 9, 1])
    btype = torch.tensor([0, 2, 3, 1, 0])  # alpha, ratio, none, poisson, (a fake: untouched)
    ratio = torch.tensor([0.9, 0.4, 0.5, 0.5, 0.5])
    s = synthesise(b["image"], b["source"], b["regions"], b["label"], region, btype, ratio, HALF, HALF)
    m0, m1 = b["regions"][0, 0], b["regions"][1, 3]
    torch.testing.assert_close(s["images"][0], m0 * b["source"][0] + (1 - m0) * b["image"][0])
    w = 0.4 * m1
    torch.testing.assert_close(s["images"][1], w * b["source"][1] + (1 - w) * b["image"][1])
    assert torch.equal(s["images"][2], b["image"][2]) and torch.equal(s["images"][4], b["image"][4])
    inside = b["regions"][3, 9] > 0
    assert not torch.allclose(s["images"][3][:, inside], b["image"][3][:, inside])
    # Poisson: outside the mask the target is kept (up to the uint8 round trip)
    assert torch.allclose(s["images"][3][:, ~inside], b["image"][3][:, ~inside], atol=2 / 255 / 0.5)
    assert s["labels"].tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert s["types"].tolist() == [0, 2, 3, 1, 4] and s["mag_mask"].tolist() == [0, 1, 0, 0, 0]
    assert torch.equal(s["masks"][2], torch.zeros(64, 64)) and torch.equal(s["masks"][0], m0)
    assert s["map_known"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert BLEND_TYPES == ("alpha", "poisson", "ratio", "none")


def test_empty_region_leaves_the_real_untouched():
    b = _batch(2)
    b["regions"][0] = 0.0
    s = synthesise(
        b["image"], b["source"], b["regions"], b["label"], torch.tensor([2, 2]), torch.tensor([0, 0]),
        torch.tensor([1.0, 1.0]), HALF, HALF,
    )  # fmt: skip
    assert s["labels"][0] == 0.0 and s["types"][0] == 3 and torch.equal(s["images"][0], b["image"][0])


# -- region masks ---------------------------------------------------------------------------------------
def _landmarks() -> np.ndarray:
    rng = np.random.default_rng(0)
    lm = rng.uniform(20, 40, size=(68, 2))
    lm[36], lm[39], lm[42], lm[45] = (18, 25), (28, 25), (36, 25), (46, 25)
    lm[33], lm[48], lm[54] = (32, 38), (24, 48), (40, 48)
    return lm


def _near_segment(seg: np.ndarray, half: int, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    p = np.stack([xx, yy], -1).astype(np.float64)
    a, b = seg
    t = np.clip(((p - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-9), 0, 1)
    d = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)
    return d <= half + 1.5


@pytest.mark.parametrize("region", REGIONS)
def test_region_mask_lies_within_its_parts(region):
    lm, shape = _landmarks(), (64, 64)
    mask = region_mask(lm, region, shape) > 0
    claimed = np.zeros(shape, bool)
    for part in region.split("+"):
        seg, half = part_segment(lm, part)
        near = _near_segment(seg, half, shape)
        assert mask[near].any()  # every part is drawn
        claimed |= near
    assert mask.any() and bool((mask <= claimed).all())


def test_postprocessed_mask_stays_near_its_region():
    lm, shape = _landmarks(), (64, 64)
    hard = region_mask(lm, "nose+mouth", shape)
    grown = cv2.dilate(hard, np.ones((2 * 17 + 1, 2 * 17 + 1), np.uint8)) > 0  # dilate 9 + blur radius 8
    for s in range(8):
        soft = postprocess_mask(hard, np.random.default_rng(s), BlendConfig())
        assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
        assert bool((soft[~grown] == 0).all())


# -- the data view ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    return tiny_df_train_table(tmp_path_factory)


def test_items_are_seeded_and_masks_move_with_the_image(table, tmp_path):
    flip = [{"_target_": "albumentations.HorizontalFlip", "p": 1.0}]
    a = SladdPairDataset(table, Pipeline(**PLAIN), BlendConfig(), tmp_path, seed=3)
    b = SladdPairDataset(table, Pipeline(augment=flip, **PLAIN), BlendConfig(), tmp_path, seed=3)
    real = int(np.flatnonzero(a.labels == 0)[0])
    fake = int(np.flatnonzero(a.labels == 1)[0])
    img, src, reg = a.raw_item(real)
    img2, src2, reg2 = b.raw_item(real)
    assert np.array_equal(src, src2) and np.array_equal(reg, reg2)  # seeded by (seed, epoch, item)
    assert reg.shape == (len(REGIONS), *img.shape[:2]) and reg.max() > 0 and not np.array_equal(src, img)
    b.set_epoch(1)
    assert not np.array_equal(reg, b.raw_item(real)[2])
    b.set_epoch(0)
    item = b[real]
    assert item["image"].shape == item["source"].shape == (3, 64, 64) and item["label"] == 0.0
    want = cv2.resize(reg[4][:, ::-1].copy(), (64, 64), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(item["regions"][4].numpy(), want, atol=1e-6)
    f = a[fake]
    assert (
        f["label"] == 1.0 and float(f["regions"].abs().sum()) == 0.0 and torch.equal(f["image"], f["source"])
    )


# -- one step, configs, smoke ------------------------------------------------------------------------------
def test_every_trainable_parameter_gets_a_gradient_in_one_step():
    torch.manual_seed(0)
    m = Sladd(TINY, ADAM)
    m.configure_optimizers(1, 1)
    m.train()
    ctx = cpu_step_context()
    seen = spy_step_gradients(m, ctx)
    torch.manual_seed(1)
    b = _batch(8)
    out = m.fit_step(b, ctx)
    missing = without_gradient(m, seen)
    assert not missing, missing
    assert {"loss_cls", "loss_map", "loss_type", "loss_mag", "loss_synthesiser"} <= set(out.logs)
    assert out.sample_losses.shape == (8,)


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=sladd"]), compose(["method=sladd/dfb"])
    assert paper.backbone.timm_name == dfb.backbone.timm_name == "legacy_xception"
    assert paper.input.size == dfb.input.size == 256 and list(dfb.input.mean) == [0.5] * 3
    assert dict(paper.method.weights) == {"map": 0.1, "type": 0.05, "mag": 0.1}
    assert paper.method.reward_baseline == dfb.method.reward_baseline == "none"
    assert (paper.method.am_margin, dfb.method.am_margin) == (0.45, 0.5)
    assert list(paper.method.synth_optim.betas) == [0.9, 0.999] and paper.trainer.epochs == 30
    assert paper.method.entropy_beta == dfb.method.entropy_beta == 1e-5
    assert dfb.method.synth_optim.lr == pytest.approx(dfb.method.optim.lr / 4)
    assert dfb.method.synth_optim.betas[0] == pytest.approx(0.9 / 4)
    assert (dfb.trainer.epochs, dfb.trainer.batch_size, dfb.protocol.frames.train) == (40, 32, 8)
    assert dfb.method.name == "sladd_dfb" and dfb.method.optim.weight_decay == 5e-4
    smoke, m = smoke_method("sladd/dfb")
    assert isinstance(m, Sladd) and m.needs_for(smoke.method) == frozenset({"landmarks"})
    assert predicts_probabilities(m, size=smoke.backbone.input_size)  # images only


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("preset", ["sladd", "sladd/dfb"])
def test_smoke_run_end_to_end(synthetic_cache, tmp_path, preset):
    metrics = short_smoke_metrics(synthetic_cache, tmp_path, preset)
    assert "FF++" in metrics and 0.0 <= metrics["FF++"]["frame_auc"] <= 1.0


def test_parameter_counts_match_deepfakebench_and_the_map_reads_block7():
    """Ours against the manifest of DeepfakeBench's SLADD: the detector has one logit instead of two (one
    row of ``last_linear``: 2048 + 1 fewer), the synthesiser the same count; the map reads block7."""
    spec = json.loads((Path(__file__).parent / "data" / "dfb_manifests" / "dfb_sladd.json").read_text())
    buffers = ("running_mean", "running_var", "num_batches_tracked")

    def count(prefix: str) -> int:
        return sum(
            math.prod(s) for k, s in spec["keys"].items() if k.startswith(prefix) and not k.endswith(buffers)
        )

    xception = {"name": "xception", "timm_name": "legacy_xception", "input_size": 64, "pretrained": False}
    m = Sladd(xception, ADAM, map_layers={"legacy_xception": "block7"})
    detector = sum(p.numel() for p in m.detector_params())
    assert detector + 2048 + 1 == count("backbone.")
    assert sum(p.numel() for p in m.policy.parameters()) == count("synthesizer.")
    assert m.body.names[m.tap] == "block7" and m.map_head[0].in_channels == 728
