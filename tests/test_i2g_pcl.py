"""I2G-PCL (Zhao et al., ICCV 2021): the consistency target on a 4x4 patch grid, the consistency branch and
the PCL loss against hand computations, the I2G pair view (masks where the blend is, seeded per sample, one
augmentation draw for the pair), one update reaching every parameter with each loss logged, evaluation on
images alone, both recipes' configs, and a smoke run on the synthetic benchmark."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose, cpu_step_context, tiny_df_train_table, train_in_process
from step_probe import fit_once_with_last_gradients, without_gradient

from detect.data.i2g_pairs import I2GPairDataset
from detect.data.images import read_landmarks
from detect.data.transforms import Pipeline
from detect.engine.data_needs import method_needs
from detect.engine.method_builder import build_method
from detect.methods.i2g_pcl import I2GPCL, PairwiseConsistency, consistency_volume, patch_means, pcl_loss

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
PLAIN = {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


# -- the consistency target, branch and loss ------------------------------------------------------------
def test_consistency_targets_by_hand_on_a_4x4_patch_grid():
    mask = torch.zeros(2, 1, 8, 8)  # 2x2 pixels per patch
    mask[0, 0, 0:2, 0:2] = 1.0  # patch 0 (row 0, col 0): M = 1
    mask[0, 0, 2:4, 2:4] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # patch 5 (row 1, col 1): M = 0.5
    mask[0, 0, 6:8, 6:8] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # patch 15: M = 0.25
    # sample 1 is a real image: zero mask
    means = {0: 1.0, 5: 0.5, 15: 0.25}
    m = [means.get(i, 0.0) for i in range(16)]
    torch.testing.assert_close(patch_means(mask, (4, 4))[0], torch.tensor(m))
    v = consistency_volume(mask, (4, 4))
    assert v.shape == (2, 16, 16)
    want = torch.tensor([[1.0 - abs(a - b) for b in m] for a in m])
    torch.testing.assert_close(v[0], want)
    # spot values: same-source pairs 1, fully blended vs pristine 0, half vs full 0.5, quarter vs half 0.75
    assert (v[0, 1, 2], v[0, 0, 1], v[0, 0, 5], v[0, 5, 15], v[0, 0, 0]) == (1.0, 0.0, 0.5, 0.75, 1.0)
    torch.testing.assert_close(v[1], torch.ones(16, 16))  # a real image is consistent everywhere
    # DeepfakeBench's reading: bilinear resampling with aligned corners instead of patch means
    bil = consistency_volume(mask, (4, 4), resize="bilinear")
    m_bil = torch.nn.functional.interpolate(mask, size=(4, 4), mode="bilinear", align_corners=True)
    torch.testing.assert_close(bil[0, 0, 5], 1.0 - (m_bil[0, 0, 0, 0] - m_bil[0, 0, 1, 1]).abs())
    assert not torch.allclose(bil[0], v[0])
    with pytest.raises(ValueError, match="mask_resize='nearest'"):
        patch_means(mask, (4, 4), resize="nearest")


def test_pairwise_consistency_is_the_sigmoid_of_scaled_dot_products():
    branch = PairwiseConsistency(2)
    with torch.no_grad():
        branch.theta.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]])[:, :, None, None])
        branch.theta.bias.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)  # patches (1, 0) and (0, 1)
    # θ: patch a -> (2, 1), patch b -> (0, 2); dots: aa 5, ab 2, bb 4; scaled by 1/√2, then σ
    s = lambda d: 1.0 / (1.0 + math.exp(-d / math.sqrt(2.0)))  # noqa: E731
    want = torch.tensor([[[s(5), s(2)], [s(2), s(4)]]])
    torch.testing.assert_close(branch.consistency(x), want)
    torch.testing.assert_close(branch(x), torch.tensor([[[5.0, 2.0], [2.0, 4.0]]]) / math.sqrt(2.0))


def test_pcl_loss_by_hand():
    p = torch.tensor([[[0.9, 0.2], [0.2, 0.8]], [[0.5, 0.5], [0.5, 0.5]]])
    scores = torch.log(p / (1 - p))  # σ(scores) = p
    t = torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    first = (-math.log(0.9) - 2 * (0.5 * math.log(0.2) + 0.5 * math.log(0.8)) - math.log(0.8)) / 4
    torch.testing.assert_close(pcl_loss(scores, t), torch.tensor([first, math.log(2.0)]))
    # saturated scores keep a finite loss and gradient (where σ(s) rounds to 0 in float32)
    s = torch.full((1, 1, 1), -200.0, requires_grad=True)
    loss = pcl_loss(s, torch.ones(1, 1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(200.0) and s.grad.item() == pytest.approx(-1.0)


# -- the I2G pair view ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    return tiny_df_train_table(tmp_path_factory)


def test_i2g_masks_lie_where_the_blend_is_and_inside_the_face(table, tmp_path):
    ds = I2GPairDataset(table, Pipeline(**PLAIN), cache_dir=tmp_path)
    assert len(ds) == int((table["label"] == 0).sum())
    for i in range(len(ds)):
        (real, fake), (zero, mask), row = ds.raw_pair(i)
        assert table.at[row, "label"] == 0 and not zero.any()
        assert mask.dtype == np.float32 and mask.min() >= 0 and 0 < mask.max() <= 1
        outside = mask == 0
        assert np.array_equal(fake[outside], real[outside])  # nothing changes outside the mask
        assert not np.array_equal(fake[~outside], real[~outside])
        lm = read_landmarks(table.at[row, "landmark_path"])  # the hull is drawn from these landmarks
        x0, y0 = np.maximum(lm.min(0).astype(int) - 40, 0)
        x1, y1 = lm.max(0).astype(int) + 40
        box = np.zeros(mask.shape, bool)
        box[y0:y1, x0:x1] = True
        assert not (mask > 0)[~box].any()


def test_i2g_pairs_are_seeded_per_sample_and_epoch(table, tmp_path):
    ds = I2GPairDataset(table, Pipeline(**PLAIN), cache_dir=tmp_path, seed=3)
    a = ds.raw_pair(1)[1][1]
    assert np.array_equal(a, ds.raw_pair(1)[1][1])  # no state carried between items
    ds.raw_pair(0)
    assert np.array_equal(a, ds.raw_pair(1)[1][1])
    ds.set_epoch(1)
    assert not np.array_equal(a, ds.raw_pair(1)[1][1])
    other = I2GPairDataset(table, Pipeline(**PLAIN), cache_dir=tmp_path, seed=4)
    assert not np.array_equal(a, other.raw_pair(1)[1][1])


def test_i2g_items_share_one_geometric_draw_with_their_masks(table, tmp_path):
    flip = [{"_target_": "albumentations.HorizontalFlip", "p": 1.0}]
    size = I2GPairDataset(table, Pipeline(**PLAIN), cache_dir=tmp_path).raw_pair(0)[0][0].shape[0]
    native = {**PLAIN, "size": size}  # no resize: the flip alone moves the pixels
    plain = I2GPairDataset(table, Pipeline(**native), cache_dir=tmp_path)[0]
    flipped = I2GPairDataset(table, Pipeline(augment=flip, **native), cache_dir=tmp_path, train=True)[0]
    assert flipped["images"].shape == (2, 3, size, size) and flipped["masks"].shape == (2, 1, size, size)
    assert flipped["labels"].tolist() == [0.0, 1.0] and flipped["indices"][0] == flipped["indices"][1]
    torch.testing.assert_close(flipped["masks"], plain["masks"].flip(-1))
    torch.testing.assert_close(flipped["images"], plain["images"].flip(-1))
    assert float(flipped["masks"][0].abs().sum()) == 0.0 and float(flipped["masks"][1].sum()) > 0
    # where the fake differs from its real, the (moved) mask is non-zero
    diff = (flipped["images"][1] - flipped["images"][0]).abs().amax(0) > 0.1
    assert diff.any() and bool((flipped["masks"][1, 0][diff] > 0).all())


# -- the method -----------------------------------------------------------------------------------------
def _batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(2)
    masks = torch.zeros(b, 2, 1, 64, 64)
    masks[:, 1, :, 16:48, 8:40] = 0.8
    return {
        "images": torch.randn(b, 2, 3, 64, 64, generator=g),
        "masks": masks,
        "labels": torch.tensor([[0.0, 1.0]] * b),
        "indices": torch.arange(10, 10 + 2 * b).reshape(b, 2),
    }


def test_one_step_reaches_every_parameter_and_logs_each_loss():
    torch.manual_seed(0)
    m = I2GPCL(TINY, ADAM)
    out, grads = fit_once_with_last_gradients(m, _batch())
    assert without_gradient(m, grads) == []
    assert set(out.logs) == {"cls", "pcl"}
    assert out.sample_losses.shape == (4,) and out.indices.tolist() == [10, 12, 11, 13]  # reals, then fakes
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)
    assert m.run_info() == {"pcl_layer": "blocks.3", "pcl_grid": [4, 4]}


def test_the_loss_is_cls_plus_lambda_times_pcl():
    torch.manual_seed(0)
    m = I2GPCL(TINY, ADAM, pcl_weight=2.5).eval()  # eval: a fixed forward
    batch = _batch()
    per_sample, logs = m.training_losses(batch, cpu_step_context())
    images = batch["images"].transpose(0, 1).reshape(-1, 3, 64, 64)
    masks = batch["masks"].transpose(0, 1).reshape(-1, 1, 64, 64)
    logit, volume = m.forward_parts(images)
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    cls = torch.nn.functional.binary_cross_entropy_with_logits(logit, labels, reduction="none")
    target = consistency_volume(masks, (4, 4))
    torch.testing.assert_close(per_sample, cls + 2.5 * pcl_loss(volume, target))
    torch.testing.assert_close(logs["pcl"], pcl_loss(volume, target).mean())
    assert volume.shape == (4, 16, 16) and torch.allclose(target[:2], torch.ones(2, 16, 16))
    # the fakes' patches hold M = 0.8 (inside), 0.4 (half covered) or 0: targets 1, 1 - 0.4, 1 - 0.8
    assert {round(v, 4) for v in torch.unique(target[2]).tolist()} == {1.0, 0.6, 0.2}
    torch.testing.assert_close(m.predict(images), torch.sigmoid(logit))


def test_evaluation_takes_images_only():
    torch.manual_seed(0)
    m = I2GPCL(TINY, ADAM).eval()
    p = m.predict(torch.randn(3, 3, 64, 64))
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=i2g_pcl"]), compose(["method=i2g_pcl/dfb"])
    assert (paper.backbone.timm_name, dfb.backbone.timm_name) == ("resnet34", "legacy_xception")
    assert paper.input.size == dfb.input.size == 256
    assert list(dfb.input.mean) == list(dfb.input.std) == [0.5, 0.5, 0.5]
    assert (paper.method.pcl_weight, paper.method.mask_resize) == (10.0, "area")
    assert (dfb.method.pcl_weight, dfb.method.mask_resize) == (1.0, "bilinear")
    assert dfb.method.name == "i2g_pcl_dfb"
    for c in (paper, dfb):
        assert (c.method.optim.lr, c.method.optim.weight_decay, c.trainer.batch_size) == (2e-4, 5e-4, 32)
        assert (c.method.scheduler.step_size, c.method.scheduler.gamma) == (3, 0.4)
        assert [a["_target_"].split(".")[-1] for a in c.augment.train] == [
            "RGBShift",
            "HueSaturationValue",
            "RandomBrightnessContrast",
            "ImageCompression",
        ]
    assert (paper.trainer.epochs, dfb.trainer.epochs, dfb.protocol.frames.train) == (10, 150, 8)
    assert method_needs(paper.method) == method_needs(dfb.method) == {"landmarks"}


@pytest.mark.long  # builds the paper's ResNet-34 and DeepfakeBench's Xception at 256 px
def test_recipes_put_the_branch_where_the_sources_do():
    paper, dfb = compose(["method=i2g_pcl"]), compose(["method=i2g_pcl/dfb"])
    m = build_method(paper.method, paper.backbone)
    assert m.run_info() == {"pcl_layer": "layer3.5", "pcl_grid": [16, 16]}
    assert m.pcl.theta.weight.shape == (256, 256, 1, 1)
    m = build_method(dfb.method, dfb.backbone)
    assert m.run_info() == {"pcl_layer": "block7", "pcl_grid": [16, 16]}
    assert m.pcl.theta.weight.shape == (728, 728, 1, 1)


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("recipe", ["i2g_pcl", "i2g_pcl/dfb"])
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache: Path, tmp_path, recipe):
    trainer = train_in_process(synthetic_cache, tmp_path, [f"method={recipe}", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())
