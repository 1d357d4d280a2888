"""AltFreezing (Wang et al., CVPR 2023): the spatial/temporal weight split, the alternation schedule, that a
phase's step leaves the other group bit-identical, a full cycle, both recipes' configs, the DeepfakeBench
layout, a smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import compose, cpu_step_context, train_in_process
from step_probe import one_step_gradients

from detect.engine.method_builder import build_method
from detect.methods.altfreezing import AltFreezing, I3DResNet, i3d_key, phase_at, weight_groups

SGD = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
MANIFEST = Path(__file__).parent / "data" / "dfb_manifests" / "dfb_altfreezing.json"


def _clips(b: int = 2, t: int = 2, size: int = 32, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "clip": torch.randn(b, t, 3, size, size, generator=g),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
    }


def _snapshot(m: AltFreezing) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in m.net.named_parameters()}


def test_weight_groups_are_the_1xkxk_and_kx1x1_convolutions():
    net = I3DResNet()
    groups = weight_groups(net)
    convs = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv3d)}
    assert all(convs[n.removesuffix(".weight")].kernel_size == (1, 3, 3) for n in groups["spatial"])
    assert all(convs[n.removesuffix(".weight")].kernel_size == (3, 1, 1) for n in groups["temporal"])
    # 16 bottlenecks each hold one 1x3x3 b; temporal kernel 3 in res2 (3 of 3), res3 (2 of 4),
    # res4 (3 of 6), res5 (1 of 3): 9 a's. The 5x7x7 stem and the 1x1x1 convolutions are in neither.
    assert len(groups["spatial"]) == 16 and len(groups["temporal"]) == 9
    assert (
        "stages.3.1.conv_a.weight" in groups["temporal"]
        and "stages.3.0.conv_a.weight" not in groups["temporal"]
    )
    assert "stem_conv.weight" not in groups["spatial"] + groups["temporal"]
    assert not set(groups["spatial"]) & set(groups["temporal"])


def test_the_schedule_by_hand():
    # DeepfakeBench / the paper's setting: 1 spatial then 20 temporal iterations per cycle of 21
    hand = (["spatial"] + ["temporal"] * 20) * 3
    assert [phase_at(i, 1, 20) for i in range(63)] == hand
    # 3 spatial and 2 temporal, temporal first: T T S S S | T T S S S
    assert [phase_at(i, 3, 2, "temporal")[0].upper() for i in range(10)] == list("TTSSSTTSSS")
    assert [phase_at(i, 0, 2) for i in range(3)] == ["temporal"] * 3  # a zero count skips that phase
    with pytest.raises(ValueError, match="alternation"):
        phase_at(0, 0, 0)
    with pytest.raises(ValueError, match="first"):
        phase_at(0, 1, 1, "both")
    m = AltFreezing({}, SGD, clip_len=2, alternation={"spatial": 2, "temporal": 3})
    assert [m.phase(i) for i in range(6)] == ["spatial"] * 2 + ["temporal"] * 3 + ["spatial"]


def test_a_phase_step_changes_only_its_group_and_leaves_the_other_bit_identical():
    torch.manual_seed(0)
    # SlowFast's zero-initialised final BNs give the residual branches no gradient on the first step: off here
    m = AltFreezing({}, SGD, clip_len=2, alternation={"spatial": 1, "temporal": 1}, zero_init_final_bn=False)
    m.configure_optimizers(1, 4)
    m.train()
    batch, ctx = _clips(), cpu_step_context()
    spatial, temporal = set(m.groups["spatial"]), set(m.groups["temporal"])
    for expected in ("spatial", "temporal", "spatial"):  # momentum from the earlier phase must not leak
        before = _snapshot(m)
        out = m.fit_step(batch, ctx)
        after = _snapshot(m)
        changed = {n for n in before if not torch.equal(before[n], after[n])}
        trained, frozen = (spatial, temporal) if expected == "spatial" else (temporal, spatial)
        assert trained <= changed, f"{expected} phase: {sorted(trained - changed)[:3]} did not change"
        assert not frozen & changed, f"{expected} phase moved frozen {sorted(frozen & changed)[:3]}"
        assert float(out.logs["spatial_phase"]) == float(expected == "spatial")
        assert {"stem_conv.weight", "projection.weight", "stages.0.0.bn_b.weight"} <= changed  # neither group
    assert m.iteration == 3 and m.extra_state() == {"iteration": 3}


def test_one_full_cycle_gives_every_parameter_a_gradient_and_an_update():
    torch.manual_seed(0)
    m = AltFreezing(
        {},
        {**SGD, "lr": 1e-3},
        clip_len=2,
        alternation={"spatial": 1, "temporal": 1},
        zero_init_final_bn=False,
    )
    batch = _clips()
    start = _snapshot(m)
    out, grads = one_step_gradients(m, batch)  # the spatial step: backward reaches every parameter
    assert [n for n, g in grads.items() if g == 0.0] == []
    assert (
        set(out.logs) == {"bce", "spatial_phase"}
        and torch.isfinite(out.loss)
        and out.sample_losses.shape == (2,)
    )
    m.fit_step(batch, cpu_step_context())  # the temporal step completes the cycle
    assert [n for n, p in _snapshot(m).items() if torch.equal(p, start[n])] == []
    # SlowFast's initialisation (final BNs at 0): a few steps, then evaluation on clips only (no masks,
    # landmarks or pairs) stays finite
    m = AltFreezing({}, {**SGD, "lr": 1e-3}, clip_len=2, alternation={"spatial": 1, "temporal": 1})
    assert all(
        float(b.weight.detach().abs().sum()) == 0.0 for n, b in m.net.named_modules() if n.endswith(".bn_c")
    )
    m.configure_optimizers(1, 4)
    m.train()
    for _ in range(3):
        m.fit_step(batch, cpu_step_context())
    m.eval()
    with torch.no_grad():
        p = m.predict(batch["clip"])
        assert p.shape == (2,) and bool(torch.isfinite(p).all())
        assert torch.allclose(p, torch.sigmoid(m.logits(batch["clip"])))


def test_a_bf16_cpu_backward_keeps_every_gradient_finite():
    """oneDNN's bf16 Conv3d with a temporal kernel > 1 returns non-finite weight gradients on the CPU; those
    convolutions run in float32 there, so a bf16 CPU step stays finite."""
    torch.manual_seed(0)
    m = AltFreezing({}, SGD, clip_len=4, zero_init_final_bn=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.logits(torch.randn(2, 4, 3, 32, 32)).float().sum()
    loss.backward()
    assert [n for n, p in m.named_parameters() if not bool(torch.isfinite(p.grad).all())] == []


def test_the_network_is_an_i3d_resnet50_with_deepfakebenchs_parameter_count():
    net = I3DResNet().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 4, 64, 64)).shape == (2,)
    keys = json.loads(MANIFEST.read_text())["keys"]
    # DeepfakeBench's AltFreezingDetector: 27,225,921 parameters (SlowFast I3D R50, Linear(2048, 1))
    assert sum(p.numel() for p in net.parameters()) == 27_225_921
    assert len(net.state_dict()) == len(keys)


def test_iteration_count_survives_a_checkpoint_and_bad_state_is_named():
    m = AltFreezing({}, SGD, clip_len=2)
    m.load_extra_state({"iteration": 22})
    assert m.phase() == "temporal" and m.phase(21) == "spatial"
    with pytest.raises(ValueError, match="unknown"):
        m.load_extra_state({"step": 1})


def test_pretrained_is_decided_a_missing_file_is_named_and_kinetics_weights_load_strictly(tmp_path):
    with pytest.raises(ValueError, match="method.pretrained"):
        AltFreezing({}, SGD, clip_len=2, pretrained=None)
    with pytest.raises(FileNotFoundError, match="I3D_8x8_R50"):
        AltFreezing({}, SGD, clip_len=2, pretrained=str(tmp_path / "I3D_8x8_R50.pth"))
    g = torch.Generator().manual_seed(0)
    source = {}
    for key, shape in json.loads(MANIFEST.read_text())["keys"].items():
        key = key.removeprefix("resnet.")
        shape = (
            [400, 2048]
            if key == "head.projection.weight"
            else [400]
            if key == "head.projection.bias"
            else shape
        )
        source[key] = (
            torch.randint(0, 5, shape, generator=g) if not shape else torch.randn(shape, generator=g)
        )
    path = tmp_path / "I3D_8x8_R50.pth"
    torch.save({"model_state": source}, path)
    m = AltFreezing({}, SGD, clip_len=2, pretrained=str(path))
    assert m.loaded_pretrained == len(source)
    sd = m.net.state_dict()
    assert torch.equal(sd["projection.weight"], source["head.projection.weight"][:1])  # the first class
    assert torch.equal(sd["stages.3.2.conv_b.weight"], source["s5.pathway0_res2.branch2.b.weight"])
    source["s6.extra.weight"] = torch.zeros(1)
    torch.save(source, path)
    with pytest.raises(ValueError, match="s6.extra"):
        AltFreezing({}, SGD, clip_len=2, pretrained=str(path))


def test_slowfast_keys_map_through_res5_and_the_head():
    assert i3d_key("s5.pathway0_res0.branch1_bn.running_var") == "stages.3.0.proj_bn.running_var"
    assert i3d_key("s5.pathway0_res1.branch2.a.weight") == "stages.3.1.conv_a.weight"
    assert i3d_key("s2.pathway0_res0.branch2.b_bn.bias") == "stages.0.0.bn_b.bias"
    assert i3d_key("s1.pathway0_stem.conv.weight") == "stem_conv.weight"
    assert i3d_key("head.projection.bias") == "projection.bias"
    assert i3d_key("head.act.weight") is None


@pytest.mark.parametrize(
    "option,clip_len,rule,lr,batch,epochs,pretrained,optimiser",
    [
        ("altfreezing", 32, "consecutive", 0.05, 16, 100, False, "torch.optim.SGD"),
        ("altfreezing/dfb", 16, "dfb", 2e-4, 8, 10, None, "torch.optim.Adam"),
    ],
)
def test_configs_compose_with_the_recipes(option, clip_len, rule, lr, batch, epochs, pretrained, optimiser):
    cfg = compose([f"method={option}"])
    m = cfg.method
    assert (m.clip_len, m.clip_rule, m.pretrained, m.optim.lr, m.optim._target_) == (
        clip_len,
        rule,
        pretrained,
        lr,
        optimiser,
    )
    assert dict(m.alternation) == {"spatial": 1, "temporal": 20, "first": "spatial"} and m.dropout == 0.5
    assert (cfg.input.size, cfg.trainer.batch_size, cfg.trainer.epochs) == (224, batch, epochs)
    assert list(cfg.input.mean) == [0.5] * 3 and list(cfg.input.std) == [0.5] * 3
    smoke = compose([f"method={option}", "+scale=smoke"])
    assert smoke.method.clip_len == 4 and smoke.input.size == 64
    # the paper's recipe reads consecutive frames: the synthetic benchmark stores 2 clips of 4 for it
    rule, clips = ("dfb", 0) if option.endswith("/dfb") else ("consecutive", 2)
    assert smoke.method.clip_rule == rule and smoke.data.generator.clips == clips
    assert cfg.data.generator.clips == 0  # full scale: the default benchmark
    if option == "altfreezing/dfb":
        assert m.name == "altfreezing_dfb" and m.optim.weight_decay == 5e-4 and m.scheduler.name == "none"
    else:
        assert m.optim.momentum == 0.9 and m.optim.weight_decay == 1e-4 and m.scheduler.name == "cosine"


def test_the_smoke_config_builds_a_4_frame_clip_method():
    cfg = compose(["method=altfreezing", "+scale=smoke"])
    m = build_method(cfg.method, cfg.backbone)
    assert isinstance(m, AltFreezing) and m.clip_len == 4 and m.clip_rule == "consecutive"
    assert "clips" in m.data_needs and m.run_info()["alternation"]["temporal"] == 20


def test_converter_maps_deepfakebenchs_keys_and_refuses_a_many_class_head():
    from detect.convert.common import ConversionError
    from detect.convert.dfb_altfreezing import convert_altfreezing, rename

    assert rename("resnet.s5.pathway0_res2.branch2.c_bn.weight") == "net.stages.3.2.bn_c.weight"
    assert rename("resnet.head.projection.weight") == "net.projection.weight"
    assert rename("head.projection.weight") is None
    with pytest.raises(ConversionError, match="outputs"):
        convert_altfreezing({"resnet.head.projection.weight": torch.zeros(2, 2048)})


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_trains_and_evaluates_videos_from_clips(synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, ["method=altfreezing", "+scale=smoke"]).results
    m = results["metrics"]["FF++"]
    assert 0.0 <= m["video_auc"] <= 1.0 and m["n_clips"] > 0
    # the benchmark's 2 clips of 4 consecutive frames per video, read whole
    assert m["n_clips"] == 2 * m["n_videos"] and m["n_frames"] == 4 * m["n_clips"]
    assert results["method_info"]["clip_len"] == 4
