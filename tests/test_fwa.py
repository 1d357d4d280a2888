"""FWA (Li & Lyu, CVPRW 2019): the face warp against a hand computation (aligned crop, 5x5 Gaussian, back
in place), the warp-back changing only the face region, the alignment, seeded pairs, one update reaching
every parameter, both recipes' configs, and a smoke run end to end."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose, cpu_step_context, tiny_df_train_table
from step_probe import (
    graded_exactly_the_trainable,
    predicts_probabilities,
    short_smoke_metrics,
    smoke_method,
    spy_step_gradients,
)

from detect.data.blend.face_warp import FaceWarpConfig, FaceWarper, alignment_matrix, face_warp, hull_region
from detect.data.synth_pairs import SynthPairDataset
from detect.data.transforms import Pipeline
from detect.methods.fwa import FWA

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.1}
PLAIN = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


def _square_landmarks() -> np.ndarray:
    rng = np.random.default_rng(0)
    lm = rng.uniform(12, 39, (68, 2))
    lm[0], lm[1] = (10, 10), (41, 41)  # bounding box 10..41: extent 31
    lm[36:48, 1] = 20.0  # level eyes, dlib order: 36-41 on the image's left, 42-47 on its right
    lm[36:42, 0] = rng.uniform(14, 22, 6)
    lm[42:48, 0] = rng.uniform(30, 38, 6)
    return lm


def test_face_warp_by_hand_on_an_axis_aligned_face():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    lm = _square_landmarks()
    matrix = alignment_matrix(lm, 31)  # no rotation, scale 1, shift by -10: an exact crop
    np.testing.assert_allclose(matrix, [[1, 0, -10], [0, 1, -10]], atol=1e-9)
    fake, region = face_warp(image, lm, np.random.default_rng(2), FaceWarpConfig(sizes=(31,), p_hull=0.0))
    crop_blur = cv2.GaussianBlur(image[10:41, 10:41], (5, 5), 0)  # the aligned face, blurred
    want = image.copy()
    want[11:40, 11:40] = crop_blur[1:-1, 1:-1]  # warped back; the square's edge pixels are left out
    assert region.sum() == 29 * 29 and bool(region[11:40, 11:40].all())
    np.testing.assert_array_equal(fake, want)


def test_alignment_levels_the_eyes_and_fills_the_square():
    lm = _square_landmarks()
    theta = np.deg2rad(25)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    turned = (lm - 30) @ rot.T + 32
    m = alignment_matrix(turned, 100)
    out = np.c_[turned, np.ones(68)] @ m.T
    eyes = out[36:48]
    assert np.ptp(eyes[:, 1]) < 1e-6  # the eye line is horizontal again
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(100.0, abs=1e-6)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    return tiny_df_train_table(tmp_path_factory)


@pytest.mark.parametrize("p_hull", [0.0, 1.0])
def test_warp_back_changes_only_the_face_region(table, p_hull):
    cfg = FaceWarpConfig(p_hull=p_hull)
    ds = SynthPairDataset(table, Pipeline(**PLAIN), FaceWarper(cfg), seed=0)
    for i in range(len(ds)):
        real, fake, region, row = ds.raw_pair(i)
        inside = region > 0
        assert inside.any() and np.array_equal(fake[~inside], real[~inside])
        assert not np.array_equal(fake[inside], real[inside])
        lm = ds._landmarks(row)
        if p_hull == 1.0:
            assert bool(hull_region(lm, real.shape[:2])[inside].all())
        # the region lies inside the aligned square of the landmarks (its preimage, any drawn size)
        x0, y0 = lm[:68].min(0) - 0.3 * np.ptp(lm[:68], 0)
        x1, y1 = lm[:68].max(0) + 0.3 * np.ptp(lm[:68], 0)
        ys, xs = np.nonzero(inside)
        assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1


def test_pairs_are_seeded(table):
    a = SynthPairDataset(table, Pipeline(**PLAIN), FaceWarper(), seed=7)
    b = SynthPairDataset(table, Pipeline(**PLAIN), FaceWarper(), seed=7)
    assert np.array_equal(a.raw_pair(2)[1], b.raw_pair(2)[1])
    b.set_epoch(3)
    assert not np.array_equal(a.raw_pair(2)[2], b.raw_pair(2)[2]) or not np.array_equal(
        a.raw_pair(2)[1], b.raw_pair(2)[1]
    )
    item = a[2]
    assert item["images"].shape == (2, 3, 64, 64) and item["labels"].tolist() == [0.0, 1.0]


def test_every_trainable_parameter_gets_a_gradient_in_one_step():
    torch.manual_seed(0)
    m = FWA(TINY, SGD)
    m.configure_optimizers(1, 1)
    ctx = cpu_step_context()
    seen = spy_step_gradients(m, ctx)
    g = torch.Generator().manual_seed(5)
    batch = {
        "images": torch.randn(2, 2, 3, 64, 64, generator=g),
        "masks": torch.zeros(2, 2, 64, 64),
        "labels": torch.tensor([[0.0, 1.0]] * 2),
        "indices": torch.tensor([[4, 4], [9, 9]]),
    }
    out = m.fit_step(batch, ctx)
    assert graded_exactly_the_trainable(m, seen)
    assert "bce" in out.logs and out.indices.tolist() == [4, 9, 4, 9]
    logits = m.logits(batch["images"].transpose(0, 1).reshape(4, 3, 64, 64)).detach()
    assert out.sample_losses.shape == (4,) and logits.shape == (4,)


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=fwa"]), compose(["method=fwa/dfb"])
    assert paper.backbone.timm_name == "resnet50" and paper.input.size == 224
    assert paper.method.optim._target_ == "torch.optim.SGD" and paper.method.optim.lr == 0.001
    assert (paper.method.scheduler.name, paper.method.scheduler.gamma) == ("exponential", 0.95)
    assert (paper.trainer.epochs, paper.trainer.batch_size) == (20, 32)
    assert list(paper.method.warp.size_range) == [64, 127] and paper.method.warp.p_hull == 0.5
    assert dfb.backbone.timm_name == "legacy_xception" and dfb.input.size == 256
    assert list(dfb.input.mean) == [0.5] * 3 and dfb.method.optim.lr == 2e-4
    assert (dfb.trainer.epochs, dfb.trainer.batch_size, dfb.protocol.frames.train) == (10, 16, 32)
    assert list(dfb.method.warp.sizes) == [51, 77, 102, 128, 154, 179, 205] and dfb.method.warp.p_hull == 1.0
    smoke, m = smoke_method("fwa")
    assert isinstance(m, FWA) and m.needs_for(smoke.method) == frozenset({"landmarks"})
    assert predicts_probabilities(m)  # images only


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("preset", ["fwa", "fwa/dfb"])
def test_smoke_run_end_to_end(synthetic_cache, tmp_path, preset):
    metrics = short_smoke_metrics(synthetic_cache, tmp_path, preset)
    assert "FF++" in metrics and 0.0 <= metrics["FF++"]["frame_auc"] <= 1.0
