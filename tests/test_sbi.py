"""SBI under its own name (Shiohara & Yamasaki, CVPR 2022): SAM's two-step update against hand
computations, the heads' losses, the released code's learning-rate decay, the real/SBI pairs (seeded,
reproducible), one update reaching every parameter, both recipes' configs, the DeepfakeBench converter's
head, and a smoke run end to end."""

from __future__ import annotations

import copy
import math

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

from detect.convert.dfb_sbi import convert as convert_dfb_sbi
from detect.data.transforms import Pipeline
from detect.methods.sam import ascend, gradient_norm, restore
from detect.methods.self_blended import SBI, fake_probability, head_losses, linear_decay_schedule, pair_batch

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9}
PLAIN = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


# -- SAM ---------------------------------------------------------------------------------------------
def test_sam_ascent_is_rho_times_the_unit_gradient_by_hand():
    lin = nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
        lin.bias.fill_(0.5)
    x = torch.tensor([[3.0, 1.0]])
    (lin(x) ** 2).sum().backward()  # L = (w·x + b)² = (3 - 2 + .5)² → dL/dw = 2·1.5·x, dL/db = 3
    g = [torch.tensor([[9.0, 3.0]]), torch.tensor([3.0])]
    norm = math.sqrt(81 + 9 + 9)
    assert float(gradient_norm(list(lin.parameters()))) == pytest.approx(norm)
    saved = ascend(list(lin.parameters()), rho=0.5)
    torch.testing.assert_close(lin.weight.detach(), torch.tensor([[1.0, -2.0]]) + 0.5 * g[0] / norm)
    torch.testing.assert_close(lin.bias.detach(), torch.tensor([0.5]) + 0.5 * g[1] / norm)
    restore(list(lin.parameters()), saved)
    assert torch.equal(lin.weight.detach(), torch.tensor([[1.0, -2.0]])) and float(lin.bias.detach()) == 0.5
    lin.weight.grad.fill_(float("inf"))
    assert ascend(list(lin.parameters()), 0.5) is None  # a non-finite gradient moves nothing


def _pairs(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        "images": torch.randn(b, 2, 3, 64, 64, generator=g),
        "anchors": torch.tensor([[0, 1]] * b),
        "labels": torch.tensor([[0.0, 1.0]] * b),
        "indices": torch.arange(2 * b).view(b, 2),
    }


def test_sbi_step_is_sgd_on_the_gradient_at_the_perturbed_weights():
    torch.manual_seed(0)
    m = SBI(TINY, SGD, classes=2, sam_rho=0.05)
    m.configure_optimizers(1, 1)
    m.train()
    ref = copy.deepcopy(m)
    batch = _pairs()
    images, labels, _ = pair_batch(batch)
    # by hand: g = ∇L(w); ε = ρ g/‖g‖; w ← w − lr·∇L(w + ε)
    # (SGD's first step: the momentum buffer is the gradient)
    params = [p for p in ref.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(ref.logits(images), labels.long())
    grads = torch.autograd.grad(loss, params)
    norm = torch.sqrt(sum((gr.double() ** 2).sum() for gr in grads))
    with torch.no_grad():
        w0 = [p.detach().clone() for p in params]
        for p, gr in zip(params, grads, strict=True):
            p.add_(0.05 * gr / norm.float())
    loss_eps = nn.functional.cross_entropy(ref.logits(images), labels.long())
    grads_eps = torch.autograd.grad(loss_eps, params)
    want = [w - 0.1 * gr for w, gr in zip(w0, grads_eps, strict=True)]
    out = m.fit_step(batch, cpu_step_context())
    got = [p.detach() for p in m.parameters() if p.requires_grad]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert float(out.logs["ce"]) == pytest.approx(float(loss), rel=1e-5)
    assert float(out.logs["ce_perturbed"]) == pytest.approx(float(loss_eps), rel=1e-5)
    assert float(out.logs["ce_perturbed"]) > float(out.logs["ce"])  # the ascent raised the loss


def test_every_trainable_parameter_gets_a_gradient_in_one_step():
    torch.manual_seed(0)
    m = SBI(TINY, SGD, classes=3, sam_rho=0.05)
    m.configure_optimizers(1, 1)
    m.train()
    ctx = cpu_step_context()
    seen = spy_step_gradients(m, ctx)
    out = m.fit_step(_pairs(), ctx)
    assert graded_exactly_the_trainable(m, seen)
    assert {"ce", "ce_perturbed"} <= set(out.logs) and out.logs["sam_skipped"] == 0.0
    assert out.sample_losses.shape == (4,) and out.indices.tolist() == [0, 2, 1, 3]  # reals, then SBIs


def test_head_losses_and_probabilities_by_hand():
    z = torch.tensor([[1.0, 2.0, 0.0], [0.5, -0.5, 1.0]])
    y = torch.tensor([1.0, 0.0])
    lse = [math.log(math.exp(1) + math.exp(2) + 1), math.log(math.exp(0.5) + math.exp(-0.5) + math.exp(1))]
    torch.testing.assert_close(head_losses(z, y), torch.tensor([lse[0] - 2.0, lse[1] - 0.5]))
    torch.testing.assert_close(
        fake_probability(z), torch.tensor([math.exp(2 - lse[0]), math.exp(-0.5 - lse[1])])
    )
    one = torch.tensor([0.3, -1.2])
    want = [math.log1p(math.exp(-0.3)), math.log1p(math.exp(-1.2))]
    torch.testing.assert_close(head_losses(one, y), torch.tensor(want))
    torch.testing.assert_close(fake_probability(one), torch.sigmoid(one))


def test_linear_decay_is_the_released_schedule():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_decay_schedule(opt, epochs=8)  # decay from epoch int(8·3/4) = 6
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1, 1, 1, 1, 1, 1, 1, 0.5, 0.0])


