"""SRM (Luo et al., CVPR 2021), SPSL (Liu et al., CVPR 2021) and MAT (Zhao et al., CVPR 2021): the fixed
filters, the phase input and the regional independence loss against hand computations, MAT's pooling
shapes, one update of each method, its predictions and its Hydra config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import compose, cpu_step_context
from step_probe import fixed_batch

from detect.engine.method_builder import build_method
from detect.methods.mat import AGDA, MAT, attention_pooling, regional_independence_loss
from detect.methods.spsl import SPSL, phase_spectrum
from detect.methods.srm import SRM, XCEPTION_LAYOUT, MultiScaleSRM, SRMFilter, am_softmax_loss, srm_kernels

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


def _correlate(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Zero-padded 'same' correlation of a 2-D image with a 5x5 kernel, by loops."""
    h, w = img.shape
    p = np.pad(img, 2)
    return np.array([[(p[i : i + 5, j : j + 5] * k).sum() for j in range(w)] for i in range(h)])


# -- SRM ---------------------------------------------------------------------------------------------
def test_srm_kernels_are_the_papers_three_with_their_normalisation():
    kb = np.array([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]])
    kv = np.array(
        [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
    )
    h2 = np.zeros((5, 5))
    h2[2, 1:4] = [1, -2, 1]
    got = srm_kernels().numpy()
    np.testing.assert_allclose(got, np.stack([kb / 4, kv / 12, h2 / 2]), atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), 0, atol=1e-7)  # high-pass: no response to a constant


def test_srm_filter_output_by_hand():
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (3, 7, 7))
    kernels = srm_kernels().double().numpy()
    # each kernel on every colour channel, summed over the channels
    want = np.stack([sum(_correlate(img[c], k) for c in range(3)) for k in kernels])
    got = SRMFilter(3, truncation=None).double()(torch.from_numpy(img)[None])[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-10)
    clipped = SRMFilter(3, truncation=0.5).double()(torch.from_numpy(img)[None])[0].numpy()
    np.testing.assert_allclose(clipped, np.clip(want, -0.5, 0.5), atol=1e-10)
    # multi-scale SRM: every feature channel gets all three kernels, channel c -> maps 3c, 3c+1, 3c+2
    ms = MultiScaleSRM(3, 3, truncation=None).double()
    per_channel = ms.residual(torch.from_numpy(img)[None])[0].numpy()
    want_pc = np.stack([_correlate(img[c], k) for c in range(3) for k in kernels])
    np.testing.assert_allclose(per_channel, want_pc, atol=1e-10)


def test_am_softmax_by_hand():
    cos = torch.tensor([[0.2, 0.6], [0.9, -0.1]])
    y = torch.tensor([1.0, 0.0])
    s, m = 30.0, 0.45
    want0 = -math.log(math.exp(s * (0.6 - m)) / (math.exp(s * (0.6 - m)) + math.exp(s * 0.2)))
    want1 = -math.log(math.exp(s * (0.9 - m)) / (math.exp(s * (0.9 - m)) + math.exp(s * -0.1)))
    torch.testing.assert_close(am_softmax_loss(cos, y, m, s), torch.tensor([want0, want1]))


# -- SPSL --------------------------------------------------------------------------------------------
def test_phase_spectrum_by_hand_with_numpy_fft():
    rng = np.random.default_rng(1)
    img = rng.uniform(-1, 1, (2, 3, 8, 8))
    spec = np.fft.fft2(img)  # over the last two axes, per image and channel
    want = np.real(np.fft.ifft2(spec / np.abs(spec)))
    got = phase_spectrum(torch.from_numpy(img).float()).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the amplitude is gone: rescaling the image leaves its phase image unchanged
    np.testing.assert_allclose(phase_spectrum(torch.from_numpy(3 * img).float()).numpy(), want, atol=1e-5)


