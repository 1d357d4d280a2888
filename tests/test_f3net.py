"""F3-Net (Qian et al., ECCV 2020): the DCT against SciPy's, FAD's band filters and decomposition, LFS's
statistics against a NumPy loop over windows, the MixBlock, one update of each recipe, the parameter count
against DeepfakeBench's model, the configs, the converter's key mapping, and a smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
from helpers import RUNTIME_DEFAULTS, compose, cpu_step_context, train_in_process
from omegaconf import OmegaConf
from source_models import MANIFESTS, manifest_state_dict
from step_probe import fixed_batch, hook_last_gradients

from detect.convert.dfb_f3net import convert
from detect.engine.context import StepContext
from detect.engine.method_builder import build_method
from detect.engine.runtime import setup_runtime
from detect.methods.f3net import (
    F3Net,
    FrequencyAwareDecomposition,
    LocalFrequencyStatistics,
    MixBlock,
    dct_matrix,
    fad_base_filters,
)

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
XCEPTION = {"name": "xception", "timm_name": "legacy_xception", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


def _squeeze(w: np.ndarray) -> np.ndarray:
    """The paper's σ(x) = (1 - e^{-x}) / (1 + e^{-x})."""
    return (1 - np.exp(-w)) / (1 + np.exp(-w))


# -- DCT and FAD ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 8])
def test_dct_matrix_is_scipys_orthonormal_dct(n):
    c = dct_matrix(n).numpy()
    np.testing.assert_allclose(c, scipy.fft.dct(np.eye(n), norm="ortho", axis=0), atol=1e-12)
    np.testing.assert_allclose(c @ c.T, np.eye(n), atol=1e-12)
    x = np.random.default_rng(n).normal(size=(n, n))
    np.testing.assert_allclose(c @ x @ c.T, scipy.fft.dctn(x, norm="ortho"), atol=1e-12)


def test_fad_base_filters_partition_the_spectrum_as_the_paper_defines():
    n = 64
    low, mid, high, full = fad_base_filters(n, ["low", "middle", "high", "all"], "paper").numpy()
    uv = np.add.outer(np.arange(n), np.arange(n))
    # binary, a function of u + v only, disjoint and covering: a partition
    for m in (low, mid, high):
        assert set(np.unique(m)) <= {0.0, 1.0}
        for d in range(2 * n - 1):
            assert len(set(m[uv == d])) == 1
    np.testing.assert_array_equal(low + mid + high, np.ones((n, n)))
    np.testing.assert_array_equal(full, np.ones((n, n)))
    # low: the first 1/16 of the spectrum, middle up to 1/8, high the last 7/8 (to one diagonal, <= n/n²)
    assert abs(low.mean() - 1 / 16) < 1 / n and abs((low + mid).mean() - 1 / 8) < 1 / n
    assert low[0, 0] == 1 and high[-1, -1] == 1
    # the borders by hand: u + v < 64/sqrt(8) = 22.6 and u + v < 32
    assert uv[low == 1].max() == 22 and uv[mid == 1].min() == 23 and uv[mid == 1].max() == 31
    # DeepfakeBench's closed intervals at 256: [0, 90], [90, 128], [128, 512] (256 // 2.82 = 90)
    dlow, dmid, dhigh, dall = fad_base_filters(256, ["low", "middle", "high", "all"], "dfb").numpy()
    uv = np.add.outer(np.arange(256), np.arange(256))
    np.testing.assert_array_equal(dlow, uv <= 90)
    np.testing.assert_array_equal(dmid, (uv >= 90) & (uv <= 128))
    np.testing.assert_array_equal(dhigh, uv >= 128)
    np.testing.assert_array_equal(dall, np.ones((256, 256)))
    with pytest.raises(ValueError, match="fad.bands"):
        fad_base_filters(8, ["low", "ultra"])


def test_fad_components_by_hand_with_scipy():
    torch.manual_seed(0)
    n = 8
    fad = FrequencyAwareDecomposition(n, ["low", "middle", "high", "all"], "paper").double()
    x = torch.randn(2, 3, n, n, dtype=torch.float64)
    base = fad.base.numpy()
    w = fad.learnable.detach().numpy()
    want = np.stack(
        [
            np.stack(
                [
                    scipy.fft.idctn(
                        scipy.fft.dctn(x[b, c].numpy(), norm="ortho") * (base[i] + _squeeze(w[i])),
                        norm="ortho",
                    )
                    for i in range(4)
                    for c in range(3)
                ]
            )
            for b in range(2)
        ]
    )
    got = fad(x)
    assert got.shape == (2, 12, n, n)  # band-major: channels 0-2 low, 3-5 middle, 6-8 high, 9-11 all
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-10)
    # with σ(f_w) = 0 the three bands split the image exactly and the all-pass band is the image
    with torch.no_grad():
        fad.learnable.zero_()
    y = fad(x)
    torch.testing.assert_close(y[:, 0:3] + y[:, 3:6] + y[:, 6:9], x)
    torch.testing.assert_close(y[:, 9:12], x)
    with pytest.raises(ValueError, match="input size"):
        fad(torch.randn(1, 3, n + 1, n + 1, dtype=torch.float64))


