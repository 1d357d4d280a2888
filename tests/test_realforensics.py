"""RealForensics, stage 2 (Haliassos et al., CVPR 2022): the CSN's channel-separated convolution and layout
against the authors' network, the cosine head, logit adjustment and SSL term by hand, one training step
(trainable parts get gradients, the frozen target network none), stage-1 loading, the two-view clip data,
the recipes, the release converter and a smoke run."""

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
from helpers import compose, train_in_process
from source_models import convert, manifest_state_dict
from step_probe import one_step_gradients

from detect.convert.common import ConversionError
from detect.convert.realforensics_release import convert as convert_release
from detect.data.transforms import Pipeline
from detect.data.two_view_clips import TwoViewClipDataset, time_mask
from detect.engine.method_builder import build_method
from detect.inference.load import load_detector
from detect.methods.clip_method import TimeConv3d
from detect.methods.realforensics import CosineHead, RealForensics, fake_prior, ssl_loss
from detect.methods.realforensics_csn import CSN, DEPTHS, SeparatedBottleneck

MANIFEST = Path(__file__).parent / "data" / "release_manifests" / "realforensics.json"
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
TINY = {"csn": {"blocks": [1, 1, 1, 1], "stem_width": 4}, "projection_size": 8}
TINY_PRED = {"dim": 16, "heads": 2, "dim_head": 8, "mlp_dim": 32, "depth": 1}


def tiny(**kw) -> RealForensics:
    args = {**TINY, "predictor": TINY_PRED, "clip_len": 3, **kw}
    return RealForensics({}, ADAM, **args)


def manifest_part(prefix: str) -> dict[str, list[int]]:
    keys = json.loads(MANIFEST.read_text())["keys"]
    return {k.removeprefix(prefix): v for k, v in keys.items() if k.startswith(prefix)}


def test_the_channel_separated_convolution_by_hand():
    """conv_b filters each channel on its own with a 3x3x3 kernel (groups = channels), padding 1; with
    spatial stride 2 it keeps every frame and every other row and column."""
    g = torch.Generator().manual_seed(0)
    block = SeparatedBottleneck(4, 2, 8, stride=1)
    conv = block.conv_b
    assert isinstance(conv, TimeConv3d) and conv.groups == 2 and conv.weight.shape == (2, 1, 3, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    x = torch.randn(1, 2, 4, 3, 5, generator=g)  # [B, C, T, H, W]
    got = conv(x).detach().numpy()[0]
    w, xp = conv.weight.detach().numpy()[:, 0], np.pad(x.numpy()[0], ((0, 0), (1, 1), (1, 1), (1, 1)))
    hand = np.zeros((2, 4, 3, 5))
    for c in range(2):  # the channel's own input only
        for t in range(4):
            for i in range(3):
                for j in range(5):
                    hand[c, t, i, j] = float((w[c] * xp[c, t : t + 3, i : i + 3, j : j + 3]).sum())
    np.testing.assert_allclose(got, hand, rtol=1e-5, atol=1e-5)
    strided = SeparatedBottleneck(4, 2, 8, stride=2).conv_b
    with torch.no_grad():
        strided.weight.copy_(conv.weight)
    np.testing.assert_allclose(strided(x).detach().numpy()[0], hand[:, :, ::2, ::2], rtol=1e-5, atol=1e-5)


def test_the_csn_keeps_time_and_averages_space():
    torch.manual_seed(0)
    net = CSN((1, 1, 1, 1), stem_width=4).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 128, 8)  # 32 x stem width channels, every frame kept
        # frame 0 reaches frames 0..5 only: +-1 frame per 3x3x3 convolution (the stem and 4 blocks)
        y = x.clone()
        y[:, :, 0] += 1.0
        moved = (net(y) - out).abs().sum(dim=(0, 1)) > 1e-6
    assert moved.tolist() == [True] * 6 + [False] * 2
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(isinstance(c, TimeConv3d) for c in convs if c.kernel_size[0] > 1)
    assert all(c.stride[0] == 1 for c in convs)


