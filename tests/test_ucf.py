"""UCF (Yan et al., ICCV 2023): AdaIN, the contrastive regularisation with its margin, the reconstruction
terms and the two cross-entropies against hand computations; the manipulation classes; the real/fake pair
view; one update reaching every parameter with each loss logged; prediction from the common branch alone;
the two recipes; the parameter count of DeepfakeBench's model; a smoke run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TESTS, compose, cpu_step_context, train_in_process
from step_probe import hook_last_gradients, without_gradient
from torch import nn

from detect.data.real_fake_pairs import RealFakePairDataset, manipulation_classes
from detect.data.transforms import Pipeline
from detect.engine.data_needs import method_needs, missing_needs
from detect.engine.method_builder import build_method
from detect.methods.ucf import (
    UCF,
    adain,
    contrastive_regularization,
    draw_partners,
    reconstruction_losses,
    triplet_terms,
)

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
FF = ["DF", "F2F", "FS", "NT"]


def _tiny_ucf(**kw) -> UCF:
    return UCF(TINY, ADAM, kw.pop("manipulations", ["DF", "F2F"]), feature_dim=32, **kw)


def _pair_batch(b: int = 3) -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        "images": torch.rand(b, 2, 3, 64, 64, generator=g) * 2 - 1,
        "labels": torch.tensor([[0.0, 1.0]] * b),
        "classes": torch.tensor([[0, 1 + i % 2] for i in range(b)]),
        "indices": torch.arange(2 * b).view(b, 2),
    }


# -- AdaIN ---------------------------------------------------------------------------------------------
def test_adain_by_hand():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 2.0, (2, 3, 4, 4)), rng.normal(-0.5, 0.3, (2, 3, 3, 3))
    eps = 1e-5
    mx, my = x.mean(axis=(2, 3), keepdims=True), y.mean(axis=(2, 3), keepdims=True)
    sx = np.sqrt(x.reshape(2, 3, -1).var(axis=-1, ddof=1) + eps)[..., None, None]
    sy = np.sqrt(y.reshape(2, 3, -1).var(axis=-1, ddof=1) + eps)[..., None, None]
    want = (x - mx) / sx * sy + my
    got = adain(torch.from_numpy(x), torch.from_numpy(y), eps).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    # the result carries the style's per-channel mean and (unbiased) standard deviation
    np.testing.assert_allclose(got.mean(axis=(2, 3)), my[..., 0, 0], atol=1e-12)
    np.testing.assert_allclose(got.reshape(2, 3, -1).std(axis=-1, ddof=1), sy[..., 0, 0], rtol=1e-5)
    # in bf16 the statistics are taken in float32: the result is the float one rounded once
    low = adain(torch.from_numpy(x).bfloat16(), torch.from_numpy(y).bfloat16(), eps)
    ref = adain(torch.from_numpy(x).bfloat16().float(), torch.from_numpy(y).bfloat16().float(), eps)
    assert low.dtype == torch.bfloat16 and torch.equal(low, ref.bfloat16())


# -- losses --------------------------------------------------------------------------------------------
def test_triplet_terms_and_contrastive_regularization_by_hand():
    # 2 real (rows 0, 1) and 2 fake (rows 2, 3); 2-d features
    common = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    specific = torch.tensor([[1.0, 1.0], [1.0, 1.0], [4.0, 5.0], [0.0, 0.0]])
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    partners = {
        "common": torch.tensor([1, 0, 3, 2]),  # same binary label
        "specific": torch.tensor([1, 0, 2, 3]),  # same manipulation class (two different fakes)
        "negative": torch.tensor([2, 3, 0, 1]),  # the other label
    }
    m = 3.0

    def d(a, b):  # F.pairwise_distance adds eps = 1e-6 to the difference
        return math.dist([u + 1e-6 for u in a], b)

    def term(feats, i, p, n):
        return max(d(feats[i], feats[p]) - d(feats[i], feats[n]) + m, 0.0)

    c, s = common.tolist(), specific.tolist()
    want_c = [term(c, i, int(partners["common"][i]), int(partners["negative"][i])) for i in range(4)]
    want_s = [term(s, i, int(partners["specific"][i]), int(partners["negative"][i])) for i in range(4)]
    # by hand: common row 0: d(0,1) = 5, d(0,2) = 1 -> 5 - 1 + 3 = 7; row 1: 5 - d((3,4),(0,2)) + 3
    assert want_c[0] == pytest.approx(7.0, abs=1e-5)
    assert want_c[1] == pytest.approx(8.0 - math.sqrt(13.0), abs=1e-5)
    # specific row 2: itself as positive (0) minus d((4,5),(1,1)) = 5, + 3 -> clamped to 0
    assert want_s[2] == 0.0
    got_c = triplet_terms(common, common[partners["common"]], common[partners["negative"]], m)
    torch.testing.assert_close(got_c, torch.tensor(want_c))
    total = contrastive_regularization(common, specific, labels, partners, m)
    want = sum(
        (w[0] + w[1]) / 2 + (w[2] + w[3]) / 2 for w in (want_c, want_s)
    )  # mean within real, within fake, summed over both features
    assert float(total) == pytest.approx(want, abs=1e-5)
    # the margin enters every unclamped term once: raising it by 1 adds the number of such group means
    assert float(contrastive_regularization(common, specific, labels, partners, m + 1)) > float(total)


def test_partners_share_the_anchors_class_and_negatives_the_other():
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    classes = torch.tensor([0, 0, 0, 1, 2, 1])
    for seed in range(5):
        p = draw_partners(labels, classes, torch.Generator().manual_seed(seed))
        assert torch.equal(labels[p["common"]], labels) and torch.equal(classes[p["specific"]], classes)
        assert bool((labels[p["negative"]] != labels).all())
        assert sorted(p["negative"].tolist()) == list(range(6))  # equal halves: a permutation


def test_reconstruction_terms_by_hand():
    real, fake = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    recon = {
        "self_fake": torch.full((1, 1, 2, 2), 0.5),  # |1 - .5| = .5
        "self_real": torch.tensor([[[[0.2, -0.2], [0.0, 0.4]]]]),  # mean |.| = .2
        "cross_real": torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]),  # compared with the real: .5
        "cross_fake": torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]),  # compared with the fake: .75
    }
    self_term, cross_term = reconstruction_losses(recon, real, fake)
    assert float(self_term) == pytest.approx(0.5 + 0.2) and float(cross_term) == pytest.approx(0.5 + 0.75)


def test_cross_entropies_and_weighted_total_by_hand():
    torch.manual_seed(0)
    m = _tiny_ucf(weights={"common": 1.0, "specific": 0.1, "reconstruction": 0.3, "contrastive": 0.05})
    labels, classes = torch.tensor([0.0, 1.0]), torch.tensor([0, 2])
    images = torch.zeros(2, 3, 4, 4)
    zero = torch.zeros(1, 3, 4, 4)
    out = {
        "common_logit": torch.tensor([0.5, -1.0]),
        "specific_logits": torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]]),
        "common_pooled": torch.tensor([[0.0], [1.0]]),
        "specific_pooled": torch.tensor([[0.0], [1.0]]),
        **{k: zero for k in ("self_fake", "self_real", "cross_real", "cross_fake")},
    }
    partners = {
        "common": torch.tensor([0, 1]),
        "specific": torch.tensor([0, 1]),
        "negative": torch.tensor([1, 0]),
    }
    got = m.losses(out, images, labels, classes, partners)
    bce = [-math.log(1 - 1 / (1 + math.exp(-0.5))), -math.log(1 / (1 + math.exp(1.0)))]
    ce = [
        -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1))),
        -math.log(math.exp(3) / (1 + math.exp(1) + math.exp(3))),
    ]
    torch.testing.assert_close(got["detection"], torch.tensor(bce))
    assert float(got["common_ce"]) == pytest.approx(sum(bce) / 2, rel=1e-6)
    assert float(got["specific_ce"]) == pytest.approx(sum(ce) / 2, rel=1e-6)
    assert float(got["rec_self"]) == float(got["rec_cross"]) == 0.0
    # every anchor is its own positive (distance 0) with the other sample 1 away: 0 - 1 + 3 = 2 per group
    # mean, two groups (real, fake) and two features (common, specific)
    assert float(got["contrastive"]) == pytest.approx(8.0, abs=1e-5)
    want = sum(bce) / 2 + 0.1 * sum(ce) / 2 + 0.05 * float(got["contrastive"])
    assert float(got["loss"]) == pytest.approx(want, rel=1e-6)


# -- labels and the pair view -------------------------------------------------------------------------
def _table(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for i, (label, domain) in enumerate([(0, "real"), (0, "real"), (1, "DF"), (1, "NT"), (1, "F2F")]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((16, 16, 3), 40 * i, np.uint8))
        rows.append({"path": str(path), "label": label, "domain": domain})
    return pd.DataFrame(rows)


def test_specific_classes_follow_the_manipulation_names(tmp_path):
    table = _table(tmp_path)
    np.testing.assert_array_equal(manipulation_classes(table, FF), [0, 0, 1, 4, 2])
    with pytest.raises(ValueError, match=r"\['NT'\].*method.manipulations"):
        manipulation_classes(table, ["DF", "F2F"])
    # the recipe's class order is DeepfakeBench's label_dict (FF-DF 1, FF-F2F 2, FF-FS 3, FF-NT 4)
    cfg = compose(["method=ucf"])
    assert list(cfg.method.manipulations) == FF
    one = compose(["method=ucf", "protocol=dpl_cross_manipulation", "protocol.manipulation=NT"])
    assert list(one.method.manipulations) == ["NT"]
    m = _tiny_ucf(manipulations=FF)
    assert m.head_specific.mlp[-1].out_features == 5
    assert m.run_info()["specific_classes"] == ["real", *FF]


def test_pair_view_items_and_seeded_partners(tmp_path):
    table = _table(tmp_path)
    ds = RealFakePairDataset(table, Pipeline(16, [0.5] * 3, [0.5] * 3), FF, train=True, seed=0)
    assert len(ds) == 3
    item = ds[1]
    assert item["images"].shape == (2, 3, 16, 16) and item["labels"].tolist() == [0.0, 1.0]
    real_row, fake_row = item["indices"].tolist()
    assert table.at[real_row, "label"] == 0 and fake_row == 3 and item["classes"].tolist() == [0, 4]
    assert ds.partner(1) == ds.partner(1)  # seeded: independent of the worker
    draws = set()
    for seed in range(8):
        ds.reseed(seed)
        draws.add(ds.partner(1))
    assert draws == {0, 1}  # both reals get drawn over epochs
    images, labels, classes, rows = UCF.pair_batch(torch.utils.data.default_collate([ds[0], ds[1], ds[2]]))
    assert images.shape == (6, 3, 16, 16) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert classes.tolist()[3:] == [1, 4, 2] and rows.tolist()[3:] == [2, 3, 4]
    with pytest.raises(ValueError, match="both classes"):
        RealFakePairDataset(table[table.label == 1], ds.pipeline, FF)


def test_data_needs_follow_the_number_of_manipulations(tmp_path):
    assert method_needs(compose(["method=ucf"]).method) == {"manipulation_labels"}
    one = compose(["method=ucf", "protocol=dpl_cross_manipulation", "protocol.manipulation=NT"])
    assert method_needs(one.method) == frozenset()
    table = _table(tmp_path)
    assert missing_needs({"manipulation_labels"}, table[table.domain.isin(["real", "DF"])])
    assert not missing_needs({"manipulation_labels"}, table)


# -- one update, prediction ---------------------------------------------------------------------------
def test_one_fit_step_reaches_every_parameter_and_logs_each_loss():
    torch.manual_seed(0)
    m = _tiny_ucf(common_shuffle=1.0)
    m.configure_optimizers(1, 1)
    m.train()
    grads = hook_last_gradients(m)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    out = m.fit_step(_pair_batch(), cpu_step_context())
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert without_gradient(m, grads) == []
    assert all(not torch.equal(before[n], p) for n, p in m.named_parameters())
    assert set(out.logs) == {"common_ce", "specific_ce", "rec_self", "rec_cross", "contrastive"}
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in out.logs.values())
    assert out.sample_losses.shape == (6,) and out.indices.tolist() == [0, 2, 4, 1, 3, 5]
    # the content encoder learns from the reconstruction only
    assert any(n.startswith("content_encoder.") for n in trainable)


def test_prediction_takes_images_only_and_uses_the_common_branch():
    torch.manual_seed(0)
    m = _tiny_ucf().eval()
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    want = torch.sigmoid(m.head_common.mlp(m.split_common(m.forgery_encoder(x)).mean(dim=(2, 3))).squeeze(1))

    class Refuse(nn.Module):
        def forward(self, *args):
            raise AssertionError("prediction must not use this module")

    m.content_encoder.forward = Refuse().forward
    m.decoder.forward = Refuse().forward
    m.split_specific.forward = Refuse().forward
    got = m.predict(x)
    torch.testing.assert_close(got, want)
    assert got.shape == (4,) and bool(((got > 0) & (got < 1)).all())


def test_prediction_scores_the_branch_that_training_fits():
    """The logit the common cross-entropy trains (``forward_train``) is the logit ``predict`` scores, for the
    same images: in eval mode, and in train mode with the stochastic parts (logit dropout, common shuffle)
    off; and each pair's real is scored against label 0, its fake against 1."""
    torch.manual_seed(0)
    m = _tiny_ucf(head_dropout=0.0, decoder_dropout=0.0)
    batch = _pair_batch(4)
    images, labels, _, _ = UCF.pair_batch(batch)
    assert torch.equal(images[:4], batch["images"][:, 0]) and torch.equal(images[4:], batch["images"][:, 1])
    assert labels.tolist() == [0.0] * 4 + [1.0] * 4
    for training in (False, True):
        m.train(training)
        with torch.no_grad():
            trained = m.forward_train(images, labels)["common_logit"]
            scored = m.common_logits(images)
        torch.testing.assert_close(trained, scored)
    m.eval()
    with torch.no_grad():
        trained = m.forward_train(images, labels)["common_logit"]
    torch.testing.assert_close(m.predict(images), torch.sigmoid(trained))