# -- LFS ------------------------------------------------------------------------------------------------
def _lfs_by_loop(img: np.ndarray, window: int, stride: int, w: np.ndarray, statistic: str, eps: float):
    """Per window: the DCT of the zero-padded window of the grey 0-255 image, then per band
    log10 ‖D ⊙ h‖_1 (or the band-normalised Σ log10|D| ⊙ h); bands split u + v over [0, 2S) equally."""
    bands = w.shape[0]
    uv = np.add.outer(np.arange(window), np.arange(window))
    width = 2 * window / bands
    base = np.stack([(uv >= k * width) & (uv < (k + 1) * width) for k in range(bands)]).astype(float)
    h = base + _squeeze(w)
    pad = (window - stride) // 2
    grey = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    padded = np.pad(grey, pad)
    size = (grey.shape[0] + 2 * pad - window) // stride + 1
    out = np.zeros((bands, size, size))
    for r in range(size):
        for c in range(size):
            patch = padded[r * stride : r * stride + window, c * stride : c * stride + window]
            d = scipy.fft.dctn(patch, norm="ortho")
            for k in range(bands):
                if statistic == "log_l1":
                    out[k, r, c] = math.log10(np.abs(d * h[k]).sum() + eps)
                else:
                    out[k, r, c] = (np.log10(np.abs(d) + eps) * h[k]).sum() / base[k].sum()
    return out


@pytest.mark.parametrize("statistic", ["log_l1", "mean_log"])
def test_lfs_statistics_against_a_numpy_loop_over_windows(statistic):
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 1, (2, 3, 12, 12))  # in [0, 1]; normalised with mean 0.4, std 0.2 below
    x = torch.from_numpy((pixels - 0.4) / 0.2)
    lfs = LocalFrequencyStatistics(4, 2, 3, statistic, "gray", 1e-6, (0.4,) * 3, (0.2,) * 3).double()
    got = lfs(x).detach().numpy()
    assert got.shape == (2, 3, 6, 6) and lfs.output_size(12) == 6
    w = lfs.learnable.detach().numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], _lfs_by_loop(pixels[b] * 255, 4, 2, w, statistic, 1e-6), atol=1e-5)
    rgb = LocalFrequencyStatistics(4, 2, 3, statistic, "rgb", 1e-6, (0.4,) * 3, (0.2,) * 3).double()
    with torch.no_grad():
        rgb.learnable.copy_(lfs.learnable)
    per_channel = rgb(x).detach().numpy()  # channel-major: colour c's M bands at c·M ..
    red = np.stack([pixels[0, 0]] * 3) * 255  # a grey image equal to the red channel
    np.testing.assert_allclose(
        per_channel[0, 0:3], _lfs_by_loop(red / 1.0, 4, 2, w, statistic, 1e-6), atol=1e-5
    )
    # the paper's setting: window 10, stride 2 turns 299 px into a 149 x 149 map of M = 6 channels
    assert LocalFrequencyStatistics().output_size(299) == 149


# -- MixBlock -------------------------------------------------------------------------------------------
def test_mixblock_attention_by_hand_shapes_and_gradient_to_both_streams():
    torch.manual_seed(2)
    block = MixBlock(4).double()
    x_fad = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    x_lfs = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    # γ = 0 at initialisation: the block is the identity
    y_fad, y_lfs = block(x_fad, x_lfs)
    torch.testing.assert_close(y_fad, x_fad)
    torch.testing.assert_close(y_lfs, x_lfs)
    (closed,) = torch.autograd.grad(y_fad.sum(), [x_lfs], allow_unused=True, materialize_grads=True)
    assert float(closed.abs().sum()) == 0  # nothing crosses while the gates are shut
    # the attention of channel c of sample b: softmax over rows of Q_F K_F^T + Q_L K_L^T (1x1 convolutions)
    att = block.attention(x_fad, x_lfs)
    assert att.shape == (2, 4, 5, 5)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64))

    def conv1x1(conv, x, b, c):
        return np.einsum(
            "k,khw->hw", conv.weight[c, :, 0, 0].detach().numpy(), x[b].detach().numpy()
        ) + float(conv.bias[c].detach())

    b, c = 1, 2
    energy = conv1x1(block.query_fad, x_fad, b, c) @ conv1x1(block.key_fad, x_fad, b, c).T
    energy += conv1x1(block.query_lfs, x_lfs, b, c) @ conv1x1(block.key_lfs, x_lfs, b, c).T
    want = np.exp(energy - energy.max(1, keepdims=True))
    np.testing.assert_allclose(att[b, c].detach().numpy(), want / want.sum(1, keepdims=True), atol=1e-10)
    # once the gates open, each stream's output depends on the other stream
    with torch.no_grad():
        block.gamma_fad.fill_(0.7)
        block.gamma_lfs.fill_(-0.4)
    y_fad, y_lfs = block(x_fad, x_lfs)
    assert y_fad.shape == y_lfs.shape == x_fad.shape
    (g_lfs,) = torch.autograd.grad(y_fad.sum(), [x_lfs], retain_graph=True)
    (g_fad,) = torch.autograd.grad(y_lfs.sum(), [x_fad])
    assert float(g_lfs.abs().sum()) > 0 and float(g_fad.abs().sum()) > 0
    with pytest.raises(ValueError, match="square"):
        block(torch.randn(1, 4, 5, 6, dtype=torch.float64), torch.randn(1, 4, 5, 6, dtype=torch.float64))


