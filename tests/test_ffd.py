"""FFD (Dang et al., CVPR 2020): the mask-supervised map loss and the PCA templates against hand
computations, the mask view's shared geometric draw, one update reaching every parameter with each loss
logged, evaluation on images alone, both recipes' configs, and a smoke run on the synthetic benchmark."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose, cpu_step_context, train_in_process
from step_probe import fit_once_with_last_gradients, masked_batch, without_gradient

from detect.data.datasets import FrameDataset
from detect.data.mask_view import MaskedFrameDataset
from detect.data.transforms import Pipeline
from detect.engine.data_needs import method_needs
from detect.engine.method_builder import build_method
from detect.methods.ffd import FFD, map_loss, mask_templates

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
MANIFEST = Path(__file__).parent / "data" / "dfb_manifests" / "dfb_ffd.json"


def test_map_loss_by_hand():
    att = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]], [[[0.1, 0.1], [0.1, 0.1]]]])  # B=2, 2x2 maps
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, 2:] = 1.0  # top-right quadrant -> 1 at map pixel (0, 1)
    mask[0, 0, 2:, :2] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # bottom-left quadrant averages to 0.5
    # sample 0: |0.2-0| + |0.9-1| + |0.5-0.5| + |0-0| = 0.3 -> mean 0.075; sample 1 (a real): 0.1
    torch.testing.assert_close(map_loss(att, mask), torch.tensor([0.075, 0.1]))


def test_mask_templates_are_the_mean_and_principal_directions():
    mean = np.array([[0.5, 0.2], [0.1, 0.0]])
    v = np.array([[1.0, 1.0], [0.0, 0.0]]) / np.sqrt(2)
    w = np.array([[0.0, 0.0], [1.0, -1.0]]) / np.sqrt(2)
    masks = np.stack([mean + t * v + s * w for t, s in [(2, 0.5), (-2, 0.5), (1, -0.5), (-1, -0.5)]])
    m, comps = mask_templates(masks, 3)
    np.testing.assert_allclose(m.numpy(), mean.ravel(), atol=1e-6)
    # variance along v (t² = 4, 4, 1, 1) exceeds that along w (0.25 each): v first, then w
    np.testing.assert_allclose(abs(comps[0].numpy() @ v.ravel()), 1.0, atol=1e-6)
    np.testing.assert_allclose(abs(comps[1].numpy() @ w.ravel()), 1.0, atol=1e-6)
    assert comps.shape == (3, 4)
    _, few = mask_templates(masks[:2], 3)  # two masks give two rows; the third template is zero
    assert few.shape == (3, 4) and float(few[2].abs().sum()) == 0.0


# -- the mask view --------------------------------------------------------------------------------------
def _write(tmp_path, n=4, size=32):
    """Fakes whose marked region (bright red) is their mask; one real with a mask file it must ignore."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = 2 * rng.integers(0, 8, 2)
        mask[y : y + 10, x : x + 14] = 255
        img[..., 0][mask > 0] = 250
        cv2.imwrite(str(tmp_path / f"f{i}.png"), img[..., ::-1])
        cv2.imwrite(str(tmp_path / f"m{i}.png"), cv2.resize(mask, (2 * size, 2 * size), interpolation=0))
        rows.append(
            {"path": str(tmp_path / f"f{i}.png"), "label": i > 0, "mask_path": str(tmp_path / f"m{i}.png")}
        )
    return pd.DataFrame(rows).assign(label=lambda t: t["label"].astype(int))


def test_mask_view_shares_one_geometric_draw_with_its_image(tmp_path):
    table = _write(tmp_path)
    geometric = [
        {"_target_": "albumentations.HorizontalFlip", "p": 0.5},
        {"_target_": "albumentations.RandomRotate90", "p": 1.0},
        {
            "_target_": "albumentations.GaussianBlur",
            "blur_limit": [3, 3],
            "p": 1.0,
        },  # pixel-level: mask untouched
    ]
    pipe = Pipeline(16, [0.0] * 3, [1.0] * 3, augment=geometric)
    ds = MaskedFrameDataset(table, pipe, train=True)
    seen = set()
    for seed in range(8):
        pipe.set_seed(seed)
        item = ds[1]
        red = item["image"][0].numpy() * 255.0
        mask = item["mask"][0].numpy()
        assert item["mask"].shape == (1, 16, 16) and set(np.unique(mask)) <= {0.0, 1.0}
        inside, outside = red[mask > 0.5], red[mask < 0.5]
        assert inside.size and inside.min() > outside.max() - 20  # blur softens edges; the region agrees
        assert (red > 150).mean() == pytest.approx((mask > 0.5).mean(), abs=0.08)
        seen.add(mask.tobytes())
    assert len(seen) >= 3  # the draws differ between seeds (flips, rotations)
    # the mask moves exactly with the image under the geometric transforms alone
    exact = Pipeline(16, [0.0] * 3, [1.0] * 3, augment=geometric[:2])
    for seed in range(6):
        exact.set_seed(seed)
        item = MaskedFrameDataset(table, exact, train=True)[2]
        np.testing.assert_array_equal(item["image"][0].numpy() > 0.5, item["mask"][0].numpy() > 0.5)


