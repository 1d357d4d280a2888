"""RECCE (Cao et al., CVPR 2022): the reconstruction loss over real images only, the metric-learning loss,
the graph reasoning against a per-position loop, the guided attention by hand, one update of every
parameter with each loss term logged, the parameter count against DeepfakeBench's network, both recipes'
configs and a smoke run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import compose, cpu_step_context, train_in_process
from step_probe import fit_once_with_last_gradients, signed_uniform_batch, without_gradient

from detect.engine.method_builder import build_method
from detect.methods.recce import (
    GraphReasoning,
    GuidedAttention,
    Recce,
    metric_learning_loss,
    pair_similarity,
    real_reconstruction_loss,
)

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
MANIFEST = Path(__file__).parent / "data" / "dfb_manifests" / "dfb_recce.json"


# -- losses by hand ----------------------------------------------------------------------------------
def test_reconstruction_loss_is_the_mean_l1_over_real_images_only():
    images = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]], [[[3.0, -1.0]]]])  # B=3, C=1, 1x2
    recon = torch.tensor([[[[0.0, 2.5]]], [[[9.0, 9.0]]], [[[3.0, 1.0]]]])
    labels = torch.tensor([0.0, 1.0, 0.0])
    # reals 0 and 2: mean |.| = (1 + 0.5) / 2 = 0.75 and (0 + 2) / 2 = 1; the fake (error 9) is ignored
    torch.testing.assert_close(real_reconstruction_loss(recon, images, labels), torch.tensor(0.875))
    assert float(real_reconstruction_loss(recon, images, torch.ones(3))) == 0.0  # no real image
    r = recon.clone().requires_grad_(True)
    real_reconstruction_loss(r, images, labels).backward()
    assert float(r.grad[1].abs().sum()) == 0.0 and float(r.grad[0].abs().sum()) > 0


def _features(vectors: list[list[float]]) -> torch.Tensor:
    """[B, D, 2, 2] maps whose spatial mean is each vector (the corners carry ±noise that pools away)."""
    v = torch.tensor(vectors)
    noise = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) * 0.3
    return v[:, :, None, None] + noise


def test_pair_similarity_and_metric_loss_by_hand():
    z = _features([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [-1.0, 0.0]])
    s = pair_similarity(z)
    want = torch.tensor(
        [[1.0, 0.5, 1.0, 0.0], [0.5, 1.0, 0.5, 0.5], [1.0, 0.5, 1.0, 0.0], [0.0, 0.5, 0.0, 1.0]]
    )
    torch.testing.assert_close(s, want)
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # real-real (i≠j): s01 = .5; real-fake (both orders): s02, s03, s12, s13 = 1, 0, .5, .5 -> .5
    torch.testing.assert_close(
        metric_learning_loss(s, labels), torch.tensor(1 - 0.5 + 0.5), atol=1e-5, rtol=0
    )
    # reals together and fakes opposite: 1 - 1 + 0, the minimum (s lies in [0, 1], so the hinge at 0 is
    # reached only here; the eps of the pair means keeps it a hair above)
    tight = pair_similarity(_features([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]]))
    torch.testing.assert_close(metric_learning_loss(tight, labels), torch.tensor(0.0), atol=1e-5, rtol=0)
    # one real: no real-real pair (term 0); real-fake pairs (0,1), (0,2), (0,3): s = .5, 1, 0 -> .5
    one_real = torch.tensor([0.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(metric_learning_loss(s, one_real), torch.tensor(1.5), atol=1e-5, rtol=0)


# -- modules -----------------------------------------------------------------------------------------
def test_graph_reasoning_matches_a_loop_over_positions_and_keeps_the_encoder_shape():
    torch.manual_seed(0)
    g = GraphReasoning(8, 5, 4, dim=6, ratios=(2, 4), dropout=0.0).eval()
    a, b, c = torch.randn(2, 8, 3, 3), torch.randn(2, 5, 6, 6), torch.randn(2, 4, 12, 12)
    out = g(a, b, c)
    assert out.shape == a.shape
    # the reference: for each encoder position (i, j), its 2x2 block of b and 4x4 block of c
    emb_a = g.embed_a(a)
    gb, gc = 1 - g.gate_b(a), 1 - g.gate_c(a)
    rows = []
    for i in range(3):
        for j in range(3):
            va = emb_a[:, :, i, j]  # [B, D]
            aggs = []
            for dec, r, embed, weight, gate in (
                (b, 2, g.embed_b, g.weight_ab, gb),
                (c, 4, g.embed_c, g.weight_ac, gc),
            ):
                block = (
                    dec[:, :, i * r : (i + 1) * r, j * r : (j + 1) * r].flatten(2).transpose(1, 2)
                )  # [B, r², C]
                vn = embed(block)  # [B, r², D]
                scores = F.relu(weight(torch.cat([va[:, None].expand_as(vn), vn], dim=-1)))  # [B, r², 1]
                w = torch.softmax(scores, dim=1)
                aggs.append((w * vn).sum(1) * gate[:, :, i, j])
            rows.append(torch.sigmoid(torch.cat([*aggs, va], dim=1)))
    joined = torch.stack(rows, dim=-1).view(2, 18, 3, 3)
    torch.testing.assert_close(out, g.project(joined))
    with pytest.raises(ValueError, match="2x and 4x"):
        g(a, b, torch.randn(2, 4, 10, 10))


def test_guided_attention_by_hand_and_its_shapes():
    torch.manual_seed(0)
    att = GuidedAttention(4, dropout=0.2).eval()
    x, feats = torch.randn(2, 3, 16, 16), torch.randn(2, 4, 4, 4)
    gate = att.attention(x, x + torch.randn_like(x), (4, 4))
    assert gate.shape == (2, 1, 4, 4) and bool(((gate > 0) & (gate < 1)).all())
    # a perfect reconstruction: residual 0, bias-free convolutions -> gate σ(0) = 1/2 everywhere
    torch.testing.assert_close(att.attention(x, x, (4, 4)), torch.full((2, 1, 4, 4), 0.5))
    torch.testing.assert_close(att(x, x, feats), 0.5 * att.transform(feats) + feats)


def test_layouts_tap_the_authors_xception_blocks_and_stride_16_elsewhere():
    torch.manual_seed(0)
    tiny = Recce(TINY, ADAM)
    assert tiny.layout == {"encode": "blocks.3", "reason": "blocks.3", "attend": "blocks.3"}
    parts = tiny.eval().forward_parts(torch.randn(2, 3, 64, 64))
    assert parts["logit"].shape == (2,) and parts["reconstruction"].shape == (2, 3, 64, 64)
    assert [tuple(s.shape) for s in parts["similarities"]] == [(2, 2)] * 3
    assert bool((parts["reconstruction"].abs() <= 1).all())  # tanh output
    with pytest.raises(ValueError, match="encode, reason and attend"):
        Recce(TINY, ADAM, layout={"encode": "blocks.3"})


# -- one update ----------------------------------------------------------------------------------------
def _batch() -> dict:
    return signed_uniform_batch(3)


def test_one_fit_step_reaches_every_parameter_and_logs_each_term():
    torch.manual_seed(0)
    m = Recce(TINY, ADAM)
    out, grads = fit_once_with_last_gradients(m, _batch())
    missing = without_gradient(m, grads)
    assert not missing, missing
    assert {"ce", "reconstruction", "metric"} <= set(out.logs)
    want = out.logs["ce"] + 0.1 * out.logs["reconstruction"] + 0.1 * out.logs["metric"]
    torch.testing.assert_close(out.loss, want)
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)
    assert float(out.logs["reconstruction"]) > 0 and float(out.logs["metric"]) > 0
    m.eval()
    p = m.predict(_batch()["image"])  # images only: no masks, landmarks or pairs
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())
    assert Recce.needs_for({}) == frozenset()


def test_flooding_keeps_the_value_and_flips_the_gradient_below_the_flood_level():
    torch.manual_seed(0)
    m = Recce(TINY, ADAM, flood=100.0, reconstruction_weight=0.0, metric_weight=0.0, input_noise=0.0)
    m.configure_optimizers(1, 1)
    torch.manual_seed(1)
    plain = Recce(TINY, ADAM, reconstruction_weight=0.0, metric_weight=0.0, input_noise=0.0)
    plain.load_state_dict(m.state_dict())
    m.eval(), plain.eval()  # deterministic forward (dropout off)
    ctx = cpu_step_context()
    flooded, _ = m.training_losses(_batch(), ctx)
    ce, _ = plain.training_losses(_batch(), ctx)
    torch.testing.assert_close(flooded.mean(), (ce.mean() - 100).abs() + 100)
    (gf,) = torch.autograd.grad(flooded.mean(), [m.head.bias])
    (gc,) = torch.autograd.grad(ce.mean(), [plain.head.bias])
    torch.testing.assert_close(gf, -gc)


def test_parameter_count_equals_deepfakebench_recce():
    """Ours at 256 px with Xception holds DeepfakeBench's ``Recce`` network exactly, less its encoder's
    unused ImageNet fc and with one logit instead of two (2048 + 1 fewer)."""
    keys = json.loads(MANIFEST.read_text())["keys"]
    ref = sum(
        math.prod(shape)
        for k, shape in keys.items()
        if k.startswith("model.")
        and not k.startswith("model.encoder.fc.")
        and not k.endswith("num_batches_tracked")
    )
    xception = {"name": "xception", "timm_name": "legacy_xception", "input_size": 256, "pretrained": False}
    m = Recce(xception, ADAM)
    ours = sum(v.numel() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert ours == ref - 2049


# -- configs and a run ------------------------------------------------------------------------------------
def test_both_recipes_compose_with_the_values_their_headers_claim():
    paper = compose(["method=recce"])
    assert paper.backbone.timm_name == "legacy_xception" and paper.backbone.input_size == 299
    assert list(paper.input.mean) == list(paper.input.std) == [0.5, 0.5, 0.5]
    mp = paper.method
    assert (mp.reconstruction_weight, mp.metric_weight, mp.dropout) == (0.1, 0.1, 0.2)
    assert (mp.optim.lr, mp.optim.weight_decay) == (2e-4, 1e-5)
    assert (mp.scheduler.name, mp.scheduler.interval, mp.scheduler.step_size, mp.scheduler.gamma) == (
        "step", "step", 22500, 0.5
    )  # fmt: skip
    assert (paper.trainer.batch_size, paper.trainer.max_steps, paper.trainer.sampling) == (
        32,
        90000,
        "natural",
    )
    assert [a._target_ for a in paper.augment.train] == ["albumentations.HorizontalFlip"]
    dfb = compose(["method=recce/dfb"])
    md = dfb.method
    assert md.name == "recce_dfb" and md._target_ == "detect.methods.recce.Recce"
    assert dfb.backbone.input_size == 256 and list(dfb.input.mean) == [0.5, 0.5, 0.5]
    assert (md.reconstruction_weight, md.metric_weight) == (0.0, 0.0)
    assert (md.optim.lr, md.optim.weight_decay, md.scheduler.name) == (2e-4, 5e-4, "none")
    assert (dfb.trainer.epochs, dfb.trainer.batch_size, dfb.trainer.max_steps) == (10, 32, None)
    assert list(dfb.augment.train) == [] and dfb.protocol.frames.train == 32
    m = build_method(compose(["method=recce/dfb", "+scale=smoke"]).method, compose(["+scale=smoke"]).backbone)
    assert m.reconstruction_weight == 0.0 and isinstance(m, Recce)


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("method", ["recce", "recce/dfb"])
def test_recce_trains_and_evaluates_at_smoke_scale(method, synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, [f"method={method}", "+scale=smoke"]).results
    assert results["status"] == "complete"
    assert results["metrics"]["FF++"]["n_frames"] > 0
    assert 0.0 <= results["metrics"]["FF++"]["frame_auc"] <= 1.0
