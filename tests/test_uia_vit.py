"""UIA-ViT (Zhuang et al., ECCV 2022): the Gaussian forgery location map, the consistency target and loss,
PCWA's weights against hand computations, the attention logits against timm's attention, the embedding
banks, one update reaching every parameter with each loss term logged, evaluation on images alone, both
recipes' configs, the converter's layout, and a smoke run on the synthetic benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import compose, cpu_step_context, train_in_process
from step_probe import fixed_batch, hook_last_gradients, without_gradient

from detect.engine.data_needs import method_needs
from detect.engine.method_builder import build_method
from detect.methods.uia_vit import (
    PatchGaussians,
    UIAViT,
    assemble_weights,
    attention_logits,
    consistency_loss,
    consistency_target,
    location_map,
)

TINY_VIT = {"name": "tiny_vit", "timm_name": "test_vit", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SMALL = {"feat_block": 2, "attn_blocks": [3, 4, 5]}  # timm test_vit: 6 blocks, 4x4 patches at 64 px


def test_location_map_is_the_nearer_gaussian_by_hand():
    g = PatchGaussians(2)
    g.real_mean.copy_(torch.tensor([0.0, 0.0]))
    g.fake_mean.copy_(torch.tensor([2.0, 0.0]))
    g.real_precision.copy_(torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
    g.fake_precision.copy_(torch.tensor([[0.25, 0.0], [0.0, 1.0]]))
    feats = torch.tensor([[[0.5, 0.0], [1.5, 0.0], [0.0, 1.0], [3.0, 0.5]]])  # one image, 4 patches
    # d_real = sqrt(x² + 4y²): 0.5, 1.5, 2, sqrt(10)
    # d_fake = sqrt((x-2)²/4 + y²): 0.75, 0.25, sqrt(2), sqrt(0.5)
    x = feats[0].numpy()
    d_real = np.sqrt(x[:, 0] ** 2 + 4 * x[:, 1] ** 2)
    d_fake = np.sqrt((x[:, 0] - 2) ** 2 / 4 + x[:, 1] ** 2)
    np.testing.assert_array_equal(location_map(feats, g)[0].numpy(), d_real - d_fake > 0)
    assert location_map(feats, g)[0].tolist() == [False, True, True, True]


def test_gaussians_are_ledoit_wolf_fits_and_the_banks_take_reals_and_fake_centres():
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(50, 3)), rng.normal(2.0, 0.5, size=(40, 3))
    g = PatchGaussians(3)
    g.fit(torch.from_numpy(real).float(), torch.from_numpy(fake).float())
    want = LedoitWolf().fit(real.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(g.real_precision.numpy(), want.precision_, rtol=1e-4)
    np.testing.assert_allclose(g.fake_mean.numpy(), fake.mean(0), atol=1e-5)
    assert bool(g.fitted)
    m = UIAViT(TINY_VIT, ADAM, **SMALL, per_batch=1)
    feats = torch.arange(3 * 16, dtype=torch.float32).reshape(3, 16, 1).expand(3, 16, 64)
    m.collect(feats, torch.tensor([1.0, 0.0, 1.0]))
    assert m._real_bank[0][:, 0].tolist() == list(range(16, 32))  # the first real, every patch
    # the first fake's central 2x2 of its 4x4 grid (round(4 * 8/14) = 2): patches 5, 6, 9, 10
    assert m._fake_bank[0][:, 0].tolist() == [5.0, 6.0, 9.0, 10.0]


def test_consistency_target_and_loss_by_hand():
    c_r, c_f, c_x = torch.tensor(0.6), torch.tensor(0.7), torch.tensor(0.2)
    forged = torch.tensor([[True, False, True], [False, False, False]])
    real = torch.tensor([False, True])
    t = consistency_target(forged, c_r, c_f, c_x, real)
    fake_want = torch.tensor([[0.7, 0.2, 0.7], [0.2, 0.6, 0.2], [0.7, 0.2, 0.7]])
    real_want = torch.tensor([[1.0, 0.6, 0.6], [0.6, 1.0, 0.6], [0.6, 0.6, 1.0]])
    torch.testing.assert_close(t, torch.stack([fake_want, real_want]))
    s = torch.full((2, 3, 3), 0.5)
    # Σ|S − C| / (P² − P): fake |0.5-0.7|·4 + |0.5-0.2|·4 + |0.5-0.6| = 2.1 -> 0.35; real 0.5·3 + 0.1·6 = 2.1
    torch.testing.assert_close(consistency_loss(s, t), torch.tensor([0.35, 0.35]))


def test_assemble_weights_progress():
    m = torch.tensor([[0.2, 0.8, 0.5, 0.5]])
    torch.testing.assert_close(assemble_weights(m, 0.1), torch.full((1, 4), 0.25))
    torch.testing.assert_close(assemble_weights(m, 0.7), (0.5 + 0.5 * m) / 4)  # λ(thr) = σ(0) = 1/2
    lam = 1 / (1 + math.exp(12 * 0.3))  # evaluation: t = 1
    torch.testing.assert_close(assemble_weights(m, 1.0), (lam + (1 - lam) * m) / 4)


def test_attention_logits_are_timms_attention_before_the_softmax():
    torch.manual_seed(0)
    m = UIAViT(TINY_VIT, ADAM, **SMALL).eval()
    blk = m.backbone.model.blocks[1]
    x = torch.randn(2, 17, 64)
    a = attention_logits(blk, x).softmax(-1)
    qkv = blk.attn.qkv(blk.norm1(x)).reshape(2, 17, 3, 2, 32).permute(2, 0, 3, 1, 4)
    out = blk.attn.proj((a @ qkv[2]).transpose(1, 2).reshape(2, 17, 64))
    torch.testing.assert_close(out, blk.attn(blk.norm1(x)))


def _ready(m: UIAViT) -> None:
    """Gaussians fitted from random embeddings, so that the consistency terms run."""
    g = torch.Generator().manual_seed(1)
    m.gaussians.fit(torch.randn(200, 64, generator=g), torch.randn(200, 64, generator=g) + 0.3)


def test_one_step_reaches_every_parameter_and_logs_each_loss():
    torch.manual_seed(0)
    m = UIAViT(TINY_VIT, ADAM, **SMALL)
    m.configure_optimizers(5, 2)
    _ready(m)
    m.train()
    grads = hook_last_gradients(m)
    ctx = cpu_step_context()
    ctx.global_step = 3  # second epoch (2 steps per epoch), between refits
    out = m.fit_step(fixed_batch(), ctx)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert {"c_real", "c_fake", "c_cross", "head.weight"} <= set(trainable)
    assert "norm_middle.weight" not in trainable  # no gradient reaches it in the reference either
    assert without_gradient(m, grads) == []
    assert set(out.logs) == {"bce", "pcl_real", "pcl_fake", "c_reg", "c_cross"}
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)
    # the first epoch trains the cross-entropy alone and banks embeddings for the Gaussians
    first = UIAViT(TINY_VIT, ADAM, **SMALL)
    first.configure_optimizers(5, 2)
    ctx = cpu_step_context()
    assert set(first.fit_step(fixed_batch(), ctx).logs) == {"bce"} and len(first._real_bank) == 1
    ctx.global_step = 1  # half an epoch: refit on the bank
    first.fit_step(fixed_batch(), ctx)
    assert bool(first.gaussians.fitted) and len(first._real_bank) == 1


def test_the_loss_is_the_papers_sum():
    torch.manual_seed(0)
    m = UIAViT(TINY_VIT, ADAM, **SMALL).eval()
    m.configure_optimizers(5, 2)
    _ready(m)
    ctx = cpu_step_context()
    ctx.global_step = 5
    batch = fixed_batch()
    per_sample, logs = m.training_losses(batch, ctx)
    logit, feats, attn = m.forward_parts(batch["image"], 0.5)
    ce = F.binary_cross_entropy_with_logits(logit, batch["label"])
    real = batch["label"] == 0
    t = consistency_target(location_map(feats, m.gaussians), m.c_real, m.c_fake, m.c_cross, real)
    pcl = consistency_loss(torch.sigmoid(attn[:, 1:, 1:]), t)
    want = ce + 0.06 * (pcl[real].mean() + pcl[~real].mean()) + 0.05 * (1 / 0.6 + 1 / 0.6) + 0.5 * 0.2
    torch.testing.assert_close(per_sample.mean(), want)
    torch.testing.assert_close(logs["pcl_real"], pcl[real].mean())


def test_evaluation_takes_images_only():
    torch.manual_seed(0)
    m = UIAViT(TINY_VIT, ADAM, **SMALL).eval()
    images = torch.randn(3, 3, 64, 64)
    p = m.predict(images)
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())
    torch.testing.assert_close(m.predict(images[:1]), p[:1])
    assert not bool(m.gaussians.fitted)  # evaluation never needs the Gaussians


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=uia_vit"]), compose(["method=uia_vit/dfb"])
    for c in (paper, dfb):
        assert (c.backbone.timm_name, c.input.size, list(c.input.mean)) == (
            "vit_base_patch16_224",
            224,
            [0.5] * 3,
        )
        assert (c.method.optim.lr, c.method.optim.weight_decay, c.trainer.batch_size, c.trainer.epochs) == (
            3e-5,
            1e-5,
            64,
            10,
        )
        assert (c.method.pcl_weight, c.method.c_weight, c.method.cross_weight) == (0.06, 0.05, 0.5)
        assert (c.method.feat_block, c.method.attn_blocks, list(c.method.c_init)) == (
            "auto",
            "auto",
            [0.6, 0.6, 0.2],
        )
        assert list(c.augment.train) == [] and c.protocol.frames.train == 32
        assert method_needs(c.method) == frozenset()
    assert (paper.method.name, dfb.method.name) == ("uia_vit", "uia_vit_dfb")
    with pytest.raises(NotImplementedError, match="scale=smoke.s backbone=tiny"):
        UIAViT(
            {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}, ADAM
        )


@pytest.mark.long  # builds ViT-B/16
def test_vit_b16_layout():
    c = compose(["method=uia_vit/dfb"])
    m = build_method(c.method, c.backbone)
    assert m.run_info() == {"grid": [14, 14], "feat_block": 6, "attn_blocks": [7, 8, 9, 10, 11]}
    assert m.head.weight.shape == (1, 1536)


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache, tmp_path):
    # smoke scale picks the tiny CNN: a ViT-only method names the tiny ViT and its blocks
    trainer = train_in_process(synthetic_cache, tmp_path, ["method=uia_vit", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())


class DfbUIAViT(torch.nn.Module):
    """DeepfakeBench's UIA-ViT layout (``uia_vit_detector.py``): ``model`` = a ViT-B/16 (timm's names) with
    ``norm_middle``, ``c_real``/``c_fake``/``c_cross`` and ``head`` Linear(1536, 2); its forward as its code
    reads, written here independently: attention logits handed on block by block, the tokens entering
    block 6 as features, the logits of blocks 7..11 averaged, PCWA at step 1."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        self.model.norm_middle = torch.nn.LayerNorm(768, eps=1e-6)
        self.model.c_real = torch.nn.Parameter(torch.tensor(0.6))
        self.model.c_fake = torch.nn.Parameter(torch.tensor(0.6))
        self.model.c_cross = torch.nn.Parameter(torch.tensor(0.2))
        self.model.head = torch.nn.Linear(1536, 2)

    @staticmethod
    def _block(blk: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        h = blk.norm1(x)
        q, k, v = blk.attn.qkv(h).reshape(b, n, 3, 12, c // 12).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-2, -1)) * (c // 12) ** -0.5
        x = x + blk.attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))
        return x + blk.mlp(blk.norm2(x)), logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.model
        x = vit.patch_embed(images)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + vit.pos_embed
        wanted, kept, last = [8, 9, 10, 11, 12], [], None
        for i, blk in enumerate(vit.blocks):
            if i in wanted:
                kept.append(last)  # the previous block's logits
            x, last = self._block(blk, x)
        kept.append(last)  # block 11's, as i + 1 = 12 is wanted
        x = vit.norm(x)
        loc = torch.sigmoid(torch.cat(kept, dim=1).mean(dim=1)[:, 0, 1:])
        lam = torch.sigmoid(torch.tensor(-12 * (1 - 0.7), dtype=x.dtype))
        w = (lam + (1 - lam) * loc) / loc.shape[1]
        feat = torch.cat([x[:, 0], torch.bmm(w[:, None], x[:, 1:]).squeeze(1)], dim=-1)
        return vit.head(feat).softmax(1)[:, 1]