def test_mask_view_zero_masks_for_reals_and_an_error_for_a_maskless_fake(tmp_path):
    table = _write(tmp_path)
    pipe = Pipeline(16, [0.0] * 3, [1.0] * 3)
    real = MaskedFrameDataset(table, pipe, train=False)[0]
    assert real["label"] == 0 and float(real["mask"].abs().sum()) == 0.0
    fake = MaskedFrameDataset(table, pipe, train=False)[1]
    assert fake["label"] == 1 and float(fake["mask"].sum()) > 0
    with pytest.raises(ValueError, match="f2.png has no manipulation mask"):
        MaskedFrameDataset(table.assign(mask_path=[None, None, None, None]), pipe, train=False)[2]


# -- the method ---------------------------------------------------------------------------------------
def _batch(b: int = 4) -> dict:
    return masked_batch(b, 64)  # fakes masked over rows 16:48, columns 8:40


@pytest.mark.parametrize("maptype", ["reg", "tmp"])
def test_one_step_reaches_every_parameter_and_logs_each_loss(maptype):
    torch.manual_seed(0)
    m = FFD(TINY, ADAM, maptype=maptype)
    if maptype == "tmp":
        n = 4 * 4  # tiny at 64 px: the map layer is blocks.3, 4x4
        m.attention.set_templates(torch.rand(n), torch.randn(10, n) / 4)
    out, grads = fit_once_with_last_gradients(m, _batch())
    assert without_gradient(m, grads) == []
    assert set(out.logs) == {"bce", "map_l1"}
    with torch.no_grad():
        m.eval()
        logit, att = m.forward_parts(_batch()["image"])
    assert att.shape == (4, 1, 4, 4) and m.run_info()["map_layer"] == "blocks.3"
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)