@pytest.mark.parametrize("phase,channels", [("gray", 4), ("rgb", 6)])
def test_spsl_input_is_rgb_plus_phase(phase, channels):
    torch.manual_seed(0)
    m = SPSL(TINY, ADAM, phase=phase)
    x = torch.randn(2, 3, 64, 64)
    inp = m.spatial_phase(x)
    assert inp.shape == (2, channels, 64, 64) and torch.equal(inp[:, :3], x)
    source = x.mean(dim=1, keepdim=True) if phase == "gray" else x
    spec = np.fft.fft2(source.double().numpy())
    np.testing.assert_allclose(inp[:, 3:].numpy(), np.real(np.fft.ifft2(spec / np.abs(spec))), atol=1e-4)
    conv = m.body.backbone.model.conv_stem
    assert conv.in_channels == channels and conv.weight.shape[1] == channels
    # shallow: the stride-32 stage and the head convolutions are gone (tiny at 64 px ends at 4x4)
    assert m.removed == ["blocks.4", "conv_head", "bn2"] and m.body.shape(len(m.body) - 1)[1:] == (4, 4)
    assert not any(k.startswith(("model.blocks.4", "model.conv_head")) for k in m.body.backbone.state_dict())
    full = SPSL(TINY, ADAM, shallow=None)
    assert full.removed == [] and full.num_features == 256


# -- MAT ---------------------------------------------------------------------------------------------
def test_regional_independence_loss_by_hand():
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])  # B=2, M=2, N=2
    centres = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0.0, 1.0])
    # c^t = c + 0.5 (mean V - c): mean V = [[.5, .5], [.5, .5]] -> c0 = [.75, .25], c1 = [.25, .25]
    intra, inter, new = regional_independence_loss(v, centres, y, 0.5, [0.1, 0.2], 0.5, squared=True)
    torch.testing.assert_close(new, torch.tensor([[0.75, 0.25], [0.25, 0.25]]))
    # squared distances: sample 0 (real, m_in .1): .125, .625; sample 1 (fake, m_in .2): 1.125, .625
    torch.testing.assert_close(intra, torch.tensor([0.025 + 0.525, 0.925 + 0.425]))
    # ‖c0 - c1‖² = .25; both ordered pairs: 2 · max(.5 - .25, 0)
    torch.testing.assert_close(inter, torch.tensor(0.5))
    intra_l2, inter_l2, _ = regional_independence_loss(v, centres, y, 0.5, [0.1, 0.2], 0.5, squared=False)
    r = math.sqrt
    want = [r(0.125) - 0.1 + r(0.625) - 0.1, r(1.125) - 0.2 + r(0.625) - 0.2]
    torch.testing.assert_close(intra_l2, torch.tensor(want))
    torch.testing.assert_close(inter_l2, torch.tensor(2 * (0.5 - 0.5)))
    # the centre term reaches the features through the batch mean (c^t is not detached)
    vg = v.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(regional_independence_loss(vg, centres, y, 0.5, [0.1, 0.2], 0.5)[1], [vg])
    assert g.abs().sum() > 0