# -- the method -----------------------------------------------------------------------------------------
def _batch(b: int = 4, size: int = 64) -> dict:
    return fixed_batch(b, size, seed=3)


def _gradients_of_one_fit_step(m: F3Net, batch: dict) -> tuple[dict[str, float], object]:
    grads = hook_last_gradients(m)
    m.configure_optimizers(1, 1)
    m.train()
    return grads, m.fit_step(batch, cpu_step_context())


@pytest.mark.parametrize("recipe", ["f3net", "f3net/dfb"])
def test_one_fit_step_gives_every_parameter_a_gradient_and_logs_ce(recipe):
    cfg = compose([f"method={recipe}", "+scale=smoke"])
    torch.manual_seed(0)
    m = build_method(cfg.method, cfg.backbone)
    if m.mix_enabled:
        # the MixBlock's gates start at γ = 0 (the block is the identity and only γ gets a gradient, see the
        # next test); opened here so that every other MixBlock parameter is on the gradient path
        with torch.no_grad():
            for block in m.mix:
                block.gamma_fad.fill_(0.5)
                block.gamma_lfs.fill_(0.5)
    grads, out = _gradients_of_one_fit_step(m, _batch())
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert sorted(grads) == sorted(trainable)
    assert [n for n in trainable if grads[n] == 0] == []
    assert set(out.logs) == {"ce"} and math.isfinite(float(out.logs["ce"]))
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)
    assert torch.equal(out.indices, torch.arange(10, 14))
    m.eval()  # evaluation takes images only
    p = m.predict(_batch()["image"])
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())
    assert m.needs_for(cfg.method) == frozenset()


def test_at_initialisation_the_mixblock_gates_receive_a_gradient():
    torch.manual_seed(0)
    m = F3Net(TINY, ADAM)
    grads, _ = _gradients_of_one_fit_step(m, _batch())
    assert all(grads[f"mix.{i}.gamma_{s}"] > 0 for i in range(2) for s in ("fad", "lfs"))
    assert grads["mix.0.query_fad.weight"] == 0  # gated off until γ moves


def test_xception_layout_streams_and_inputs():
    torch.manual_seed(0)
    m = F3Net(XCEPTION, ADAM).eval()
    assert m.mix_at == ["block7", "block12"] and m.input_conv == {"fad": "conv1", "lfs": "conv1"}
    fad_conv = m.bodies["fad"].backbone.model.conv1
    lfs_conv = m.bodies["lfs"].backbone.model.conv1
    assert fad_conv.in_channels == 9 and fad_conv.stride == (2, 2)
    assert lfs_conv.in_channels == 6 and lfs_conv.stride == (1, 1)
    # widened filters: the RGB filters tiled, divided by the number of copies
    torch.testing.assert_close(fad_conv.weight[:, 3:6] * 3, fad_conv.weight[:, 0:3] * 3)
    maps = m.feature_maps(torch.randn(1, 3, 64, 64))
    assert maps["fad"].shape == maps["lfs"].shape == (1, 2048, 2, 2)
    assert m.head[1].in_features == 4096
    with pytest.raises(ValueError, match="mix=true needs"):
        F3Net(TINY, ADAM, streams=["fad"], mix=True)


def test_bf16_autocast_step_keeps_the_transforms_in_float32():
    ctx = StepContext(
        setup_runtime(OmegaConf.create({**RUNTIME_DEFAULTS, "device": "cpu", "precision": "bf16"}))
    )
    torch.manual_seed(0)
    m = F3Net(TINY, ADAM)
    m.configure_optimizers(1, 1)
    m.train()
    out = m.fit_step(_batch(), ctx)
    assert math.isfinite(float(out.loss))
    with ctx.autocast():
        assert m.fad(_batch()["image"]).dtype == m.lfs(_batch()["image"]).dtype == torch.float32


