"""FTCN (Zheng et al., ICCV 2021): the temporal-only convolution and network, the Temporal Transformer, one
training step, both recipes' configs, the DeepfakeBench layout, a smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import compose, train_in_process
from step_probe import one_step_gradients

from detect.engine.method_builder import build_method
from detect.methods.ftcn import (
    FTCN,
    TemporalBottleneck,
    TemporalResNet,
    TemporalTransformer,
    slowfast_key,
    temporal_conv,
)

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SMALL_HEAD = {"heads": 2, "dim_head": 4, "mlp_dim": 16, "dropout": 0.0, "emb_dropout": 0.0}


def test_temporal_conv_filters_each_pixels_time_series_by_hand():
    g = torch.Generator().manual_seed(0)
    conv = temporal_conv(2, 3, 3)
    assert conv.kernel_size == (3, 1, 1) and conv.padding == (1, 0, 0) and conv.bias is None
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    x = torch.randn(1, 2, 5, 3, 4, generator=g)  # [B, C, T, H, W]
    got = conv(x).detach().numpy()[0]
    w, xs = (
        conv.weight.detach().numpy()[:, :, :, 0, 0],
        np.pad(x.numpy()[0], ((0, 0), (1, 1), (0, 0), (0, 0))),
    )
    hand = np.zeros((3, 5, 3, 4))
    for o in range(3):
        for t in range(5):
            for h in range(3):
                for v in range(4):  # the pixel (h, v)'s own time series only
                    hand[o, t, h, v] = sum(
                        w[o, c, j] * xs[c, t + j, h, v] for c in range(2) for j in range(3)
                    )
    np.testing.assert_allclose(got, hand, rtol=1e-5, atol=1e-5)


def test_an_unstrided_block_never_mixes_pixels_and_a_strided_one_max_pools():
    torch.manual_seed(0)
    block = TemporalBottleneck(4, 2, 8, stride=1, kernel_t=3).eval()
    x = torch.randn(1, 4, 6, 5, 5)
    y = x.clone()
    y[0, :, :, 2, 3] += 1.0
    changed = (block(x) - block(y)).abs().sum(dim=(0, 1, 2)) > 0
    assert changed[2, 3] and changed.sum() == 1  # only that pixel's output moved
    # with stride 2: max-pooling (1, 2, 2) after the BN, in both branches; T is kept
    strided = TemporalBottleneck(4, 2, 8, stride=2, kernel_t=1).eval()
    assert strided(x[..., :4, :4]).shape == (1, 8, 6, 2, 2)


def test_the_network_keeps_time_and_ends_at_res4_with_output_stride_16():
    net = TemporalResNet().eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(c.kernel_size[1:] == (1, 1) and c.stride == (1, 1, 1) for c in convs)
    assert [c.kernel_size[0] for c in convs if c.kernel_size[0] > 1] == [5] + [3] * 3 + [3] * 2 + [3] * 3
    with torch.no_grad():
        assert net(torch.randn(1, 3, 3, 32, 32)).shape == (1, 1024, 3, 2, 2)


def test_the_authors_time_pool_halves_time_after_res2_by_max():
    """The authors' network keeps the I3D's (2, 1, 1) max-pooling after res2 (``time_pool``): the output has
    T // 2 steps, step t is the max of res2's steps 2t and 2t + 1, and the transformer gets T // 2 tokens."""
    torch.manual_seed(0)
    pooled, plain = TemporalResNet(time_pool=True).eval(), TemporalResNet().eval()
    pooled.load_state_dict(plain.state_dict())  # the pooling has no parameters: same weights, same keys
    x = torch.randn(1, 3, 6, 32, 32)
    with torch.no_grad():
        res2 = plain.stages[0](plain.stem_pool(F.relu(plain.stem_stride(plain.stem_bn(plain.stem_conv(x))))))
        by_hand = torch.maximum(res2[:, :, 0::2], res2[:, :, 1::2])
        after = by_hand
        for stage in plain.stages[1:]:
            after = stage(after)
        assert torch.allclose(pooled(x), after, atol=1e-5)
    assert pooled(x).shape[2] == 3 and pooled.time_steps(32) == 16 and plain.time_steps(32) == 32
    assert FTCN({}, ADAM, clip_len=32, time_pool=True).head.num_tokens == 16
    with pytest.raises(ValueError, match="time_pool"):
        FTCN({}, ADAM, clip_len=1, time_pool=True)