# -- data: real/SBI pairs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    return tiny_df_train_table(tmp_path_factory)


def test_pairs_are_reals_with_their_seeded_self_blends(table):
    m = SBI(TINY, SGD, seed=5)
    ds = m.build_train_dataset(table, Pipeline(**PLAIN))
    assert len(ds) == int((table["label"] == 0).sum())
    item = ds[1]
    assert item["images"].shape == (2, 3, 64, 64) and item["labels"].tolist() == [0.0, 1.0]
    assert table.at[int(item["indices"][0]), "label"] == 0 and item["indices"][0] == item["indices"][1]
    again = m.build_train_dataset(table, Pipeline(**PLAIN))
    (r1, s1), _ = ds.raw_tuple(1)
    (r2, s2), _ = again.raw_tuple(1)
    assert np.array_equal(s1, s2) and not np.array_equal(s1, r1)  # reproducible per (seed, epoch, item)
    m.on_epoch_start(1, again, None)
    (_, s3), _ = again.raw_tuple(1)
    assert not np.array_equal(s1, s3)  # new blends each epoch


# -- configs, converter, evaluation ------------------------------------------------------------------
def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=sbi"]), compose(["method=sbi/dfb"])
    assert paper.backbone.name == "effb4_ep" and paper.input.size == 380
    assert list(paper.input.mean) == [0.0] * 3 and list(paper.input.std) == [1.0] * 3
    assert paper.method.optim._target_ == "torch.optim.SGD" and paper.method.optim.lr == 0.001
    assert paper.method.optim.momentum == 0.9 and paper.method.sam_rho == 0.05 and paper.method.classes == 2
    assert paper.method.scheduler.name == "linear_decay"
    assert (paper.trainer.epochs, paper.trainer.batch_size, paper.protocol.frames.train) == (100, 16, 8)
    assert dfb.method.name == "sbi_dfb" and dfb.backbone.name == "effb4_dfb" and dfb.input.size == 256
    assert list(dfb.input.mean) == [0.485, 0.456, 0.406] and dfb.method.sam_rho is None
    assert dfb.method.optim._target_ == "torch.optim.Adam" and dfb.method.optim.lr == 2e-4
    assert dfb.method.optim.weight_decay == 5e-4 and dfb.method.classes == 3
    assert (dfb.method.scheduler.step_size, dfb.method.scheduler.gamma) == (3, 0.4)
    assert (dfb.trainer.epochs, dfb.trainer.batch_size, dfb.protocol.frames.test) == (50, 24, 32)
    smoke, m = smoke_method("sbi/dfb")
    assert isinstance(m, SBI) and m.needs_for(smoke.method) == frozenset({"landmarks"})
    assert predicts_probabilities(m)  # images only


def test_dfb_converter_keeps_the_three_way_head():
    w, b = torch.randn(3, 1792), torch.randn(3)
    out = convert_dfb_sbi(
        {
            "backbone.last_layer.weight": w,
            "backbone.last_layer.bias": b,
            "backbone.efficientnet._bn0.weight": b,
        }
    )
    assert torch.equal(out["head.1.weight"], w) and torch.equal(out["head.1.bias"], b)
    assert "backbone.model.bn1.weight" in out


@pytest.mark.e2e
@pytest.mark.parametrize(  # sbi/dfb: the synthesising detectors' one smoke run in make test
    "preset", [pytest.param("sbi", marks=pytest.mark.long), "sbi/dfb"]
)
def test_smoke_run_end_to_end(synthetic_cache, tmp_path, preset):
    metrics = short_smoke_metrics(synthetic_cache, tmp_path, preset)
    assert "FF++" in metrics and 0.0 <= metrics["FF++"]["frame_auc"] <= 1.0