def test_bilinear_attention_pooling_by_hand_and_shapes():
    f = torch.arange(8.0).view(1, 2, 2, 2)  # C=2: [[0,1],[2,3]], [[4,5],[6,7]]
    a = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [1.0, 0.0]]]])  # M=2
    raw = torch.tensor([[[0 + 6.0, 4 + 14.0], [1 + 2.0, 5 + 6.0]]])  # Σ_hw A_k F_c
    torch.testing.assert_close(attention_pooling(f, a, "none"), raw)
    torch.testing.assert_close(attention_pooling(f, a, "l2"), raw / raw.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(attention_pooling(f, a, "mass"), raw / torch.tensor([[[3.0], [2.0]]]))
    torch.manual_seed(0)
    m = MAT(TINY, ADAM, num_attentions=3).eval()
    out = m.forward_parts(torch.randn(2, 3, 64, 64))
    # tiny at 64 px: texture = blocks.1 (24 x 16 x 16), attention = blocks.3 (48 x 4 x 4)
    assert out["attention"].shape == (2, 3, 4, 4) and bool((out["attention"] >= 0).all())
    assert out["regions"].shape == (2, 3, 24) and out["logit"].shape == (2,)
    enhanced, d = m.texture(torch.randn(2, 24, 16, 16), (4, 4))
    assert enhanced.shape == (2, 96, 16, 16) and d.shape == (2, 24, 4, 4)
    assert attention_pooling(enhanced, out["attention"], "l2").shape == (2, 3, 96)
    assert m.project_local[0].in_features == 3 * 96


def test_agda_mixes_only_where_the_attention_is():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    att = torch.zeros(2, 4, 8, 8)
    att[:, 1, 2:4, 2:4] = 5.0  # one active map; the others have p ∝ sqrt(1)
    out, index = AGDA()(x, att)
    assert out.shape == x.shape and index.shape == (2,)
    for b in range(2):
        if index[b] != 1:
            torch.testing.assert_close(out[b], x[b])  # an all-zero map leaves the image unchanged
        else:
            assert torch.equal(out[b, :, -4:, -4:], x[b, :, -4:, -4:]) and not torch.equal(out[b], x[b])


# -- every method: one update, predictions, config ------------------------------------------------------
@pytest.mark.parametrize("name", ["srm", "spsl", "mat"])
def test_method_config_fit_step_and_predict(name):
    cfg = compose([f"method={name}", "+scale=smoke"])
    torch.manual_seed(0)
    m = build_method(cfg.method, cfg.backbone)
    m.configure_optimizers(1, 4)
    m.train()
    before = [p.detach().clone() for p in m.parameters()]
    out = m.fit_step(fixed_batch(), cpu_step_context())
    changed = sum(not torch.equal(a, p) for a, p in zip(before, m.parameters(), strict=True))
    assert changed > len(before) // 2
    assert out.sample_losses.shape == (4,) and bool(torch.isfinite(out.sample_losses).all())
    assert torch.equal(out.indices, torch.arange(10, 14))
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)
    m.eval()
    p = m.predict(fixed_batch()["image"])
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())


def test_configs_hold_the_papers_backbones_and_defaults():
    srm, spsl, mat = (compose([f"method={n}"]) for n in ("srm", "spsl", "mat"))
    assert srm.backbone.timm_name == spsl.backbone.timm_name == "legacy_xception"
    assert mat.backbone.timm_name == "efficientnet_b4"
    assert srm.backbone.input_size == spsl.backbone.input_size == mat.backbone.input_size == 256
    assert (srm.method.am_scale, srm.method.am_margin) == (30.0, 0.45)
    assert spsl.method.phase == "gray" and spsl.method.shallow == "auto"
    assert mat.method.num_attentions == 4 and list(mat.method.ril.margin_in) == [0.05, 0.1]
    assert (mat.method.texture_stride, mat.method.attention_stride) == (4, 16)


@pytest.mark.parametrize(
    "option",
    [
        "spsl",
        "ucf/dfb",
        "cnn_aug/dfb",
        "ftcn",
        "ftcn/dfb",
        "altfreezing",
        "altfreezing/dfb",
        "iid",
        "iid/dfb",
        "sia",
        "sia/dfb",
        "style_flow",
    ],
)
def test_presets_augment_as_deepfakebenchs_generic_pipeline(option):
    """DeepfakeBench's dataset/abstract_dataset.py (albumentations 1.1): flip, rotation with its reflected
    border, Gaussian (not median) blur, one of three colour steps, JPEG; in albumentations 2.x names. Every
    recipe that trains as DeepfakeBench does reads it (``augment.deepfakebench``), with or without
    ``augment=none`` defined."""
    import albumentations as A

    from detect.data.transforms import build_augmentations

    assert compose([f"method={option}", "augment=none"]).augment.train == []
    cfg = compose([f"method={option}"])
    flip, rotate, blur, one_of, jpeg = build_augmentations(cfg.augment.train)
    assert isinstance(flip, A.HorizontalFlip) and flip.p == 0.5
    assert isinstance(rotate, A.Rotate) and rotate.limit == (-10.0, 10.0) and rotate.p == 0.5
    assert rotate.border_mode == 4  # cv2.BORDER_REFLECT_101, albumentations 1.x's default
    assert isinstance(blur, A.GaussianBlur) and blur.blur_limit == (3, 7) and blur.p == 0.5
    assert blur.sigma_limit == (0.8, 1.4)  # 1.x: OpenCV's σ of kernels 3 and 7
    assert isinstance(one_of, A.OneOf) and one_of.p == 0.5
    rbc, pca, hsv = one_of.transforms
    assert isinstance(rbc, A.RandomBrightnessContrast) and isinstance(pca, A.FancyPCA)
    assert isinstance(hsv, A.HueSaturationValue)
    assert rbc.brightness_limit == (-0.1, 0.1) and rbc.contrast_limit == (-0.1, 0.1)
    assert isinstance(jpeg, A.ImageCompression) and jpeg.quality_range == (40, 100) and jpeg.p == 0.5


