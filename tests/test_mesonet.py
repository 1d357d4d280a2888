"""MesoNet (Afchar et al., WIFS 2018): Meso-4 and MesoInception-4 layer shapes at 256 px, the paper's
parameter counts, the dilated inception branches, DeepfakeBench's shared batch normalisations, the losses
against hand computations, one update, the configs, and a smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import compose, train_in_process
from source_models import MANIFESTS
from step_probe import fixed_batch, one_step_gradients

from detect.engine.method_builder import build_method
from detect.methods.mesonet import MesoInception, MesoNet, MesoNetwork, meso_losses

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
INPUT_ONLY = {"name": "none", "timm_name": None, "input_size": 64}


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "architecture,channels",
    [("meso4", [8, 8, 16, 16]), ("meso_inception4", [11, 12, 16, 16])],
)
@pytest.mark.parametrize("layout", ["paper", "dfb"])
def test_block_output_shapes_at_256_px(architecture, channels, layout):
    net = MesoNetwork(architecture, layout, 256).eval()
    maps = net.feature_maps(torch.zeros(1, 3, 256, 256))
    sides = [128, 64, 32, 8]  # pools 2, 2, 2, 4
    assert [tuple(m.shape[1:]) for m in maps] == [(c, s, s) for c, s in zip(channels, sides, strict=True)]
    assert net.flat == 16 * 8 * 8 == net.classifier[1].in_features
    assert net(torch.zeros(2, 3, 256, 256)).shape == (2,)


def test_parameter_counts_are_the_papers_and_deepfakebenchs():
    # the paper's counts (Sec. 3): trainable parameters at 256 px
    assert _trainable(MesoNetwork("meso4", "paper", 256)) == 27_977
    assert _trainable(MesoNetwork("meso_inception4", "paper", 256)) == 28_615
    # DeepfakeBench's layout: its model's parameters (manifest) minus the second logit's 16 + 1
    for architecture, fmt in (("meso4", "dfb_meso4"), ("meso_inception4", "dfb_meso_inception4")):
        keys = json.loads((MANIFESTS / f"{fmt}.json").read_text())["keys"]
        dfb = sum(
            math.prod(s)
            for k, s in keys.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
        assert _trainable(MesoNetwork(architecture, "dfb", 256)) == dfb - 17
    # the FC layer follows the input size: 64 px -> 16 x 2 x 2
    assert MesoNetwork("meso4", "paper", 64).flat == 64
    with pytest.raises(ValueError, match="divisible by 32"):
        MesoNetwork("meso4", "paper", 100)


def test_inception_branches_are_dilated_1_2_3_by_hand():
    """An impulse through the 3x3 of each branch reaches exactly the offsets {-r, 0, r}^2 of its dilation r;
    the 1x1 branch stays at the impulse; outputs concatenate as a + b + c + d channels."""
    torch.manual_seed(0)
    m = MesoInception(1, (1, 4, 4, 2), bias=False, relu=False).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.ones_like(p))
    x = torch.zeros(1, 1, 15, 15, dtype=torch.float64)
    x[0, 0, 7, 7] = 1.0
    y = m(x)[0]
    assert y.shape == (11, 15, 15)
    splits = torch.split(y, [1, 4, 4, 2])
    assert torch.nonzero(splits[0][0]).tolist() == [[7, 7]]
    for branch, r in zip(splits[1:], (1, 2, 3), strict=True):
        want = sorted([7 + i * r, 7 + j * r] for i in (-1, 0, 1) for j in (-1, 0, 1))
        assert torch.nonzero(branch[0]).tolist() == want
        # 1x1 then 3x3 with all-ones weights: each output channel = (width) · impulse at every tap
        assert torch.allclose(
            branch[0][branch[0] != 0], torch.full((9,), float(branch.shape[0]), dtype=torch.float64)
        )


def test_deepfakebench_layout_shares_its_batch_normalisations():
    paper, dfb = MesoNetwork("meso4", "paper", 64), MesoNetwork("meso4", "dfb", 64)
    assert len(paper.norms) == 4 and len(dfb.norms) == 2 and dfb.norm_of == [0, 0, 1, 1]
    assert all(c.bias is None for c in dfb.layers) and all(c.bias is not None for c in paper.layers)
    dfb.train()(torch.randn(2, 3, 64, 64))
    assert [int(n.num_batches_tracked) for n in dfb.norms] == [2, 2]  # each used by two blocks
    inc = MesoNetwork("meso_inception4", "dfb", 64)
    assert inc.norm_of == [0, 1, 2, 2] and [n.num_features for n in inc.norms] == [11, 12, 16]
    assert all(b.reduce.bias is None for b in inc.layers[0].branches) and not inc.layers[0].branches[1].relu


def test_losses_by_hand():
    z = torch.tensor([0.0, 2.0, -1.0])
    y = torch.tensor([1.0, 0.0, 0.0])
    s = [1 / (1 + math.exp(-v)) for v in (0.0, 2.0, -1.0)]
    torch.testing.assert_close(
        meso_losses(z, y, "mse"), torch.tensor([(s[0] - 1) ** 2, s[1] ** 2, s[2] ** 2])
    )
    want = [-math.log(s[0]), -math.log(1 - s[1]), -math.log(1 - s[2])]
    torch.testing.assert_close(meso_losses(z, y, "bce"), torch.tensor(want))


@pytest.mark.parametrize("option", ["meso4", "meso_inception4", "meso4/dfb", "meso_inception4/dfb"])
def test_one_step_reaches_every_parameter_and_logs_its_loss(option):
    cfg = compose([f"method={option}", "+scale=smoke"])
    torch.manual_seed(0)
    m = build_method(cfg.method, cfg.backbone)
    out, grads = one_step_gradients(m, fixed_batch())
    assert [n for n, g in grads.items() if g == 0.0] == []
    assert set(out.logs) == {cfg.method.loss} and float(out.logs[cfg.method.loss]) == pytest.approx(
        float(out.loss)
    )
    assert out.sample_losses.shape == (4,) and torch.equal(out.indices, torch.arange(10, 14))
    m.eval()
    p = m.predict(fixed_batch()["image"])  # images only: no masks, landmarks or pairs
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=meso4"]), compose(["method=meso4/dfb"])
    inc, inc_dfb = compose(["method=meso_inception4"]), compose(["method=meso_inception4/dfb"])
    for c in (paper, dfb, inc, inc_dfb):
        assert c.backbone.name == "none" and c.backbone.input_size == 256 and c.input.size == 256
        assert c.method._target_ == "detect.methods.mesonet.MesoNet"
    assert (paper.method.layout, paper.method.loss, paper.method.optim.lr) == ("paper", "mse", 1e-3)
    assert (
        list(paper.method.scheduler.milestones) == [1000, 2000, 3000] and paper.method.scheduler.gamma == 0.1
    )
    assert (
        paper.trainer.batch_size == 75
        and list(paper.input.mean) == [0, 0, 0]
        and list(paper.input.std) == [1, 1, 1]
    )
    assert (dfb.method.layout, dfb.method.loss, dfb.method.optim.lr, dfb.method.optim.weight_decay) == (
        "dfb",
        "bce",
        2e-4,
        5e-4,
    )
    assert dfb.method.scheduler.name == "none" and dfb.trainer.batch_size == 32 and dfb.trainer.epochs == 10
    assert (
        list(dfb.input.mean) == [0.5] * 3
        and list(dfb.input.std) == [0.5] * 3
        and list(dfb.augment.train) == []
    )
    assert dfb.protocol.frames.train == 32 and dfb.method.name == "meso4_dfb"
    assert inc.method.architecture == inc_dfb.method.architecture == "meso_inception4"
    assert (inc.method.name, inc_dfb.method.name, inc_dfb.method.layout) == (
        "meso_inception4",
        "meso_inception4_dfb",
        "dfb",
    )
    # the backbone group's network is not built: only its input size is read
    m = MesoNet(INPUT_ONLY, ADAM)
    assert m.net.flat == 64 and not any("backbone" in n for n, _ in m.named_parameters())
    assert m.run_info() == {"architecture": "meso4", "layout": "paper", "parameters": _trainable(m)}


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("option", ["meso4", "meso_inception4/dfb"])
def test_smoke_run_trains_and_evaluates(synthetic_cache, tmp_path, option):
    results = train_in_process(synthetic_cache, tmp_path, [f"method={option}", "+scale=smoke"]).results
    auc = results["metrics"]["FF++"]["frame_auc"]
    assert 0.0 <= auc <= 1.0 and results["method_info"]["architecture"] == option.split("/")[0]


def test_paper_scale_asks_no_pretrained_weights_for_a_network_without_backbone():
    from detect.engine.run_config import check_pretrained

    cfg = compose(["method=meso4/dfb", "+scale=paper"])
    assert cfg.backbone.name == "none" and cfg.backbone.pretrained is None
    check_pretrained(cfg)  # no timm network: nothing to initialise from ImageNet
    with pytest.raises(ValueError, match="backbone.pretrained"):
        check_pretrained(compose(["method=cnn_aug", "+scale=paper"]))