def test_the_full_network_matches_the_authors_csn_r101_key_for_key():
    # the manifest, enumerated by hand from their code: 21,394,176 parameters
    expected = manifest_part("backbone.")
    ours = {k: list(v.shape) for k, v in CSN(DEPTHS[101]).state_dict().items()}
    assert ours == expected
    n = sum(math.prod(s) for k, s in expected.items() if "running" not in k and "batches" not in k)
    assert n == 21_394_176


def test_cosine_head_by_hand():
    torch.manual_seed(0)
    head = CosineHead(4, scale=64.0)
    x = torch.randn(2, 4, 3)
    m, w = x.mean(-1), head.weight[0]
    hand = 64.0 * (m @ w) / (m.norm(dim=1) * w.norm())
    assert torch.allclose(head(x), hand, atol=1e-4)
    assert torch.allclose(head(3.0 * x), head(x), atol=1e-4)  # scale-free in the features


def test_logit_adjustment_and_ssl_term_by_hand():
    # their batch: 4 fake types + 1 real, 8 LRW clips per FF++ clip: pi = 4 / 45
    assert fake_prior(4, 8) == pytest.approx(4 / 45)
    assert math.log(fake_prior(4, 8) / (1 - fake_prior(4, 8))) == pytest.approx(math.log(4 / 41))
    assert tiny(logit_adjustment={"fake_types": 4, "ssl_batch_ratio": 0}).logit_shift == pytest.approx(
        math.log(4.0)
    )
    assert tiny().logit_shift == 0.0
    g = torch.Generator().manual_seed(1)
    p, z = torch.randn(3, 2, 5, generator=g), torch.randn(3, 2, 5, generator=g)
    real = torch.tensor([True, False, True])
    per = ssl_loss(p, z, real)
    cos = [[float(F.cosine_similarity(p[b, t], z[b, t], dim=0)) for t in range(2)] for b in range(3)]
    assert per[1] == 0.0
    assert float(per.mean()) == pytest.approx(-(sum(cos[0]) + sum(cos[2])) / 4, abs=1e-6)
    assert torch.equal(ssl_loss(p, z, torch.zeros(3, dtype=torch.bool)), torch.zeros(3))


def _batch(b: int = 2, t: int = 3, size: int = 32, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "clip": torch.randn(b, t, 3, size, size, generator=g),
        "clip_clean": torch.randn(b, t, 3, size, size, generator=g),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
    }


def test_one_fit_step_trains_every_trainable_part_and_never_the_target_network():
    torch.manual_seed(0)
    m = tiny(logit_adjustment={"fake_types": 4, "ssl_batch_ratio": 0})
    frozen = {n: p.detach().clone() for n, p in m.target_encoder.named_parameters()}
    assert frozen and not any(p.requires_grad for p in m.target_encoder.parameters())
    batch = _batch()
    out, grads = one_step_gradients(m, batch)
    assert [n for n, g in grads.items() if g == 0.0] == []
    assert all(n.startswith(("backbone.", "df_head.", "ssl_head.")) for n in grads)
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert all(torch.equal(p, frozen[n]) for n, p in m.target_encoder.named_parameters())
    assert set(out.logs) == {"bce", "ssl"} and torch.isfinite(out.loss) and out.sample_losses.shape == (2,)
    # the step's loss is the mean BCE of the shifted logit plus the SSL term (real clip only), by hand
    m.eval()
    with torch.no_grad():
        logits = m.logits(batch["clip"])
        bce = F.binary_cross_entropy_with_logits(logits + math.log(4.0), batch["label"])
        z = m.target_encoder(batch["clip_clean"].transpose(1, 2))
        p = m.ssl_head(m.features(batch["clip"]))
        ssl = -F.cosine_similarity(p[0], z[0], dim=-1).mean()
        assert torch.isfinite(bce + ssl)
        # evaluation: clips only, the unshifted logit's sigmoid
        prob = m.predict(batch["clip"])
    assert prob.shape == (2,) and torch.allclose(prob, torch.sigmoid(logits))


def test_without_the_ssl_term_the_model_is_backbone_and_head_only():
    m = tiny(ssl_weight=0.0)
    assert {n.split(".")[0] for n, _ in m.named_parameters()} == {"backbone", "df_head"}
    out, grads = one_step_gradients(m, {k: v for k, v in _batch().items() if k != "clip_clean"})
    assert set(out.logs) == {"bce"} and all(g > 0 for g in grads.values())