def test_transformer_attention_and_cls_pooling_by_hand():
    torch.manual_seed(0)
    tt = TemporalTransformer(3, dim=8, **SMALL_HEAD).eval()
    tokens = torch.randn(2, 3, 8)
    enc = tt.encode(tokens)
    assert enc.shape == (2, 4, 8) and tt.pos_embedding.shape == (1, 4, 8)
    # the logit is LayerNorm + Linear of the class token's output (position 0)
    assert torch.allclose(tt(tokens), tt.out(tt.out_norm(enc[:, 0])).squeeze(1))
    # the one block by hand: pre-norm attention (2 heads of 4, softmax(q k^T / 2) v), then the pre-norm MLP
    blk = tt.blocks[0]
    x = torch.cat([tt.cls_token.expand(2, -1, -1), tokens], 1) + tt.pos_embedding
    qkv = blk.to_qkv(blk.attn_norm(x))
    heads = []
    for h in range(2):
        q, k, v = (qkv[..., s * 8 + h * 4 : s * 8 + h * 4 + 4] for s in range(3))
        heads.append(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), -1) @ v)
    x = x + blk.to_out(torch.cat(heads, -1))
    x = x + blk.fc2(torch.nn.functional.gelu(blk.fc1(blk.mlp_norm(x))))
    assert torch.allclose(enc, x, atol=1e-5)
    assert blk.to_qkv.bias is None
    # order matters (positional embedding): reversed time gives another logit
    assert not torch.allclose(tt(tokens), tt(tokens.flip(1)))
    with pytest.raises(ValueError, match="clip_len"):
        tt(torch.randn(1, 4, 8))


def _clips(b: int = 2, t: int = 2, size: int = 32, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "clip": torch.randn(b, t, 3, size, size, generator=g),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
    }


def test_one_fit_step_gives_every_parameter_a_gradient_and_logs_bce():
    torch.manual_seed(0)
    m = FTCN({}, ADAM, clip_len=2)
    batch = _clips()
    out, grads = one_step_gradients(m, batch)
    assert [n for n, g in grads.items() if g == 0.0] == []
    assert set(out.logs) == {"bce"} and torch.isfinite(out.loss) and out.sample_losses.shape == (2,)
    m.eval()
    with torch.no_grad():
        logits = m.logits(batch["clip"])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
        p = m.predict(batch["clip"])  # clips only: no masks, landmarks or pairs
    assert p.shape == (2,) and torch.allclose(p, torch.sigmoid(logits)) and torch.isfinite(bce)