def test_the_loss_is_bce_plus_lambda_times_the_map_loss():
    torch.manual_seed(0)
    m = FFD(TINY, ADAM, map_weight=2.5).eval()  # eval: no dropout / batch-norm updates, a fixed forward
    batch = _batch()
    per_sample, logs = m.training_losses(batch, cpu_step_context())
    logit, att = m.forward_parts(batch["image"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, batch["label"], reduction="none")
    torch.testing.assert_close(per_sample, bce + 2.5 * map_loss(att, batch["mask"]))
    # the map multiplies the feature map: a zero regression gives σ(0) = 0.5 everywhere
    m.attention.pointwise.weight.data.zero_()
    with torch.no_grad():
        x = m.body.run(batch["image"], 0, m.map_at + 1)
        want = m.head(m.body.backbone.pool(m.body.run(0.5 * x, m.map_at + 1))).squeeze(1)
        logit, att = m.forward_parts(batch["image"])
    torch.testing.assert_close(att, torch.full_like(att, 0.5))
    torch.testing.assert_close(logit, want)


def test_dfb_recipe_needs_no_masks_and_trains_on_frames(tmp_path):
    dfb = compose(["method=ffd/dfb", "+scale=smoke"])
    assert method_needs(dfb.method) == frozenset() and method_needs(compose(["method=ffd"]).method) == {
        "masks"
    }
    m = build_method(dfb.method, dfb.backbone)
    table = _write(tmp_path)
    assert type(m.build_train_dataset(table, Pipeline(16, [0.5] * 3, [0.5] * 3))) is FrameDataset
    m.configure_optimizers(1, 1)
    batch = {k: v for k, v in _batch().items() if k != "mask"}
    out = m.fit_step(batch, cpu_step_context())
    assert set(out.logs) == {"bce"}
    paper = build_method(compose(["method=ffd", "+scale=smoke"]).method, dfb.backbone)
    assert type(paper.build_train_dataset(table, Pipeline(16, [0.5] * 3, [0.5] * 3))) is MaskedFrameDataset


def test_tmp_fits_its_templates_on_the_training_masks(tmp_path):
    table = _write(tmp_path)
    torch.manual_seed(0)
    m = FFD(TINY, ADAM, maptype="tmp", num_templates=3)
    assert not bool(m.attention.fitted)
    m.build_train_dataset(table, Pipeline(16, [0.5] * 3, [0.5] * 3))
    assert bool(m.attention.fitted) and float(m.attention.mean.sum()) > 0  # the fakes' masks at 4x4
    torch.testing.assert_close(
        m.attention.templates @ m.attention.templates.T, torch.eye(3), atol=1e-5, rtol=0
    )
    state = m.state_dict()
    assert {"attention.mean", "attention.templates", "attention.fitted"} <= set(state)  # saved with the model


def test_evaluation_takes_images_only():
    torch.manual_seed(0)
    m = FFD(TINY, ADAM).eval()
    p = m.predict(torch.randn(3, 3, 64, 64))
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=ffd"]), compose(["method=ffd/dfb"])
    assert paper.backbone.timm_name == dfb.backbone.timm_name == "legacy_xception"
    assert (paper.input.size, dfb.input.size) == (299, 256)
    assert list(paper.input.mean) == list(dfb.input.std) == [0.5, 0.5, 0.5]
    assert (paper.method.maptype, paper.method.map_weight, dfb.method.maptype, dfb.method.map_weight) == (
        "reg",
        1.0,
        "reg",
        0.0,
    )
    assert (paper.method.optim.lr, paper.method.optim.weight_decay, paper.trainer.batch_size) == (
        1e-4,
        1e-3,
        16,
    )
    assert (dfb.method.optim.lr, dfb.method.optim.weight_decay, dfb.trainer.batch_size) == (2e-4, 5e-4, 32)
    assert (paper.trainer.epochs, dfb.trainer.epochs, dfb.protocol.frames.train) == (22, 10, 32)
    assert list(paper.augment.train) == list(dfb.augment.train) == [] and dfb.method.name == "ffd_dfb"
    m = build_method(dfb.method, {**dfb.backbone, "input_size": 256})
    assert m.run_info() == {"map_layer": "block7", "map_size": [16, 16]}
    assert m.attention.pointwise.weight.shape == (1, 728, 1, 1)


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("recipe", ["ffd", "ffd/dfb"])
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache, tmp_path, recipe):
    trainer = train_in_process(synthetic_cache, tmp_path, [f"method={recipe}", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())


class DfbFFD(torch.nn.Module):
    """DeepfakeBench's FFD layout (``ffd_detector.py``, ``maptype: reg``): its Xception (timm
    ``legacy_xception`` names) as ``backbone`` with ``last_linear`` and the unused ``adjust_channel``, and
    ``map.c`` a separable 3x3 convolution 728 -> 1 whose sigmoid multiplies block7's output."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model("legacy_xception", pretrained=False, num_classes=2)
        self.backbone.last_linear = self.backbone.fc
        del self.backbone.fc
        self.backbone.adjust_channel = torch.nn.Sequential(
            torch.nn.Conv2d(2048, 512, 1), torch.nn.BatchNorm2d(512)
        )
        self.map = torch.nn.Module()
        self.map.c = importlib.import_module("timm.models.xception").SeparableConv2d(728, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        for name in ["conv1", "bn1", "act1", "conv2", "bn2", "act2", *[f"block{i}" for i in range(1, 8)]]:
            x = getattr(b, name)(x)
        x = x * torch.sigmoid(self.map.c(x))
        for name in [*[f"block{i}" for i in range(8, 13)], "conv3", "bn3", "act3", "conv4", "bn4"]:
            x = getattr(b, name)(x)
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.relu(x), 1).flatten(1)
        return b.last_linear(pooled).softmax(1)[:, 1]


@pytest.mark.long  # a random Xception in float64: ~15 s of CPU
def test_dfb_ffd_checkpoint_converts_to_the_same_probabilities(tmp_path):
    from source_models import convert, randomise

    from detect.inference.load import load_detector

    src = randomise(DfbFFD(), 3, 64, 0.5, 0.5, calibrate=64)
    state = src.state_dict()
    assert set(state) == set(json.loads(MANIFEST.read_text())["keys"])  # the manifest's layout
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "ffd_best.pth")
    dst = convert("dfb_ffd", tmp_path / "ffd_best.pth", tmp_path / "ffd.pt")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    with torch.no_grad():
        want = src.double()(x)
        det = load_detector(dst)
        got = det.method.double().predict(x)
    assert det.method.map_weight == 0.0 and det.method.run_info()["map_layer"] == "block7"
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=0)
    assert float(want.std()) > 1e-3
