"""SIA (Sun et al., ECCV 2022): the patch distance, self-information and dual attention against a NumPy
hand computation, the dense aggregation links, one update reaching every parameter with its loss logged,
evaluation on images alone (and independent of the batch under the paper's reading), both recipes' configs
and DeepfakeBench's layout and parameter count, and a smoke run on the synthetic benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import compose, train_in_process
from step_probe import fit_once_with_last_gradients, fixed_batch, without_gradient

from detect.engine.data_needs import method_needs
from detect.engine.method_builder import build_method
from detect.methods.sia import SIA, SelfInformationAttention, patch_distance, self_information

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
MANIFEST = Path(__file__).parent / "data" / "dfb_manifests" / "dfb_sia.json"


def _hand_distance(x: np.ndarray, k: int = 3, r: int = 5, w: float = 0.5) -> np.ndarray:
    """Eq. 1's patch distance by loops: intra over the zero-padded k x k window, inter over the next r
    channels (cyclic)."""
    b, c, h, wd = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = np.zeros_like(x)
    for n in range(b):
        for ch in range(c):
            for i in range(h):
                for j in range(wd):
                    centre = x[n, ch, i, j]
                    intra = sum(centre - pad[n, ch, i + a, j + e] for a in range(k) for e in range(k))
                    inter = sum(centre - x[n, (ch + s) % c, i, j] for s in range(1, r + 1))
                    out[n, ch, i, j] = abs(intra) + w * abs(inter)
    return out


def test_self_information_and_dual_attention_by_hand():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 4, 5))
    d = _hand_distance(x)
    np.testing.assert_allclose(patch_distance(torch.from_numpy(x)).numpy(), d, atol=1e-12)
    for per_sample in (True, False):
        mean = d.mean(axis=(1, 2, 3), keepdims=True) if per_sample else d.mean()
        h = 1.5
        info = d / mean / (2 * h * h)  # -log p with p = exp(-D / mean(D) / (2 h²))
        got = self_information(torch.from_numpy(d), bandwidth=h, per_sample=per_sample)
        np.testing.assert_allclose(got.numpy(), info, atol=1e-12)
        p = np.exp(-info)
        channel = 1 + (-np.log(p + 0.1)).mean(axis=(2, 3), keepdims=True)
        spatial = 1 + 1 / (1 + np.exp(-info))
        att = SelfInformationAttention(bandwidth=h, per_sample=per_sample)
        out, info_t = att(torch.from_numpy(x))
        np.testing.assert_allclose(info_t.numpy(), info, atol=1e-12)
        np.testing.assert_allclose(out.numpy(), x * spatial * channel, atol=1e-12)
    # a constant map carries no information inside (intra = inter = 0): only the zero-padded border does
    flat = patch_distance(torch.ones(1, 6, 5, 5))
    assert float(flat[..., 1:-1, 1:-1].abs().max()) == 0.0 and float(flat[..., 0, 0].min()) == 5.0


def test_aggregation_links_add_earlier_maps_to_later_levels():
    torch.manual_seed(0)
    m = SIA(TINY, ADAM).eval()
    assert m.pairs == [(0, 1), (0, 2), (1, 2)]
    assert [tuple(lk[0].weight.shape[:2]) for lk in m.links] == [(32, 24), (48, 24), (48, 32)]
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logit, maps = m.forward_parts(images)
        # by hand: stages, attention, and the max-pooled projections of the earlier maps
        b, at = m.body, m.level_at
        x1, i1 = m.attention(b.run(images, 0, at[0] + 1))
        x2 = b.run(x1, at[0] + 1, at[1] + 1)
        x2, i2 = m.attention(x2 + F.adaptive_max_pool2d(m.links[0](i1), x2.shape[-2:]))
        x3 = b.run(x2, at[1] + 1, at[2] + 1)
        x3 = x3 + F.adaptive_max_pool2d(m.links[1](i1), x3.shape[-2:])
        x3, i3 = m.attention(x3 + F.adaptive_max_pool2d(m.links[2](i2), x3.shape[-2:]))
        want = m.head(b.backbone.pool(b.run(x3, at[2] + 1))).squeeze(1)
    torch.testing.assert_close(logit, want)
    for got, ref in zip(maps, [i1, i2, i3], strict=True):
        torch.testing.assert_close(got, ref)
    assert [tuple(t.shape[1:]) for t in maps] == [(24, 16, 16), (32, 8, 8), (48, 4, 4)]


def test_one_step_reaches_every_parameter_and_logs_its_loss():
    torch.manual_seed(0)
    m = SIA(TINY, ADAM)
    out, grads = fit_once_with_last_gradients(m, fixed_batch())
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert any(n.startswith("links.2.") for n in trainable)
    assert without_gradient(m, grads) == []
    assert set(out.logs) == {"bce"} and np.isfinite(float(out.loss))
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)


def test_evaluation_takes_images_only_and_per_image_normalisation_ignores_thefixed_batch():
    torch.manual_seed(0)
    images = torch.randn(3, 3, 64, 64)
    paper = SIA(TINY, ADAM).eval()
    p = paper.predict(images)
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())
    torch.testing.assert_close(paper.predict(images[:1]), p[:1])
    torch.manual_seed(0)
    dfb = SIA(TINY, ADAM, normalise="batch").eval()  # same weights, DeepfakeBench's batch-wide mean
    with torch.no_grad():
        alone, together = dfb.forward_parts(images[:1])[1][0], dfb.forward_parts(images)[1][0][:1]
        assert not torch.allclose(alone, together)
        torch.testing.assert_close(
            paper.forward_parts(images[:1])[1][0], paper.forward_parts(images)[1][0][:1]
        )
    with pytest.raises(ValueError, match="normalise"):
        SIA(TINY, ADAM, normalise="image")


def test_configs_hold_both_recipes_and_deepfakebenchs_layout():
    paper, dfb = compose(["method=sia"]), compose(["method=sia/dfb"])
    assert (paper.backbone.timm_name, dfb.backbone.name) == ("efficientnet_b4", "effb4_dfb")
    assert (
        paper.input.size == dfb.input.size == 256 and list(dfb.input.mean) == list(dfb.input.std) == [0.5] * 3
    )
    assert (paper.method.normalise, dfb.method.normalise, dfb.method.name) == ("sample", "batch", "sia_dfb")
    for c in (paper, dfb):
        assert (c.method.optim.lr, c.method.optim.weight_decay, c.trainer.batch_size, c.trainer.epochs) == (
            2e-4,
            5e-4,
            32,
            10,
        )
        assert (c.method.kernel, c.method.channel_range, c.method.inter_weight, c.method.floor) == (
            3,
            5,
            0.5,
            0.1,
        )
        assert c.protocol.frames.train == 32 and len(c.augment.train) == 5
        assert method_needs(c.method) == frozenset()
    m = build_method(dfb.method, dfb.backbone)
    assert m.run_info()["levels"] == ["blocks.1", "blocks.2", "blocks.4"]
    assert [s[0] for s in m.run_info()["level_shapes"]] == [32, 56, 160]
    # parameter count: DeepfakeBench's trainable tensors (its backbone, the three links, the head as one
    # logit), leaving out its fixed kernels, its unused Linear(1792, 1) and the batch-norm buffers
    keys = json.loads(MANIFEST.read_text())["keys"]
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    theirs = sum(
        int(np.prod(s))
        for k, s in keys.items()
        if not k.endswith(buffers) and not k.startswith(("att", "linear.", "backbone.last_layer."))
    )
    assert sum(p.numel() for p in m.parameters()) == theirs + 1792 + 1


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("recipe", ["sia", "sia/dfb"])
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache, tmp_path, recipe):
    trainer = train_in_process(synthetic_cache, tmp_path, [f"method={recipe}", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())


def _dfb_attention(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepfakeBench's SAIA module as its code reads (both attentions, 3x3 patch, 5 channels, weight 0.5,
    batch-wide mean), written independently of ours: depthwise all-ones convolutions and a shifted-channel
    loop."""
    c = x.shape[1]
    ones = torch.ones(c, 1, 3, 3, dtype=x.dtype)
    intra = (
        F.conv2d(x, 9 * torch.ones(c, 1, 1, 1, dtype=x.dtype), groups=c)
        - F.conv2d(x, ones, padding=1, groups=c)
    ).abs()
    wrapped = torch.cat([x, x[:, :6]], dim=1)
    inter = sum(x - wrapped[:, j : j + c] for j in range(1, 6)).abs()
    d = intra + 0.5 * inter
    channel = 1 + (-torch.log(torch.exp(-d / d.mean() / 2) + 0.1)).mean(dim=(2, 3), keepdim=True)
    spatial = d / d.mean() / 2
    return (torch.sigmoid(spatial) + 1) * x * channel, spatial