def test_a_bf16_cpu_backward_keeps_the_stem_gradient_finite():
    """oneDNN's bf16 Conv3d (3 input channels, kernel (5, 1, 1)) returns NaN weight gradients on the CPU; the
    stem runs in float32 there, so a bf16 CPU step stays finite."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, (5, 1, 1), padding=(2, 0, 0), bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(torch.randn(2, 3, 4, 8, 8)).float().sum().backward()
    broken = not bool(torch.isfinite(conv.weight.grad).all())  # the library's behaviour, for the record
    m = FTCN({}, ADAM, clip_len=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.logits(torch.randn(2, 4, 3, 32, 32)).float().sum()
    loss.backward()
    print(f"plain bf16 Conv3d gradient finite on this CPU: {not broken}")
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None)


def test_parameter_count_is_deepfakebenchs():
    # DeepfakeBench's FTCNDetector (clip_size 16) holds 14,765,889 parameters (tests/data/dfb_manifests)
    assert sum(p.numel() for p in FTCN({}, ADAM, clip_len=16).parameters()) == 14_765_889


def test_pretrained_is_decided_and_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="method.pretrained"):
        FTCN({}, ADAM, clip_len=2, pretrained=None)
    with pytest.raises(FileNotFoundError, match="I3D_8x8_R50"):
        FTCN({}, ADAM, clip_len=2, pretrained=str(tmp_path / "I3D_8x8_R50.pth"))


def test_kinetics_weights_load_where_deepfakebench_keeps_them(tmp_path):
    # an I3D ResNet-50 state dict (SlowFast names, 3x3 spatial kernels in the b convolutions, the stem 5x7x7)
    ref = TemporalResNet()
    source = {}
    for key, value in {
        "s1.pathway0_stem.conv.weight": torch.randn(64, 3, 5, 7, 7),
        "s1.pathway0_stem.bn.weight": torch.randn(64),
        "s2.pathway0_res1.branch2.a.weight": torch.randn(64, 256, 3, 1, 1),
        "s2.pathway0_res1.branch2.b.weight": torch.randn(64, 64, 1, 3, 3),
        "s3.pathway0_res0.branch1.weight": torch.randn(512, 256, 1, 1, 1),
        "s3.pathway0_res0.branch1_bn.running_mean": torch.randn(512),
        "s5.pathway0_res0.branch2.a.weight": torch.randn(512, 1024, 1, 1, 1),
        "head.projection.weight": torch.randn(400, 2048),
    }.items():
        source[key] = value
    path = tmp_path / "I3D_8x8_R50.pth"
    torch.save(source, path)
    m = FTCN({}, ADAM, clip_len=2, pretrained=str(path))
    assert m.loaded_pretrained == 3  # stem BN, a of res2.1, res3.0's projection BN
    sd = m.net.state_dict()
    assert torch.equal(sd["stem_bn.weight"], source["s1.pathway0_stem.bn.weight"])
    assert torch.equal(sd["stages.0.1.conv_a.weight"], source["s2.pathway0_res1.branch2.a.weight"])
    assert torch.equal(
        sd["stages.1.0.proj_bn.running_mean"], source["s3.pathway0_res0.branch1_bn.running_mean"]
    )
    assert sd["stages.1.0.proj.weight"].shape == (512, 256, 1, 1, 1)
    assert not torch.equal(sd["stages.1.0.proj.weight"], source["s3.pathway0_res0.branch1.weight"])
    assert ref.state_dict().keys() == sd.keys()


def test_slowfast_keys_map_with_and_without_the_pooling_wrapper():
    assert slowfast_key("s1.pathway0_stem.bn.0.weight") == "stem_bn.weight"
    assert slowfast_key("s1.pathway0_stem.bn.weight") == "stem_bn.weight"
    assert slowfast_key("s4.pathway0_res0.branch2.b_bn.0.running_var") == "stages.2.0.bn_b.running_var"
    assert slowfast_key("s3.pathway0_res2.branch2.c.weight") == "stages.1.2.conv_c.weight"
    assert slowfast_key("s5.pathway0_res0.branch2.c.weight") is None


@pytest.mark.parametrize(
    "option,clip_len,rule,size,lr,batch,epochs,pretrained",
    [
        ("ftcn", 32, "consecutive", 224, 3e-4, 16, 1000, False),
        ("ftcn/dfb", 16, "dfb", 224, 2e-4, 8, 10, None),
    ],
)
def test_configs_compose_with_the_recipes(option, clip_len, rule, size, lr, batch, epochs, pretrained):
    cfg = compose([f"method={option}"])
    m = cfg.method
    assert (m.clip_len, m.clip_rule, m.pretrained, m.optim.lr) == (clip_len, rule, pretrained, lr)
    assert (cfg.input.size, cfg.trainer.batch_size, cfg.trainer.epochs) == (size, batch, epochs)
    assert list(cfg.input.mean) == [0.5] * 3 and list(cfg.input.std) == [0.5] * 3
    assert m.transformer.depth == 1 and m.transformer.heads == 16 and m.transformer.mlp_dim == 2048
    assert m.time_pool is (option == "ftcn")  # the authors keep the I3D's time pooling; DeepfakeBench not
    smoke = compose([f"method={option}", "+scale=smoke"])
    assert smoke.method.clip_len == 4 and smoke.input.size == 64
    # the paper's recipe reads consecutive frames: the synthetic benchmark stores 2 clips of 4 for it
    rule, clips = ("dfb", 0) if option.endswith("/dfb") else ("consecutive", 2)
    assert smoke.method.clip_rule == rule and smoke.data.generator.clips == clips
    assert cfg.data.generator.clips == 0  # full scale: the default benchmark
    if option == "ftcn/dfb":
        assert m.name == "ftcn_dfb" and m.optim.weight_decay == 5e-4 and m.scheduler.name == "none"
    else:
        assert cfg.trainer.max_steps == 200000 and m.scheduler.step_size == 100000


def test_the_smoke_config_builds_a_4_frame_clip_method():
    cfg = compose(["method=ftcn", "+scale=smoke"])
    m = build_method(cfg.method, cfg.backbone)
    assert isinstance(m, FTCN) and m.clip_len == 4 and m.clip_rule == "consecutive"
    assert "clips" in m.data_needs


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_trains_and_evaluates_videos_from_clips(synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, ["method=ftcn", "+scale=smoke"]).results
    m = results["metrics"]["FF++"]
    assert 0.0 <= m["video_auc"] <= 1.0 and m["n_clips"] > 0
    # the benchmark's 2 clips of 4 consecutive frames per video, read whole
    assert m["n_clips"] == 2 * m["n_videos"] and m["n_frames"] == 4 * m["n_clips"]
    assert results["method_info"]["clip_len"] == 4


def test_converter_maps_deepfakebenchs_head_and_refuses_another_clip_length():
    from detect.convert.common import ConversionError
    from detect.convert.dfb_ftcn import convert_ftcn, rename

    assert (
        rename("resnet.head.time_T.transformer.layers.0.0.fn.fn.to_qkv.weight")
        == "head.blocks.0.to_qkv.weight"
    )
    assert rename("resnet.head.time_T.transformer.layers.0.1.fn.fn.net.3.bias") == "head.blocks.0.fc2.bias"
    assert rename("resnet.head.time_T.mlp_head.1.weight") == "head.out.weight"
    assert rename("resnet.s3.pathway0_res0.branch1_bn.0.weight") == "net.stages.1.0.proj_bn.weight"
    with pytest.raises(ConversionError, match="16-frame"):
        convert_ftcn({"resnet.head.time_T.pos_embedding": torch.zeros(1, 33, 1024)})