@pytest.mark.long  # a random ViT-B/16 in float64 at 224 px
def test_dfb_uia_vit_checkpoint_converts_to_the_same_probabilities(tmp_path):
    import json
    from pathlib import Path

    from source_models import convert, randomise

    from detect.inference.load import load_detector

    src = randomise(DfbUIAViT(), 3, 224, 0.5, 0.5, calibrate=224)
    state = src.state_dict()
    manifest = Path(__file__).parent / "data" / "dfb_manifests" / "dfb_uia_vit.json"
    want_keys = json.loads(manifest.read_text())["keys"]
    assert {k: list(v.shape) for k, v in state.items()} == want_keys  # the manifest's layout
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "uia_vit_best.pth")
    dst = convert("dfb_uia_vit", tmp_path / "uia_vit_best.pth", tmp_path / "uia_vit.pt")
    g = torch.Generator().manual_seed(0)
    low = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64)
    x = F.interpolate(low, size=(224, 224), mode="bilinear") * 2 - 1
    with torch.no_grad():
        want = src.double()(x)
        det = load_detector(dst)
        got = det.method.double().predict(x)
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=0)
    assert float(want.std()) > 1e-3


def test_auto_blocks_are_the_papers_on_vit_b16_and_scale_down_at_smoke_scale() -> None:
    """``auto``: features at depth/2 and attention after it (ViT-B/16: 6 and 7..11, the paper's); at
    scale=smoke the recipe turns the tiny backbone into timm's test_vit (6 blocks: 3 and 4..5)."""
    from detect.engine.method_builder import build_method

    smoke = compose(["method=uia_vit", "+scale=smoke"])
    assert smoke.backbone.timm_name == "test_vit"
    method = build_method(smoke.method, smoke.backbone)
    assert (method.feat_block, method.attn_blocks) == (3, [4, 5])
    # a 12-block ViT (ViT-Ti/16, ViT-B/16's depth at a tenth of its width) gets the paper's blocks
    twelve = compose(["method=uia_vit", "backbone.timm_name=vit_tiny_patch16_224"])
    method = build_method(twelve.method, twelve.backbone)
    assert (method.feat_block, method.attn_blocks) == (6, [7, 8, 9, 10, 11])