def test_a_bf16_cpu_step_stays_finite():
    torch.manual_seed(0)
    m = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.logits(torch.randn(2, 3, 3, 32, 32)).float().sum()
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None)


def _stage1_file(path: Path, src: RealForensics, with_target: bool = True) -> Path:
    state = {f"model.model1.backbone.{k}": v for k, v in src.backbone.state_dict().items()}
    if with_target:
        state.update({f"model.model1.target_backbone.{k}": v for k, v in src.backbone.state_dict().items()})
        proj = src.ssl_head[0].state_dict()
        state.update({f"model.model1.target_projector.{k}": v + 1.0 for k, v in proj.items()})
    state["model.model1.predictor.x"] = torch.zeros(1)  # other stage-1 parts are not read
    torch.save({"state_dict": state, "epoch": 3}, path)
    return path


def test_stage1_weights_load_and_null_is_a_recorded_random_stand_in(tmp_path):
    a, b = tiny(seed=0), tiny(seed=0)
    assert torch.equal(a.backbone.blocks[0].conv.weight, b.backbone.blocks[0].conv.weight)
    assert a.run_info()["stage1"]["random_init"] is True and a.run_info()["stage1"]["checkpoint"] is None
    assert not torch.equal(a.backbone.blocks[0].conv.weight, tiny(seed=1).backbone.blocks[0].conv.weight)
    src = tiny(seed=5)
    path = _stage1_file(tmp_path / "stage1.ckpt", src)
    m = tiny(backbone_checkpoint=str(path))
    assert torch.equal(m.backbone.blocks[1].res_blocks[0].branch2.conv_b.weight,
                       src.backbone.blocks[1].res_blocks[0].branch2.conv_b.weight)  # fmt: skip
    assert torch.equal(m.target_encoder[1].net.weight, src.ssl_head[0].net.weight + 1.0)
    assert m.run_info()["stage1"] == {**m.run_info()["stage1"], "checkpoint": str(path), "random_init": False}
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        tiny(backbone_checkpoint=str(tmp_path / "missing.ckpt"))
    with pytest.raises(ValueError, match="target_backbone"):
        tiny(backbone_checkpoint=str(_stage1_file(tmp_path / "online.ckpt", src, with_target=False)))
    assert (
        tiny(backbone_checkpoint=str(tmp_path / "online.ckpt"), ssl_weight=0.0).stage1["random_init"] is False
    )
    with pytest.raises(ValueError, match="method.csn"):
        tiny(backbone_checkpoint=str(path), csn={"blocks": [1, 1, 1, 1], "stem_width": 8})


def test_the_warm_up_schedule_rises_linearly_from_zero_then_stays():
    m = tiny(scheduler={"name": "warmup_constant", "warmup_steps": 4})
    spec = m.configure_optimizers(1, 10)[0]
    lrs = []
    for _ in range(6):
        lrs.append(spec.optimizer.param_groups[0]["lr"])
        spec.optimizer.step()
        spec.scheduler.step()
    assert spec.interval == "step" and lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert all(p.requires_grad for g in spec.optimizer.param_groups for p in g["params"])


def test_time_mask_by_hand():
    clip = torch.ones(10, 1, 2, 2)
    g = torch.Generator().manual_seed(3)
    ref = torch.Generator().manual_seed(3)
    t = int(torch.randint(0, 12, (1,), generator=ref))
    masked, frames = time_mask(clip, 12, g)
    if t == 0 or 10 - t <= 0:
        assert frames == [] and torch.equal(masked, clip)
    else:
        s = int(torch.randint(0, 10 - t, (1,), generator=ref))
        assert frames == list(range(s, s + t))
        assert masked[frames].abs().sum() == 0 and masked.sum() == 4 * (10 - t)
    assert clip.sum() == 40  # not in place


