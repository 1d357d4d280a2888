"""Face X-ray (Li et al., CVPR 2020): the boundary target B = 4·M·(1−M), the map and class losses against
hand computations, the blended pairs (mask inside the hull it claims, only the masked region changed,
seeded and reproducible, the mask moved by the shared augmentation), the multi-resolution HRNet features,
the frozen-backbone warm-up and the learning-rate tail, one update reaching every parameter, both recipes'
configs, and a smoke run end to end."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose, cpu_step_context, tiny_df_train_table
from step_probe import (
    graded_exactly_the_trainable,
    predicts_probabilities,
    short_smoke_metrics,
    smoke_method,
    spy_step_gradients,
)
from torch import nn

from detect.data.blend import BlendConfig
from detect.data.synth_pairs import CrossBlendSynthesiser, SynthPairDataset
from detect.data.transforms import Pipeline
from detect.methods.face_xray import (
    FaceXray,
    MultiResolutionFeatures,
    boundary_map,
    map_losses,
    tail_decay_schedule,
)
from detect.models.backbone import build_backbone

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
PLAIN = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_boundary_map_is_four_m_one_minus_m():
    m = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    torch.testing.assert_close(boundary_map(m), torch.tensor([[0.0, 0.75], [1.0, 0.0]]))


def test_map_losses_by_hand():
    pred = torch.tensor([[[0.0, 2.0], [-1.0, 0.5]]])
    target = torch.tensor([[[0.0, 0.75], [1.0, 0.0]]])

    def bce(z, t):
        p = 1 / (1 + math.exp(-z))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    want = (bce(0.0, 0.0) + bce(2.0, 0.75) + bce(-1.0, 1.0) + bce(0.5, 0.0)) / 4
    torch.testing.assert_close(map_losses(pred, target, "bce"), torch.tensor([want]))
    want_mse = (0.0 + 1.25**2 + 2.0**2 + 0.25) / 4
    torch.testing.assert_close(map_losses(pred, target, "mse"), torch.tensor([want_mse]))


def test_total_loss_is_lambda_map_plus_class_by_hand():
    torch.manual_seed(0)
    m = FaceXray(TINY, ADAM, map_weight=100.0)
    batch = _pairs()
    out = m.losses(batch)
    x = batch["images"].transpose(0, 1).reshape(4, 3, 64, 64)
    pred, logit = m.forward_parts(x)
    masks = batch["masks"].transpose(0, 1).reshape(4, 64, 64)
    target = 4 * masks * (1 - masks)
    lb = nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none").mean(dim=(1, 2))
    lc = nn.functional.binary_cross_entropy_with_logits(
        logit, torch.tensor([0.0, 0.0, 1.0, 1.0]), reduction="none"
    )
    torch.testing.assert_close(out["total"], 100 * lb + lc)
    assert torch.equal(target[:2], torch.zeros(2, 64, 64))  # a real frame's X-ray is blank


def _pairs(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(4)
    masks = torch.zeros(b, 2, 64, 64)
    masks[:, 1, 16:48, 16:48] = torch.rand(b, 32, 32, generator=g)
    return {
        "images": torch.randn(b, 2, 3, 64, 64, generator=g),
        "masks": masks,
        "labels": torch.tensor([[0.0, 1.0]] * b),
        "indices": torch.arange(2 * b).view(b, 2),
    }


@pytest.mark.parametrize("head,loss", [("paper", "bce"), ("dfb", "mse")])
def test_every_trainable_parameter_gets_a_gradient_in_one_step(head, loss):
    torch.manual_seed(0)
    m = FaceXray(TINY, ADAM, head=head, map_loss=loss)
    m.configure_optimizers(1, 1)
    m.train()
    ctx = cpu_step_context()
    seen = spy_step_gradients(m, ctx)
    out = m.fit_step(_pairs(), ctx)
    assert graded_exactly_the_trainable(m, seen)
    assert {"loss_map", "loss_cls"} <= set(out.logs) and out.logs["backbone_frozen"] == 0.0
    assert out.sample_losses.shape == (4,)


def test_warmup_freezes_the_backbone():
    torch.manual_seed(0)
    m = FaceXray(TINY, ADAM, warmup_steps=1)
    m.configure_optimizers(1, 1)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    out = m.fit_step(_pairs(), cpu_step_context())  # global step 0 < 1: frozen
    moved = {n for n, p in m.named_parameters() if not torch.equal(before[n], p)}
    assert out.logs["backbone_frozen"] == 1.0 and moved == {
        "to_xray.weight",
        "to_xray.bias",
        "classify.weight",
        "classify.bias",
    }


def test_tail_decay_schedule():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = tail_decay_schedule(opt, total=6, decay=4)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1, 1, 1, 0.75, 0.5, 0.25, 0.0])


def test_hrnet_features_are_its_four_branches_concatenated():
    cfg = {"name": "hr", "timm_name": "hrnet_w18_small", "input_size": 64, "pretrained": False}
    feats = MultiResolutionFeatures(build_backbone(cfg))
    assert feats.hrnet and feats.channels == [16, 32, 64, 128]
    assert feats.backbone.model.incre_modules is None and feats.backbone.model.final_layer is None
    assert not any(
        k.startswith(("model.incre", "model.downsamp", "model.final")) for k in feats.backbone.state_dict()
    )
    assert feats(torch.randn(1, 3, 64, 64)).shape == (1, 240, 16, 16)  # stride 4


# -- blended pairs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    return tiny_df_train_table(tmp_path_factory)


def _dataset(table, tmp_path, seed=0, augment=None):
    synth = CrossBlendSynthesiser(table, BlendConfig(ratios=(1.0,)), tmp_path)
    return SynthPairDataset(table, Pipeline(augment=augment, **PLAIN), synth, seed=seed)


def test_blend_mask_lies_in_its_hull_and_only_it_changes(table, tmp_path):
    ds = _dataset(table, tmp_path)
    blender = ds.synthesiser.blender
    for i in range(len(ds)):
        rng = np.random.default_rng([0, 0, i])
        row = int(ds.rows[i])
        real = cv2.cvtColor(cv2.imread(ds.paths[row]), cv2.COLOR_BGR2RGB)
        fg = blender.pick_foreground(ds.paths[row], rng=rng)
        res = blender(real, ds._landmarks(row), cv2.cvtColor(cv2.imread(fg), cv2.COLOR_BGR2RGB), rng=rng)
        _, fake, mask, _ = ds.raw_pair(i)
        assert np.array_equal(fake, res.image) and np.array_equal(mask, res.mask)  # the pair is that blend
        hull = res.warped_hull > 0
        assert hull.any() and bool((mask[~hull] < 1.0).all())  # full weight only inside the hull
        # the soft edge reaches at most the blur radii (scaled by the mask resize) beyond the hull
        grown = cv2.dilate(hull.astype(np.uint8), np.ones((2 * 18 + 1, 2 * 18 + 1), np.uint8)) > 0
        assert bool((mask[~grown] == 0).all()) and mask.max() == pytest.approx(1.0)
        assert np.array_equal(fake[mask == 0], real[mask == 0]) and not np.array_equal(fake, real)


def test_pairs_are_seeded_and_the_mask_moves_with_the_image(table, tmp_path):
    a, b = _dataset(table, tmp_path, seed=3), _dataset(table, tmp_path, seed=3)
    _, fa, ma, _ = a.raw_pair(1)
    _, fb, mb, _ = b.raw_pair(1)
    assert np.array_equal(fa, fb) and np.array_equal(ma, mb)
    b.set_epoch(1)
    assert not np.array_equal(fa, b.raw_pair(1)[1])
    flip = _dataset(
        table, tmp_path, seed=3, augment=[{"_target_": "albumentations.HorizontalFlip", "p": 1.0}]
    )
    item = flip[1]
    assert item["images"].shape == (2, 3, 64, 64) and item["labels"].tolist() == [0.0, 1.0]
    assert torch.equal(item["masks"][0], torch.zeros(64, 64))
    want = cv2.resize(ma[:, ::-1].copy(), (64, 64), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(item["masks"][1].numpy(), want, atol=1e-6)


# -- configs and the end-to-end smoke run ---------------------------------------------------------------
def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=face_xray"]), compose(["method=face_xray/dfb"])
    assert paper.backbone.timm_name == dfb.backbone.timm_name == "hrnet_w48"
    assert paper.input.size == dfb.input.size == 256
    assert (paper.method.head, paper.method.map_loss, paper.method.map_weight) == ("paper", "bce", 100.0)
    assert paper.method.warmup_steps == 50000 and paper.method.scheduler.total_steps == 200000
    assert (paper.trainer.max_steps, paper.trainer.batch_size, paper.method.optim.lr) == (200000, 16, 2e-4)
    assert list(paper.method.blend.ratios) == [1.0]
    assert (dfb.method.head, dfb.method.map_loss, dfb.method.map_weight) == ("dfb", "mse", 1000.0)
    assert list(dfb.input.mean) == [0.5] * 3 and dfb.method.optim.weight_decay == 5e-4
    assert (dfb.trainer.epochs, dfb.trainer.batch_size, dfb.protocol.frames.train) == (10, 16, 32)
    smoke, m = smoke_method("face_xray/dfb")
    assert isinstance(m, FaceXray) and m.needs_for(smoke.method) == frozenset({"landmarks"})
    assert predicts_probabilities(m)  # images only


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("preset", ["face_xray", "face_xray/dfb"])
def test_smoke_run_end_to_end(synthetic_cache, tmp_path, preset):
    metrics = short_smoke_metrics(synthetic_cache, tmp_path, preset)
    assert "FF++" in metrics and 0.0 <= metrics["FF++"]["frame_auc"] <= 1.0