def test_mat_warmup_trains_the_plain_backbone_then_decays_alpha():
    torch.manual_seed(0)
    m = MAT(TINY, ADAM, warmup_fraction=0.5, agda={"enabled": False})
    m.configure_optimizers(2, 1)
    assert m.warmup_epochs == 1
    m.on_epoch_start(0, None, None)
    att = [p.detach().clone() for p in m.attention.parameters()]
    out = m.fit_step(fixed_batch(), cpu_step_context())
    assert "warmup_ce" in out.logs and all(
        torch.equal(a, p) for a, p in zip(att, m.attention.parameters(), strict=True)
    )
    m.on_epoch_end(0, None)
    assert float(m.alpha) == pytest.approx(0.05)
    m.on_epoch_start(1, None, None)
    out = m.fit_step(fixed_batch(), cpu_step_context())
    assert {"ce", "ril_intra", "ril_inter"} <= set(out.logs) and float(m.centres.abs().sum()) > 0
    m.on_epoch_end(1, None)
    assert float(m.alpha) == pytest.approx(0.05 * 0.9)


def test_srm_layout_follows_output_strides():
    torch.manual_seed(0)
    m = SRM(TINY, ADAM)
    # tiny: stride 2 ends at blocks.0, stride 4 at blocks.1; stride 16 has one layer (blocks.3)
    assert m.layout == {"ms": ["blocks.0", "blocks.1"], "rsa": "blocks.0", "dcma": ["blocks.2", "blocks.3"]}
    assert [d.positions for d in m.dcma] == [64, 16]
    x = torch.randn(2, 3, 64, 64)
    a_h2r, a_r2h = m.dcma[0].attention(torch.randn(2, 32, 8, 8), torch.randn(2, 32, 8, 8))
    assert a_h2r.shape == a_r2h.shape == (2, 64, 64)
    torch.testing.assert_close(a_h2r.sum(-1), torch.ones(2, 64))
    assert m.eval().features(x).shape == (2, 256, 2, 2)


def test_xception_gets_the_authors_layouts():
    xception = {"name": "xception", "timm_name": "legacy_xception", "input_size": 64, "pretrained": False}
    torch.manual_seed(0)
    spsl = SPSL(xception, ADAM).eval()
    assert spsl.removed == [f"block{i}" for i in range(4, 12)] and spsl.input_conv == "conv1"
    assert spsl.body.backbone.model.conv1.in_channels == 4 and spsl.pool_with_backbone
    assert spsl.predict(torch.randn(2, 3, 64, 64)).shape == (2,)
    srm = SRM(xception, ADAM).eval()
    assert srm.layout == XCEPTION_LAYOUT
    act2 = srm.rgb.shape(srm.rgb.index("act2"))  # 64 x 29 x 29 at 64 px: the attention needs no resizing
    residual = srm.srm(torch.randn(2, 3, 64, 64))
    assert srm.rsa.attention(srm.rsa.conv(residual)).shape[-2:] == act2[1:]
    assert srm.features(torch.randn(2, 3, 64, 64)).shape == (2, 2048, 2, 2)
