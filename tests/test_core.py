"""CORE (Ni et al., CVPRW 2022): the cosine consistency loss and the weighted CE against hand computations,
the two-view dataset's two draws, one update reaching every parameter with each loss logged (both
pairings), evaluation on images alone, both recipes' configs, and a smoke run on the synthetic benchmark."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import compose, cpu_step_context, train_in_process
from step_probe import fit_once_with_last_gradients, without_gradient

from detect.data.datasets import FrameDataset
from detect.data.transforms import Pipeline
from detect.data.two_view import TwoViewDataset
from detect.engine.data_needs import method_needs
from detect.engine.method_builder import build_method
from detect.methods.core import CORE, consistency_loss, weighted_bce

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


def test_consistency_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, -1.0], [6.0, 8.0]])
    # cos = 1/√2, -1, 1 -> (1 - cos)²
    want = torch.tensor([(1 - 1 / math.sqrt(2)) ** 2, 4.0, 0.0])
    torch.testing.assert_close(consistency_loss(a, b), want)
    torch.testing.assert_close(consistency_loss(5 * a, b), want)  # the length of a representation is free
    # the mean is DeepfakeBench's / the authors' MSE between the cosine and 1
    cos = F.cosine_similarity(a, b, dim=1)
    torch.testing.assert_close(consistency_loss(a, b).mean(), F.mse_loss(cos, torch.ones(3)))


def test_weighted_bce_is_the_weighted_mean_of_cross_entropy():
    z = torch.tensor([0.5, -1.0, 2.0])
    y = torch.tensor([0.0, 1.0, 0.0])
    ce = [math.log(1 + math.exp(0.5)), math.log(1 + math.exp(1.0)), math.log(1 + math.exp(2.0))]
    per = weighted_bce(z, y, 4.0)
    torch.testing.assert_close(per.mean(), torch.tensor((4 * ce[0] + ce[1] + 4 * ce[2]) / 9))
    # the same as nn.CrossEntropyLoss(weight=[4, 1]) on the two logits [0, z]
    two = torch.stack([torch.zeros(3), z], dim=1)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor([4.0, 1.0]))(two, y.long())
    torch.testing.assert_close(per.mean(), ref)


def test_two_view_dataset_gives_two_different_draws_of_one_frame(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    table = pd.DataFrame([{"path": str(tmp_path / "a.png"), "label": 1}])
    erase = [
        {"_target_": "albumentations.Erasing", "scale": [0.1, 0.2], "ratio": [0.5, 2.0], "fill": 0, "p": 1.0}
    ]
    pipe = Pipeline(32, [0.0] * 3, [1.0 / 255] * 3, augment=erase)
    pipe.set_seed(0)
    item = TwoViewDataset(table, pipe)[0]
    v1, v2 = item["images"]
    assert item["images"].shape == (2, 3, 32, 32) and item["label"] == 1 and item["index"] == 0
    assert not torch.equal(v1, v2)  # two draws: the erased rectangles differ
    # outside the erased pixels both views are the frame itself
    frame = torch.from_numpy(img).permute(2, 0, 1).float()
    for v in (v1, v2):
        kept = (v != 0).all(dim=0)
        assert 0.7 < kept.float().mean() < 0.95
        torch.testing.assert_close(v[:, kept], frame[:, kept])
    plain = TwoViewDataset(table, Pipeline(32, [0.0] * 3, [1.0 / 255] * 3))[0]["images"]
    assert torch.equal(plain[0], plain[1])  # no augmentation: the two views are the frame


def _batch(views: bool, b: int = 4) -> dict:
    g = torch.Generator().manual_seed(2)
    out = {"label": torch.tensor([0.0, 1.0] * (b // 2)), "index": torch.arange(10, 10 + b)}
    if views:
        out["images"] = torch.randn(b, 2, 3, 64, 64, generator=g)
    else:
        out["image"] = torch.randn(b, 3, 64, 64, generator=g)
    return out


@pytest.mark.parametrize("pairing", ["views", "batch_halves"])
def test_one_step_reaches_every_parameter_and_logs_each_loss(pairing):
    torch.manual_seed(0)
    m = CORE(TINY, ADAM, pairing=pairing)
    out, grads = fit_once_with_last_gradients(m, _batch(pairing == "views"))
    assert without_gradient(m, grads) == []
    assert set(out.logs) == {"ce", "consistency"} and float(out.logs["consistency"]) > 0
    assert out.sample_losses.shape == (4,)
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)


def test_the_loss_is_ce_on_both_views_plus_lambda_times_the_consistency():
    torch.manual_seed(0)
    m = CORE(TINY, ADAM, consistency_weight=3.0, real_weight=4.0).eval()  # eval: a fixed forward
    batch = _batch(True)
    per_sample, logs = m.training_losses(batch, cpu_step_context())
    v = batch["images"]
    l1, r1 = m.forward_parts(v[:, 0])
    l2, r2 = m.forward_parts(v[:, 1])
    y = batch["label"]
    w = torch.where(y > 0.5, 1.0, 4.0).repeat(2)
    ce = F.binary_cross_entropy_with_logits(torch.cat([l1, l2]), y.repeat(2), reduction="none")
    want_ce = (w * ce).sum() / w.sum()
    want_con = (1 - F.cosine_similarity(r1, r2, dim=1)).pow(2).mean()
    torch.testing.assert_close(per_sample.mean(), want_ce + 3.0 * want_con, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logs["consistency"], want_con, atol=1e-6, rtol=1e-5)


def test_batch_halves_pairs_sample_i_with_sample_i_plus_half():
    torch.manual_seed(0)
    m = CORE(TINY, ADAM, pairing="batch_halves", real_weight=1.0).eval()
    batch = _batch(False)
    _, logs = m.training_losses(batch, cpu_step_context())
    _, r = m.forward_parts(batch["image"])
    want = (1 - F.cosine_similarity(r[:2], r[2:], dim=1)).pow(2).mean()
    torch.testing.assert_close(logs["consistency"], want, atol=1e-6, rtol=1e-5)


def test_training_views_and_evaluation_on_images_only(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    table = pd.DataFrame([{"path": str(tmp_path / "a.png"), "label": 0}])
    pipe = Pipeline(16, [0.5] * 3, [0.5] * 3)
    torch.manual_seed(0)
    assert type(CORE(TINY, ADAM).build_train_dataset(table, pipe)) is TwoViewDataset
    m = CORE(TINY, ADAM, pairing="batch_halves")
    assert type(m.build_train_dataset(table, pipe)) is FrameDataset
    p = m.eval().predict(torch.randn(3, 3, 64, 64))
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())
    assert method_needs(compose(["method=core"]).method) == frozenset()


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=core"]), compose(["method=core/dfb"])
    assert paper.backbone.timm_name == dfb.backbone.timm_name == "legacy_xception"
    assert (paper.input.size, dfb.input.size) == (299, 256)
    assert list(paper.input.mean) == list(dfb.input.std) == [0.5, 0.5, 0.5]
    assert (paper.method.pairing, dfb.method.pairing) == ("views", "batch_halves")
    assert (paper.method.consistency_weight, dfb.method.consistency_weight) == (1.0, 1.0)
    assert (paper.method.real_weight, dfb.method.real_weight) == (4.0, 1.0)
    assert (paper.method.optim.lr, paper.method.optim.weight_decay, dfb.method.optim.weight_decay) == (
        2e-4,
        0.0,
        5e-4,
    )
    assert (paper.trainer.epochs, paper.trainer.batch_size, dfb.trainer.epochs, dfb.trainer.batch_size) == (
        30,
        32,
        10,
        32,
    )
    assert [a["_target_"] for a in paper.augment.train] == [
        "albumentations.HorizontalFlip",
        "albumentations.Erasing",
    ]
    assert list(dfb.augment.train) == [] and dfb.protocol.frames.train == 32 and dfb.method.name == "core_dfb"
    smoke = compose(["method=core", "+scale=smoke"])
    assert isinstance(build_method(smoke.method, smoke.backbone), CORE)


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("recipe", ["core", "core/dfb"])
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache, tmp_path, recipe):
    trainer = train_in_process(synthetic_cache, tmp_path, [f"method={recipe}", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())