# -- recipes and the reference model --------------------------------------------------------------------
def test_both_recipes_compose_with_the_values_their_headers_give():
    paper, dfb = compose(["method=ucf"]), compose(["method=ucf/dfb"])
    for cfg in (paper, dfb):
        assert cfg.backbone.timm_name == "legacy_xception" and cfg.backbone.input_size == 256
        assert cfg.input.size == 256 and list(cfg.input.mean) == list(cfg.input.std) == [0.5] * 3
        assert dict(cfg.method.weights) == {
            "common": 1.0,
            "specific": 0.1,
            "reconstruction": 0.3,
            "contrastive": 0.05,
        }
        assert cfg.method.margin == 3.0 and cfg.method.feature_dim == 512 and cfg.method.pre_activation
        assert cfg.method.optim.lr == 2e-4 and cfg.method.optim.weight_decay == 5e-4
        assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.protocol.frames.train) == (5, 16, 32)
    assert (paper.method.name, dfb.method.name) == ("ucf", "ucf_dfb")
    assert paper.method.common_shuffle == 0.0 and dfb.method.common_shuffle == 0.7
    targets = [a["_target_"].rsplit(".", 1)[1] for a in dfb.augment.train]
    assert targets == ["HorizontalFlip", "Rotate", "GaussianBlur", "OneOf", "ImageCompression"]
    rotate, blur = dfb.augment.train[1], dfb.augment.train[2]  # albumentations 1.x's border and σ
    assert rotate.border_mode == 4 and list(blur.sigma_limit) == [0.8, 1.4]
    assert [a["_target_"].rsplit(".", 1)[1] for a in paper.augment.train] == ["HorizontalFlip"]


def test_parameter_count_equals_deepfakebench_ucf():
    """DeepfakeBench's UCF (its manifest) less the two unused Xception ``last_linear`` layers and one of
    the two common logits; the 256-px recipe's architecture (parameters do not depend on the input size)."""
    spec = json.loads((TESTS / "data" / "dfb_manifests" / "dfb_ucf.json").read_text())
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    reference = sum(math.prod(s) for k, s in spec["keys"].items() if not k.endswith(buffers))
    cfg = compose(["method=ucf/dfb", "backbone.input_size=64"])
    m = build_method(cfg.method, cfg.backbone)
    ours = sum(p.numel() for p in m.parameters())
    assert ours == reference - 2 * (2048 * 2 + 2) - (512 + 1)


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("recipe", ["ucf", "ucf/dfb"])
def test_smoke_run_trains_and_evaluates(recipe, synthetic_cache, tmp_path):
    trainer = train_in_process(synthetic_cache, tmp_path, [f"method={recipe}", "+scale=smoke"])
    res = trainer.results
    assert res["metrics"]["FF++"]["frame_auc"] >= 0.0 and res["status"] == "complete"
    assert res["method_info"]["specific_classes"] == ["real", *FF]
