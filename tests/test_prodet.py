"""ProDet (Cheng et al., NeurIPS 2024): each loss term against a hand computation, the modules' shapes,
the anchor organisations and every preset's effect (not only that it runs)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import compose

from detect.engine.method_builder import build_method
from detect.methods.prodet.organisation import ANCHORS, get_organisation
from detect.methods.prodet.prodet_losses import (
    bridge,
    bridge_ratios,
    detection_loss,
    oriented_loss,
    soft_cross_entropy,
    transition_loss,
)
from detect.methods.prodet.prodet_method import ProDet

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
LN3 = math.log(3.0)


def tiny(**kw) -> ProDet:
    torch.manual_seed(0)
    return ProDet(TINY, ADAM, feature_dim=16, hidden_dim=8, **kw)


def batch(b: int = 2, anchors=ANCHORS) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([ANCHORS.index(a) for a in anchors]).repeat(b, 1)
    return torch.randn(b, len(anchors), 3, 64, 64), ids


def preset(name: str) -> ProDet:
    cfg = compose([f"method={name}", "+scale=smoke", "method.feature_dim=16", "method.hidden_dim=8"])
    return build_method(cfg.method, cfg.backbone)


# ---------------------------------------------------------------- losses against hand computations


def test_detection_loss_eq7():
    # logits (0, ln 3): P(fake) = 3/4
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]])
    got = detection_loss(logits, torch.tensor([1.0, 0.0]))
    assert torch.allclose(got, torch.tensor([-math.log(0.75), -math.log(0.25)]))
    soft = detection_loss(logits[:1], torch.tensor([0.5]))  # a mixed label (manifold mixup)
    assert torch.isclose(soft, torch.tensor([-(0.5 * math.log(0.75) + 0.5 * math.log(0.25))])).all()


def test_oriented_loss_triplet_eq6():
    # head 0: P = 3/4, target 1; head 1: P = 1/4, target 0.5 (a bridged label); head 2: P = 1/2, target 0
    logits = [torch.tensor([[0.0, LN3]]), torch.tensor([[LN3, 0.0]]), torch.tensor([[0.0, 0.0]])]
    target = torch.tensor([[1.0, 0.5, 0.0]])
    hand = -math.log(0.75) - (0.5 * math.log(0.25) + 0.5 * math.log(0.75)) + math.log(2.0)
    assert oriented_loss(logits, target, "triplet").item() == pytest.approx(hand, rel=1e-6)


def test_oriented_loss_multilabel_and_multiclass():
    # sigmoid(0, ln3, -ln3) = (1/2, 3/4, 1/4), targets (1, 1, 0)
    ml = oriented_loss([torch.tensor([[0.0, LN3, -LN3]])], torch.tensor([[1.0, 1.0, 0.0]]), "multilabel")
    assert ml.item() == pytest.approx(math.log(2) - 2 * math.log(0.75), rel=1e-6)
    # softmax(0, 0, ln 2, 0) = (1, 1, 2, 1)/5; target class 2 mixed with class 3 at λ = 0.25
    mc = oriented_loss(
        [torch.tensor([[0.0, 0.0, math.log(2), 0.0]])], torch.tensor([[0.0, 0.0, 0.75, 0.25]]), "multiclass"
    )
    assert mc.item() == pytest.approx(-(0.75 * math.log(0.4) + 0.25 * math.log(0.2)), rel=1e-6)
    assert soft_cross_entropy(torch.zeros(1, 4), torch.tensor([[0, 0, 0, 1.0]])).item() == pytest.approx(
        math.log(4)
    )


def test_transition_loss_eq5_is_a_sum_of_element_means():
    p = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.zeros(2, 2)]
    t = [torch.tensor([[1.0, 0.0], [3.0, 2.0]]), torch.ones(2, 2)]
    # step 1: (0 + 4 + 0 + 4) / 4 = 2; step 2: 1
    assert transition_loss(p, t).item() == pytest.approx(3.0)
    with pytest.raises(ValueError):
        transition_loss([], [])


def test_bridged_features_and_soft_labels_eq4():
    early, late = torch.tensor([[0.0, 4.0], [2.0, 2.0]]), torch.tensor([[4.0, 0.0], [6.0, 6.0]])
    lam = torch.tensor([0.25, 1.0])
    assert torch.equal(bridge(early, late, lam), torch.tensor([[1.0, 3.0], [6.0, 6.0]]))
    org = get_organisation("r2b2d")
    codes = org.attribute_targets(torch.arange(4))  # real, SBI, CBI, deepfake
    assert codes.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]
    lam = torch.tensor([0.3])
    # docs/methods/prodet.md, "Feature bridging": real→SBI (λ,0,0), SBI→CBI (1,λ,0), CBI→DF (1,1,λ)
    assert torch.allclose(bridge(codes[:1], codes[1:2], lam), torch.tensor([[0.3, 0.0, 0.0]]))
    assert torch.allclose(bridge(codes[1:2], codes[2:3], lam), torch.tensor([[1.0, 0.3, 0.0]]))
    assert torch.allclose(bridge(codes[2:3], codes[3:4], lam), torch.tensor([[1.0, 1.0, 0.3]]))


def test_bridge_ratios_are_beta_draws_in_the_unit_interval():
    torch.manual_seed(0)
    lam = bridge_ratios(4000, (0.5, 2.0))
    assert lam.shape == (4000,) and float(lam.min()) >= 0 and float(lam.max()) <= 1
    assert abs(float(lam.mean()) - 0.5) < 0.03  # Beta(α, α) is symmetric about 1/2
    torch.manual_seed(1)
    a = bridge_ratios(8, (0.5, 2.0))
    torch.manual_seed(1)
    assert torch.equal(a, bridge_ratios(8, (0.5, 2.0)))


def test_total_loss_is_eq8_with_the_weights():
    m = tiny(oriented_weight=2.0, transition_weight=10.0, warmup_epochs=0)
    images, ids = batch()
    torch.manual_seed(3)
    out = m.losses(images, ids)
    want = out["loss_d"] + 2.0 * out["loss_o"] + 10.0 * out["loss_t"]
    assert torch.isclose(out["loss"], want)
    assert out["detection"].shape == (8,)


def test_loss_terms_match_a_recomputation_from_the_modules():
    """L_d, L_o (anchors only: bridging off) and L_t recomputed from the modules by hand."""
    m = tiny(warmup_epochs=5)
    m.eval()  # BatchNorm in eval mode: the two passes see identical statistics
    images, ids = batch(b=2)
    torch.manual_seed(7)
    out = m.losses(images, ids)
    x = images.transpose(0, 1).reshape(8, 3, 64, 64)
    f = m.feature_map(x)
    logits = m.attributes(f)
    y = m.classifier(f * m.projector(f, logits))
    fake = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1.0])
    ld = torch.nn.functional.cross_entropy(y, fake.long())
    codes = torch.tensor([[0, 0, 0]] * 2 + [[1, 0, 0]] * 2 + [[1, 1, 0]] * 2 + [[1, 1, 1]] * 2).float()
    lo = sum(torch.nn.functional.cross_entropy(lg, codes[:, k].long()) for k, lg in enumerate(logits))
    torch.manual_seed(7)
    fr, fs, fc, fd = f.split(2)
    lt = sum(
        torch.nn.functional.mse_loss(m.transitions[name](a), b)
        for name, a, b in (("real_to_sbi", fr, fs), ("sbi_to_cbi", fs, fc), ("cbi_to_deepfake", fc, fd))
    )
    assert torch.isclose(out["loss_d"], ld, atol=1e-5)
    assert torch.isclose(out["loss_o"], lo, atol=1e-5)
    assert torch.isclose(out["loss_t"], lt, atol=1e-5)


# ---------------------------------------------------------------- modules


@pytest.mark.parametrize("size,kernel", [(64, (2, 2)), (128, (4, 4))])
def test_projector_kernel_is_the_feature_map_size(size, kernel):
    m = ProDet({**TINY, "input_size": size}, ADAM, feature_dim=8, hidden_dim=4)
    assert all(e.kernel_size == kernel for e in m.projector.expand)
    images = torch.randn(2, 3, size, size)
    f = m.feature_map(images)
    assert m.projector(f, m.attributes(f)).shape == f.shape


def test_projector_passes_cf_gradient_to_the_attribute_heads():
    m = tiny()
    m.logits(torch.randn(2, 3, 64, 64))[:, 1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.attributes.parameters())


def test_predict_is_softmax_of_cf_and_features_are_pooled():
    m = tiny().eval()
    x = torch.randn(3, 3, 64, 64)
    assert torch.allclose(m.predict(x), m.logits(x).softmax(-1)[:, 1])
    assert m.features(x).shape == (3, 16)
    probs = m.attribute_probs(x)
    assert probs.shape == (3, 3) and float(probs.min()) >= 0 and float(probs.max()) <= 1


def test_bridging_waits_for_the_warm_up():
    m = tiny(warmup_epochs=2)
    images, ids = batch(b=2)
    for epoch, n_ca in ((0, 8), (1, 8), (2, 14)):
        m.on_epoch_start(epoch, None, None)
        assert int(m.losses(images, ids)["ca_batch"]) == n_ca


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="attribute_classifier=none"):
        tiny(attribute_classifier="none")
    with pytest.raises(ValueError, match="oriented_weight=0"):
        tiny(oriented_weight=0.0)
    with pytest.raises(ValueError, match="bridge"):
        tiny(anchors=["real", "sbi"], bridge=["cbi"])
    with pytest.raises(ValueError, match="anchors"):
        tiny(anchors=["sbi", "cbi"])
    with pytest.raises(ValueError, match="organisation"):
        tiny(organisation="spiral")


# ---------------------------------------------------------------- presets and their effects


def test_prodet_defaults_are_the_papers():
    cfg = compose(["method=prodet"])
    m = cfg.method
    assert cfg.backbone.name == "effb4" and cfg.backbone.input_size == 256
    assert (m.oriented_weight, m.transition_weight, m.warmup_epochs) == (1.0, 10.0, 2)
    assert cfg.protocol.frames.train == 32 and cfg.protocol.frames.test == 32
    assert m.optim.lr == 2e-4 and cfg.trainer.epochs == 20 and cfg.trainer.batch_size == 24
    augs = [a._target_.split(".")[-1] for a in cfg.augment.train]
    assert augs == ["Rotate", "MedianBlur", "RandomBrightnessContrast", "ImageCompression"]
    jpeg = cfg.augment.train[3]
    assert "quality_range" in jpeg and "quality_lower" not in jpeg  # albumentations 2.x name


def test_official_preset_is_the_released_code():
    cfg = compose(["method=prodet/official"])
    m = cfg.method
    assert (m.oriented_weight, m.transition_weight, m.warmup_epochs) == (1.0, 1.0, 0)
    assert cfg.protocol.frames.train == 8 and cfg.protocol.frames.test == 32
    augs = [a._target_.split(".")[-1] for a in cfg.augment.train]
    assert augs == ["RGBShift", "HueSaturationValue", "RandomBrightnessContrast", "ImageCompression"]
    assert preset("prodet/official").bridging_active  # no warm-up
    # the released code also trains the final classifier on the bridged features; DeepfakeBench's 0.5
    assert m.bridge_detection is True and compose(["method=prodet"]).method.bridge_detection is False
    for name in ("prodet", "prodet/official"):
        run = compose([f"method={name}"])
        assert list(run.input.mean) == [0.5] * 3 and list(run.input.std) == [0.5] * 3
        assert run.backbone.name == "effb4" and run.input.size == 256


def test_without_fb_the_attribute_classifier_sees_4b_not_7b():
    images, ids = batch(b=3)
    full, no_fb = preset("prodet"), preset("prodet/no_fb")
    for m in (full, no_fb):
        m.on_epoch_start(5, None, None)
    assert int(full.losses(images, ids)["ca_batch"]) == 7 * 3
    assert int(no_fb.losses(images, ids)["ca_batch"]) == 4 * 3


def test_without_lt_the_transition_modules_get_no_gradient():
    images, ids = batch()
    full = preset("prodet")
    full.losses(images, ids)["loss"].backward()
    assert len(full.transitions) == 3
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in full.transitions.parameters())
    no_lt = preset("prodet/no_lt")
    out = no_lt.losses(images, ids)
    out["loss"].backward()
    assert len(no_lt.transitions) == 0 and float(out["loss_t"]) == 0.0
    assert torch.isclose(out["loss"], out["loss_d"] + out["loss_o"])


def test_without_lo_bridged_features_are_detected_with_mixed_labels():
    m = preset("prodet/no_lo")
    m.on_epoch_start(5, None, None)
    images, ids = batch(b=2)
    out = m.losses(images, ids)
    assert m.beta == 0 and torch.isclose(out["loss"], out["loss_d"] + 10.0 * out["loss_t"])
    # the detection term averages 4B anchors and 3B bridged features: it differs from the anchors' mean
    assert not torch.isclose(out["loss_d"], out["detection"].mean())


def test_shared_transition_option_builds_one_module():
    assert list(tiny(shared_transition=True).transitions) == ["shared"]


@pytest.mark.parametrize(
    "name,anchors",
    [
        ("prodet/vht", ["real", "sbi", "cbi", "deepfake"]),
        ("prodet/df_only", ["real", "deepfake"]),
        ("prodet/bf_only", ["real", "sbi", "cbi"]),
        ("prodet/sbi", ["real", "sbi"]),
    ],
)
def test_plain_binary_presets(name, anchors):
    m = preset(name)
    assert m.anchors == anchors and m.strategy is None
    assert not hasattr(m, "attributes") and len(m.transitions) == 0
    images, ids = batch(b=2, anchors=anchors)
    out = m.losses(images, ids)
    # every non-real anchor is a negative (fake) sample of one binary loss
    assert torch.isclose(out["loss"], out["loss_d"]) and int(out["ca_batch"]) == 0


def test_multiclass_has_one_4_way_head_and_multilabel_one_3_way_head():
    mc, ml, tb = preset("prodet/multiclass"), preset("prodet/multilabel"), preset("prodet")
    assert (
        mc.attributes.out_dims == [4] and ml.attributes.out_dims == [3] and tb.attributes.out_dims == [2] * 3
    )
    assert len(mc.projector.expand) == 1 and len(tb.projector.expand) == 3
    images, ids = batch(b=2)
    assert torch.isfinite(mc.losses(images, ids)["loss"]) and torch.isfinite(ml.losses(images, ids)["loss"])


def test_organisations_of_table5():
    r2d2b, surround = preset("prodet/r2d2b"), preset("prodet/surround")
    assert r2d2b.edges == [("real", "deepfake"), ("deepfake", "sbi"), ("sbi", "cbi")]
    assert r2d2b.org.attribute_targets(torch.arange(4)).tolist() == [
        [0, 0, 0],
        [1, 1, 0],
        [1, 1, 1],
        [1, 0, 0],
    ]
    assert surround.edges == [("real", "sbi"), ("real", "cbi"), ("real", "deepfake")]
    assert surround.org.attribute_targets(torch.arange(4)).tolist() == [
        [0, 0, 0],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
    ]
    assert sorted(surround.transitions) == ["real_to_cbi", "real_to_deepfake", "real_to_sbi"]


@pytest.mark.parametrize(
    "name,anchors,bridged",
    [
        ("prodet/anchors_s", ["real", "sbi"], []),
        ("prodet/anchors_s_sfb", ["real", "sbi"], [("real", "sbi")]),
        ("prodet/anchors_s_sfb_c", ["real", "sbi", "cbi"], [("real", "sbi")]),
        ("prodet/anchors_s_sfb_c_cfb", ["real", "sbi", "cbi"], [("real", "sbi"), ("sbi", "cbi")]),
        ("prodet/anchors_s_sfb_c_cfb_d", list(ANCHORS), [("real", "sbi"), ("sbi", "cbi")]),
        ("prodet", list(ANCHORS), [("real", "sbi"), ("sbi", "cbi"), ("cbi", "deepfake")]),
    ],
)
def test_table3_anchor_subsets(name, anchors, bridged):
    m = preset(name)
    assert m.anchors == anchors and m.bridged == bridged
    m.on_epoch_start(5, None, None)
    images, ids = batch(b=2, anchors=anchors)
    assert int(m.losses(images, ids)["ca_batch"]) == 2 * (len(anchors) + len(bridged))