def _clip_table(tmp_path: Path, n: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for f in range(n):
        img = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        img[..., 0] = 250  # coloured: a gray draw changes it
        path = tmp_path / f"v_{f:03d}.png"
        cv2.imwrite(str(path), img[..., ::-1])
        rows.append({"path": str(path), "frame": f, "video": "v", "label": 0})
    return pd.DataFrame(rows)


def test_the_two_views_draw_separately_and_only_the_augmented_one_is_erased_and_gray(tmp_path):
    augment = [
        {"_target_": "albumentations.HorizontalFlip", "p": 0.5},
        {"_target_": "albumentations.ToGray", "p": 1.0},
    ]
    pipe = Pipeline(size=16, mean=[0.0] * 3, std=[1.0] * 3, augment=augment)
    ds = TwoViewClipDataset(
        _clip_table(tmp_path),
        pipe,
        3,
        clean_transforms=["HorizontalFlip"],
        erasing={"p": 1.0, "scale": [0.2, 0.2], "ratio": [1.0, 1.0]},
    )
    ds.reseed(1)
    item = ds[0]
    clip, clean = item["clip"], item["clip_clean"]
    assert clip.shape == clean.shape == (3, 3, 16, 16) and item["label"] == 0
    assert torch.allclose(clip[:, 0], clip[:, 1]) and not torch.allclose(clean[:, 0], clean[:, 1])
    erased = (clip == 0).all(dim=(0, 1))  # one rectangle, the same in every frame and channel
    assert 30 <= int(erased.sum()) <= 80 and not (clean == 0).all(dim=(0, 1)).any()
    ds.reseed(1)
    again = ds[0]
    assert torch.equal(again["clip"], clip) and torch.equal(again["clip_clean"], clean)  # one seed, one draw
    assert [a["_target_"] for a in ds.clean_pipeline.spec["augment"]] == ["albumentations.HorizontalFlip"]


@pytest.mark.parametrize("smoke", [False, True])
def test_the_recipes_compose(smoke):
    cfg = compose(["method=realforensics", *(["+scale=smoke"] if smoke else [])])
    m = cfg.method
    assert m.backbone_checkpoint is None and m.ssl_weight == 1.0 and m.head_scale == 64.0
    assert m.optim._target_ == "adamp.AdamP" and m.optim.lr == pytest.approx(7e-4 * math.sqrt(32 / 256), 1e-4)
    assert m.scheduler.warmup_steps == 562 and cfg.trainer.batch_size == (32 if not smoke else 32)
    if smoke:
        assert (m.clip_len, m.clip_rule, cfg.input.size, m.csn.stem_width) == (4, "consecutive", 64, 8)
        assert (cfg.data.generator.clips, cfg.data.generator.clip_len) == (2, 4)  # synthetic clips
    else:
        assert (m.clip_len, m.clip_rule, cfg.input.size, cfg.input.crop) == (25, "consecutive", 120, 112)
        assert m.csn.depth == 101 and m.projection_size == 256 and m.predictor.dim == 512
        assert cfg.trainer.epochs == 150 and cfg.trainer.max_steps == 16875
        assert list(cfg.input.mean) == [0.485, 0.456, 0.406]
    built = build_method(m, cfg.backbone)
    assert isinstance(built, RealForensics) and "clips" in built.data_needs
    assert built.configure_optimizers(1, 4)[0].interval == "step"


def test_the_release_converter_maps_backbone_and_head_and_drops_training_parts(tmp_path):
    source = manifest_state_dict(MANIFEST)
    source = {k.removeprefix("module."): v for k, v in source.items()}
    torch.save(source, tmp_path / "realforensics_ff.pth")
    det = load_detector(convert("realforensics", tmp_path / "realforensics_ff.pth", tmp_path / "rf.pt"))
    ours = det.method.state_dict()
    assert torch.equal(ours["df_head.weight"], source["df_head.weight"])
    key = "backbone.blocks.3.res_blocks.22.branch2.conv_b.weight"
    assert torch.equal(ours[key], source[key]) and not any(k.startswith("ssl_head") for k in ours)
    with pytest.raises(ConversionError, match="does not map"):
        convert_release({**source, "extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="stage-2"):
        convert_release({"model.model1.backbone.blocks.0.conv.weight": torch.zeros(1)})


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_trains_and_scores_videos_from_clips(synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, ["method=realforensics", "+scale=smoke"]).results
    m = results["metrics"]["FF++"]
    assert 0.0 <= m["video_auc"] <= 1.0 and m["n_clips"] > 0
    info = results["method_info"]
    assert info["clip_len"] == 4 and info["stage1"]["random_init"] is True