class DfbSIA(torch.nn.Module):
    """DeepfakeBench's SIA detector layout (``sia_detector.py``): its EfficientNet-B4 as ``backbone``, the
    seven fixed-kernel SAIA modules (only 1, 2 and 4 run, after blocks 5, 9 and 21), links conv1/2/3, the
    unused ``linear``; the classifier pools the head's output into ``backbone.last_layer``."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.backbone = torch.nn.Module()
        self.backbone.efficientnet = EfficientNet.from_name("efficientnet-b4")
        self.backbone.efficientnet._conv_stem = torch.nn.Conv2d(3, 48, 3, stride=2, bias=False)
        self.backbone.efficientnet._fc = torch.nn.Identity()
        self.backbone.last_layer = torch.nn.Linear(1792, 2)
        for i, c in enumerate([24, 32, 56, 112, 160, 272, 448]):
            fixed = torch.nn.Module()
            fixed.weight = torch.nn.Parameter(torch.ones(c, 1, 3, 3), requires_grad=False)
            fixed.weight2 = torch.nn.Parameter(torch.full((c, 1, 1, 1), 9.0), requires_grad=False)
            setattr(self, f"att{i}conv", fixed)

        def proj(a: int, b: int) -> torch.nn.Sequential:
            return torch.nn.Sequential(torch.nn.Conv2d(a, b, 1), torch.nn.BatchNorm2d(b), torch.nn.ReLU())

        self.conv1, self.conv2, self.conv3 = proj(32, 56), proj(32, 160), proj(56, 160)
        self.linear = torch.nn.Linear(1792, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone.efficientnet
        x = net._swish(net._bn0(net._conv_stem(x)))
        for k in range(6):
            x = net._blocks[k](x)
        x, a1 = _dfb_attention(x)
        for k in range(6, 10):
            x = net._blocks[k](x)
        x, a2 = _dfb_attention(x + F.adaptive_max_pool2d(self.conv1(a1), x.shape[-2:]))
        for k in range(10, 22):
            x = net._blocks[k](x)
        extra = self.conv2(a1), self.conv3(a2)
        x, _ = _dfb_attention(x + sum(F.adaptive_max_pool2d(e, x.shape[-2:]) for e in extra))
        for k in range(22, 32):
            x = net._blocks[k](x)
        x = net._swish(net._bn1(net._conv_head(x)))
        return self.backbone.last_layer(F.adaptive_avg_pool2d(x, 1).flatten(1)).softmax(1)[:, 1]


@pytest.mark.long  # a random EfficientNet-B4 in float64 at 256 px
def test_dfb_sia_checkpoint_converts_to_the_same_probabilities(tmp_path):
    from source_models import convert, randomise

    from detect.inference.load import load_detector

    src = randomise(DfbSIA(), 3, 256, 0.5, 0.5, calibrate=128)
    state = src.state_dict()
    assert set(state) == set(json.loads(MANIFEST.read_text())["keys"])  # the manifest's layout
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "sia_best.pth")
    dst = convert("dfb_sia", tmp_path / "sia_best.pth", tmp_path / "sia.pt")
    g = torch.Generator().manual_seed(0)
    low = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64)
    x = F.interpolate(low, size=(256, 256), mode="bilinear") * 2 - 1
    with torch.no_grad():
        want = src.double()(x)
        det = load_detector(dst)
        got = det.method.double().predict(x)
    assert det.method.attention.per_sample is False and det.method.run_info()["levels"][2] == "blocks.4"
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=0)
    assert float(want.std()) > 1e-3