@pytest.mark.long
def test_paper_model_at_299_px_has_equal_stream_maps_at_the_mixblocks():
    """Xception at 299 px: FAD 9 x 299 x 299, LFS 6 x 149 x 149; both streams 19 x 19 after block 7 and
    10 x 10 after block 12, so no resizing happens at the paper's size."""
    torch.manual_seed(0)
    m = F3Net({**XCEPTION, "input_size": 299}, ADAM).eval()
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        f, lf = m.fad(x), m.lfs(x)
        assert f.shape == (1, 9, 299, 299) and lf.shape == (1, 6, 149, 149)
        for name, size in (("block7", 19), ("block12", 10)):
            i = m.bodies["fad"].index(name)
            assert m.bodies["fad"].run(f, 0, i + 1).shape[-2:] == (size, size)
            assert m.bodies["lfs"].run(lf, 0, i + 1).shape[-2:] == (size, size)
        assert m.predict(x).shape == (1,)


def test_dfb_parameter_count_equals_deepfakebenchs_model():
    """DeepfakeBench's F3-Net (8a4a7bf) has 22,125,898 trainable parameters at 256 px; its unused
    ``adjust_channel`` branch holds 1,050,112 and its second logit 2,049 (Linear(2048, 2) vs our one
    logit)."""
    cfg = compose(["method=f3net/dfb"])
    m = build_method(cfg.method, cfg.backbone)
    n = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert n == 22_125_898 - 1_050_112 - 2_049
    assert m.fad.learnable.shape == (4, 256, 256) and m.input_conv == {"fad": "conv1"}


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=f3net"]), compose(["method=f3net/dfb"])
    assert paper.backbone.timm_name == dfb.backbone.timm_name == "legacy_xception"
    assert paper.backbone.input_size == 299 and dfb.backbone.input_size == 256
    assert list(paper.method.streams) == ["fad", "lfs"] and paper.method.mix is True
    assert list(paper.method.fad.bands) == ["low", "middle", "high"] and paper.method.fad.edges == "paper"
    assert (paper.method.lfs.window, paper.method.lfs.stride, paper.method.lfs.bands) == (10, 2, 6)
    assert paper.method.optim.lr == 2e-4 and list(paper.method.optim.betas) == [0.9, 0.999]
    assert (paper.trainer.batch_size, paper.trainer.epochs) == (128, 10)
    assert dfb.method.name == "f3net_dfb" and list(dfb.method.streams) == ["fad"] and dfb.method.mix is False
    assert list(dfb.method.fad.bands) == ["low", "middle", "high", "all"] and dfb.method.fad.edges == "dfb"
    assert (dfb.method.optim.lr, dfb.method.optim.weight_decay, dfb.method.dropout) == (2e-4, 5e-4, 0.5)
    assert (dfb.trainer.batch_size, dfb.trainer.epochs, dfb.trainer.sampling) == (32, 10, "natural")
    assert list(dfb.input.mean) == list(dfb.input.std) == [0.5, 0.5, 0.5]
    assert list(paper.augment.train) == list(dfb.augment.train) == []


def test_converter_maps_deepfakebench_keys():
    source = {
        k.removeprefix("module."): v for k, v in manifest_state_dict(MANIFESTS / "dfb_f3net.json").items()
    }
    out = convert(source)
    want = torch.stack([source[f"FAD_head.filters.{i}.learnable"] for i in range(4)])
    assert torch.equal(out["fad.learnable"], want)
    w, b = source["backbone.last_linear.1.weight"], source["backbone.last_linear.1.bias"]
    torch.testing.assert_close(out["head.1.weight"], (w[1] - w[0])[None])
    torch.testing.assert_close(out["head.1.bias"], b[1:] - b[:1])
    assert torch.equal(out["bodies.fad.backbone.model.conv1.weight"], source["backbone.conv1.weight"])
    assert not any("adjust_channel" in k or "DCT" in k or k.endswith(".base") for k in out)
    with pytest.raises(ValueError, match="FAD filter keys missing"):
        convert({k: v for k, v in source.items() if "filters.3" not in k})


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("recipe", ["f3net", "f3net/dfb"])
def test_smoke_run_end_to_end(synthetic_cache, tmp_path, recipe):
    res = train_in_process(synthetic_cache, tmp_path, [f"method={recipe}", "+scale=smoke"]).results
    auc = res["metrics"]["FF++"]["frame_auc"]
    assert 0.0 <= auc <= 1.0, res["metrics"]
