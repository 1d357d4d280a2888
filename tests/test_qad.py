"""QAD (Le and Woo, ICCV 2023): HSIC and the collaborative loss against NumPy and a closed form, AWP's
perturbation size and the exact restoration of the weights, the update's gradient at the perturbed weights,
the quality-pair view (same frame, two qualities, one augmentation draw), the data needs, the recipes, one
update and smoke runs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from helpers import compose, cpu_step_context, train_in_process, write_ff_fixture

from detect.data.datasets import FrameDataset
from detect.data.images import read_rgb
from detect.data.index import DatasetSpec, load_split
from detect.data.jpeg import jpeg_compress
from detect.data.protocol import SetSpec
from detect.data.quality_pairs import QualityPairDataset
from detect.data.sample_table import concat_tables
from detect.data.transforms import Pipeline
from detect.engine.data_needs import method_needs, missing_needs
from detect.engine.method_builder import build_method
from detect.methods.qad import (
    QAD,
    PerturbedWeights,
    awp_perturbation,
    collaborative_loss,
    gaussian_gram,
    hsic,
)

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
LABELS = {"FF-real": {"label": 0, "domain": "real"}, "FF-DF": {"label": 1, "domain": "DF"}}


# -- HSIC ---------------------------------------------------------------------------------------------------
def _np_hsic(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """(m-1)^-2 tr(K H L H) with Gaussian Gram matrices of bandwidth 2σ²d, by NumPy loops."""
    m = x.shape[0]
    x, y = x.reshape(m, -1), y.reshape(m, -1)

    def gram(z):
        d = z.shape[1]
        return np.array(
            [[math.exp(-((z[i] - z[j]) ** 2).sum() / (2 * sigma**2 * d)) for j in range(m)] for i in range(m)]
        )

    h = np.eye(m) - np.ones((m, m)) / m
    return float(np.trace(gram(x) @ h @ gram(y) @ h)) / (m - 1) ** 2


def test_hsic_against_numpy_and_a_closed_form():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 2, 3, 3)), rng.normal(size=(5, 2, 3, 3))
    y_dep = x + 0.1 * rng.normal(size=x.shape)
    for sigma in (0.5, 6.0):
        for other in (y, y_dep):
            got = hsic(gaussian_gram(torch.tensor(x), sigma), gaussian_gram(torch.tensor(other), sigma))
            assert math.isclose(float(got), _np_hsic(x, other, sigma), rel_tol=1e-5, abs_tol=1e-9)
    # dependent features score higher than independent ones (what the collaborative loss maximises)
    s = 2.0
    dep = float(hsic(gaussian_gram(torch.tensor(x), s), gaussian_gram(torch.tensor(y_dep), s)))
    ind = float(hsic(gaussian_gram(torch.tensor(x), s), gaussian_gram(torch.tensor(y), s)))
    assert dep > 1.3 * ind
    # m = 2: HKH = (1-a)/2 [[1,-1],[-1,1]], so HSIC = (1 - a)(1 - b) with a = K_12, b = L_12
    x2 = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    y2 = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    a, b = math.exp(-5 / (2 * 4 * 2)), math.exp(-1 / (2 * 4 * 2))  # σ = 2, d = 2
    assert math.isclose(
        float(hsic(gaussian_gram(x2, 2.0), gaussian_gram(y2, 2.0))), (1 - a) * (1 - b), rel_tol=1e-6
    )
    with pytest.raises(ValueError, match="at least 2"):
        hsic(torch.ones(1, 1), torch.ones(1, 1))


def test_hsic_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    x, y = torch.randn(6, 8, 5, 5), torch.randn(6, 8, 5, 5)
    want = hsic(gaussian_gram(x, 1.0), gaussian_gram(y, 1.0))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        k, l = gaussian_gram(x.bfloat16(), 1.0), gaussian_gram(y.bfloat16(), 1.0)
        got = hsic(k, l)
        full = hsic(gaussian_gram(x, 1.0), gaussian_gram(y, 1.0))
    assert k.dtype == got.dtype == torch.float32
    torch.testing.assert_close(full, want, rtol=1e-6, atol=0)  # no bf16 matmul inside


def test_collaborative_loss_is_the_weighted_negative_sum_over_layers():
    rng = np.random.default_rng(1)
    high = [rng.normal(size=(4, 3, 4, 4)), rng.normal(size=(4, 5, 2, 2)), rng.normal(size=(4, 7))]
    low = [h + 0.3 * rng.normal(size=h.shape) for h in high]
    weights, sigma = [0.1, 0.25, 0.5], 6.0
    total, values = collaborative_loss(
        [torch.tensor(h) for h in high], [torch.tensor(lo) for lo in low], weights, sigma
    )
    want = [_np_hsic(h, lo, sigma) for h, lo in zip(high, low, strict=True)]
    np.testing.assert_allclose([float(v) for v in values], want, rtol=1e-5)
    assert math.isclose(float(total), -sum(w * v for w, v in zip(weights, want, strict=True)), rel_tol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        collaborative_loss([torch.tensor(high[0])], [torch.tensor(low[0])], [0.1, 0.2], sigma)


# -- AWP ----------------------------------------------------------------------------------------------------
def test_awp_perturbation_size_direction_and_exact_restoration():
    torch.manual_seed(0)
    lin, conv = torch.nn.Linear(4, 3), torch.nn.Conv2d(2, 3, 3)
    params = [lin.weight, conv.weight]
    grads = [torch.randn_like(p) for p in params]
    gamma = 0.002
    v = awp_perturbation(params, grads, gamma)
    for p, g, vl in zip(params, grads, v, strict=True):
        assert math.isclose(float(vl.norm() / p.detach().norm()), gamma, rel_tol=1e-5)  # ‖v_l‖ = γ‖w_l‖
        cos = float((vl * g).sum() / (vl.norm() * g.norm()))
        assert math.isclose(cos, 1.0, rel_tol=1e-6)  # along the ascent direction
    assert float(awp_perturbation([lin.weight], [torch.zeros_like(lin.weight)], gamma)[0].abs().sum()) == 0
    before = [p.detach().clone() for p in params]
    with PerturbedWeights(params, v):
        for p, b, vl in zip(params, before, v, strict=True):
            torch.testing.assert_close(p.detach(), b + vl)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))  # bit-exact
    with pytest.raises(RuntimeError, match="inside"), PerturbedWeights(params, v):
        raise RuntimeError("inside")
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))


def _pairs_batch(b: int = 4) -> dict:
    g = torch.Generator().manual_seed(3)
    high = torch.randn(b, 3, 64, 64, generator=g)
    low = high + 0.3 * torch.randn(b, 3, 64, 64, generator=g)
    return {
        "images": torch.stack([high, low], dim=1),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
        "index": torch.arange(10, 10 + b),
    }


def _capture_step(ctx, sink: dict):
    original = ctx.step

    def step(optimizer, clip=True):
        sink.update({id(p): p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]})
        return original(optimizer, clip)

    ctx.step = step


def test_fit_step_with_awp_grads_every_parameter_at_the_perturbed_weights_and_restores_them():
    torch.manual_seed(0)
    gamma = 0.05
    m = QAD(TINY, {"_target_": "torch.optim.SGD", "lr": 0.0}, awp={"gamma": gamma, "warmup_epochs": 1})
    m.configure_optimizers(2, 1)
    m.train()
    reference = copy.deepcopy(m)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    tracked = [b.clone() for n, b in m.named_buffers() if n.endswith("num_batches_tracked")]
    batch = _pairs_batch()
    ctx = cpu_step_context()
    ctx.epoch = 1  # AWP from epoch 1
    grads: dict = {}
    _capture_step(ctx, grads)
    out = m.fit_step(batch, ctx)
    # the logs carry every term separately
    names = [m.body.names[i] for i in m.taps]
    want_keys = {"ce_high", "ce_low", "loss_hsic", "loss_clean", "awp_norm", *(f"hsic_{n}" for n in names)}
    assert want_keys <= set(out.logs)
    assert all(bool(torch.isfinite(torch.as_tensor(out.logs[k]))) for k in want_keys)
    assert float(out.logs["loss_hsic"]) < 0  # dependency is maximised
    # every trainable parameter got a non-zero gradient
    for n, p in m.named_parameters():
        assert p.requires_grad and float(grads[id(p)].abs().sum()) > 0, n
    # ... which is the gradient of L at w + v, v = γ‖w‖ g/‖g‖ from the gradient g of L at w
    params = reference.perturbed_params()
    g0 = torch.autograd.grad(reference.losses(batch)["loss"], params)
    v = awp_perturbation(params, g0, gamma)
    with torch.no_grad():
        for p, vl in zip(params, v, strict=True):
            p.add_(vl)
    terms = reference.losses(batch)
    g1 = torch.autograd.grad(terms["loss"], list(reference.parameters()))
    for p, want in zip(m.parameters(), g1, strict=True):
        torch.testing.assert_close(grads[id(p)], want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.loss, terms["loss"].detach())
    norm = torch.stack([x.norm() for x in v]).norm()
    torch.testing.assert_close(torch.as_tensor(out.logs["awp_norm"]), norm, rtol=1e-4, atol=1e-8)
    # with lr 0 the weights are exactly the ones before the step (v removed before the optimiser steps)
    assert all(torch.equal(p.detach(), before[n]) for n, p in m.named_parameters())
    # the ascent pass did not count as a BatchNorm update
    after = [b for n, b in m.named_buffers() if n.endswith("num_batches_tracked")]
    assert all(int(a) == int(b) + 1 for a, b in zip(after, tracked, strict=True))
    assert out.sample_losses.shape == (4,) and torch.equal(out.indices, torch.arange(10, 14))


def test_awp_waits_for_its_warmup_and_the_update_trains():
    torch.manual_seed(0)
    m = QAD(TINY, ADAM, awp={"gamma": 0.002, "warmup_epochs": 3})
    m.configure_optimizers(4, 1)
    m.train()
    ctx = cpu_step_context()
    ctx.epoch = 2
    before = [p.detach().clone() for p in m.parameters()]
    out = m.fit_step(_pairs_batch(), ctx)
    assert "loss_clean" not in out.logs and not m.awp_active(2) and m.awp_active(3)
    assert sum(not torch.equal(a, p) for a, p in zip(before, m.parameters(), strict=True)) == len(before)
    m.eval()
    p = m.predict(torch.randn(3, 3, 64, 64))  # single images, no pair, no quality
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())


def test_one_cycle_schedule_peaks_after_the_warmup_epochs():
    m = QAD(TINY, ADAM, scheduler={"name": "one_cycle", "warmup_epochs": 1})
    (spec,) = m.configure_optimizers(4, 10)
    assert spec.interval == "step"
    lrs = []
    for _ in range(40):
        lrs.append(spec.optimizer.param_groups[0]["lr"])
        spec.optimizer.step()
        spec.scheduler.step()
    # OneCycleLR peaks on the last step of the warm-up (its step pct_start * total - 1), at the optimiser's lr
    assert int(np.argmax(lrs)) == 9 and math.isclose(max(lrs), 1e-3, rel_tol=1e-6)
    assert lrs[0] < 1e-4 and lrs[-1] < 1e-5


# -- the quality-pair view ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_levels(tmp_path_factory):
    root = write_ff_fixture(tmp_path_factory.mktemp("qad"), methods=("Deepfakes",), comps=("c23", "c40"))
    spec = {
        "name": "FaceForensics++",
        "index": str(root / "dataset_json/FaceForensics++.json"),
        "root": str(root / "rgb"),
        "pairing": "ff",
        "labels": LABELS,
    }
    tables = [
        load_split(DatasetSpec.from_config({**spec, "compression": c}), "train", 5) for c in ("c23", "c40")
    ]
    return spec, concat_tables(tables)


def _flip_state(out: torch.Tensor, raw: np.ndarray, pipe: Pipeline) -> bool:
    plain = pipe.finalize_group([raw])[0][0]
    flipped = pipe.finalize_group([np.ascontiguousarray(raw[:, ::-1])])[0][0]
    if torch.allclose(out, plain, atol=1e-5):
        return False
    assert torch.allclose(out, flipped, atol=1e-5)
    return True


def test_stored_pairs_are_the_same_frame_at_two_levels_with_one_augmentation_draw(two_levels):
    _, table = two_levels
    pipe = Pipeline(32, [0.5] * 3, [0.5] * 3, [{"_target_": "albumentations.HorizontalFlip", "p": 0.5}])
    pipe.set_seed(0)
    ds = QualityPairDataset(table, pipe, "c23", ["c40"], train=True, seed=0)
    assert len(ds) == int((table["compression"] == "c23").sum())
    np.testing.assert_array_equal(ds.labels, table["label"].to_numpy()[ds.rows])
    states = set()
    for i in range(len(ds)):
        item = ds[i]
        hi, lo = (int(r) for r in item["indices"])
        assert item["index"] == hi and item["images"].shape == (2, 3, 32, 32) and int(item["quality"]) == 100
        a, b = table.loc[hi], table.loc[lo]
        assert (a["compression"], b["compression"]) == ("c23", "c40")
        assert (a["video_id"], a["label_name"], a["frame"]) == (b["video_id"], b["label_name"], b["frame"])
        flip_hi = _flip_state(item["images"][0], read_rgb(a["path"]), pipe)
        flip_lo = _flip_state(item["images"][1], read_rgb(b["path"]), pipe)
        assert flip_hi == flip_lo  # one draw for the pair
        states.add(flip_hi)
    assert states == {False, True}  # the draw really varies
    with pytest.raises(ValueError, match="c40"):
        QualityPairDataset(table[table["compression"] == "c23"], pipe, "c23", ["c40"])


def test_several_low_levels_are_drawn_per_sample_and_epoch(two_levels):
    _, table = two_levels
    pipe = Pipeline(32, [0.5] * 3, [0.5] * 3)
    ds = QualityPairDataset(table, pipe, "c23", ["c40", "c23"], train=False, seed=4)
    draws = {ds.partner(i)[0] for i in range(len(ds))}
    assert draws & set(ds.partners[0]) and draws & set(ds.partners[1])  # both levels appear
    first = [ds.partner(i) for i in range(len(ds))]
    assert first == [ds.partner(i) for i in range(len(ds))]  # seeded
    ds.set_epoch(1)
    assert first != [ds.partner(i) for i in range(len(ds))]


def test_jpeg_partners_share_the_augmentation_and_draw_their_quality(two_levels):
    _, table = two_levels
    c23 = table[table["compression"] == "c23"]
    aug = [{"_target_": "albumentations.HorizontalFlip", "p": 0.5}]
    pipe = Pipeline(32, [0.5] * 3, [0.5] * 3, aug)
    pipe.set_seed(1)
    ds = QualityPairDataset(c23, pipe, jpeg_ranges=[[30, 99], [8, 12]], train=True, seed=2)
    qualities = set()
    for i in range(len(ds)):
        item = ds[i]
        q = int(item["quality"])
        assert 30 <= q <= 99 or 8 <= q <= 12
        qualities.add(q >= 30)
        hi = ((item["images"][0].numpy().transpose(1, 2, 0) * 0.5 + 0.5) * 255).round().astype(np.uint8)
        want = pipe.finalize_group([jpeg_compress(hi, q)])[0][0]
        torch.testing.assert_close(item["images"][1], want, atol=1e-5, rtol=0)  # JPEG of the augmented frame
        assert not torch.equal(item["images"][0], item["images"][1])
    assert qualities == {True, False}
    with pytest.raises(ValueError, match="low <= high"):
        QualityPairDataset(c23, pipe, jpeg_ranges=[[50, 20]])


def test_data_needs_and_a_training_set_over_two_levels(two_levels):
    spec, table = two_levels
    assert method_needs({"_target_": "detect.methods.qad.QAD", "pairs": {"jpeg_ranges": None}}) == {
        "multi_quality"
    }
    assert method_needs({"_target_": "detect.methods.qad.QAD", "pairs": {"jpeg_ranges": [[30, 99]]}}) == set()
    assert "multi_quality" in missing_needs({"multi_quality"}, table[table["compression"] == "c23"])
    both = SetSpec(
        "train", DatasetSpec.from_config({**spec, "compression": ["c23", "c40"]}), "train", 5
    ).load()
    assert set(both["compression"]) == {"c23", "c40"} and len(both) == len(table)
    assert missing_needs({"multi_quality"}, both) == {}
    # evaluation reads single frames of one level
    item = FrameDataset(both, Pipeline(32, [0.5] * 3, [0.5] * 3), train=False)[0]
    assert item["image"].shape == (3, 32, 32)


# -- recipes ------------------------------------------------------------------------------------------------
def test_recipes_compose_with_the_values_their_headers_name():
    qad, effb1, dpl = (compose([f"method={n}"]) for n in ("qad", "qad/effb1", "qad/dpl"))
    assert qad.backbone.timm_name == dpl.backbone.timm_name == "resnet50" and qad.input.size == 224
    assert effb1.backbone.timm_name == "efficientnet_b1" and effb1.input.size == 240
    assert (qad.trainer.batch_size, effb1.trainer.batch_size, qad.trainer.epochs) == (64, 32, 32)
    assert qad.method.optim.lr == 2.0e-4 and qad.method.optim.weight_decay == 1.0e-4
    assert qad.method.scheduler.name == "one_cycle" and qad.method.scheduler.warmup_epochs == 3
    assert (qad.method.awp.gamma, effb1.method.awp.gamma, qad.method.awp.warmup_epochs) == (0.002, 0.006, 3)
    assert (qad.method.hsic.alpha, effb1.method.hsic.alpha, qad.method.hsic.sigma) == (0.003, 0.002, 6.0)
    assert list(qad.method.hsic.weights) == [0.1, 0.25, 0.5] and list(qad.method.hsic.strides) == [4, 8, 16]
    assert list(qad.method.pairs.low) == ["c40"] and qad.method.pairs.jpeg_ranges is None
    assert [list(r) for r in dpl.method.pairs.jpeg_ranges] == [[30, 99], [13, 29], [8, 12]]
    assert method_needs(qad.method) == {"multi_quality"} and method_needs(dpl.method) == set()
    assert list(qad.augment.train) == [] and (qad.method.name, dpl.method.name) == ("qad", "qad_dpl")
    m = build_method(compose(["method=qad", "+scale=smoke"]).method, compose(["+scale=smoke"]).backbone)
    assert isinstance(m, QAD) and m.gradient_sync == "explicit" and len(m.taps) == 3


def test_resnet50_taps_the_ends_of_layer1_to_layer3():
    cfg = compose(["method=qad"])
    torch.manual_seed(0)
    m = build_method(cfg.method, cfg.backbone)
    assert [m.body.names[i] for i in m.taps] == ["layer1.2", "layer2.3", "layer3.5"]
    # the authors' model is torchvision's ResNet-50 with fc 2048 -> 2 (23,512,130 parameters); ours has the
    # same body (23,508,032) and one logit (2,049): nothing else is trainable (HSIC and AWP add no parameters)
    assert sum(p.numel() for p in m.parameters()) == 23_512_130 - 2 * 2048 - 2 + 2048 + 1


# -- smoke runs ---------------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.long
def test_qad_smoke_run_on_stored_c23_c40_pairs(synthetic_cache, tmp_path):
    trainer = train_in_process(
        synthetic_cache,
        tmp_path,
        [
            "method=qad",
            "+scale=smoke",
            "++protocol.train.compression=[c23,c40]",
            "method.awp.warmup_epochs=1",
        ],
    )
    assert isinstance(trainer.train_dataset, QualityPairDataset)
    auc = trainer.results["metrics"]["FF++"]["frame_auc"]
    assert 0.0 <= auc <= 1.0 and math.isfinite(auc)


@pytest.mark.e2e
@pytest.mark.long
def test_qad_dpl_setting_smoke_run_on_c23_alone(synthetic_cache, tmp_path):
    trainer = train_in_process(synthetic_cache, tmp_path, ["method=qad/dpl", "+scale=smoke"])
    assert trainer.train_dataset.jpeg_ranges is not None
    assert set(trainer.tables["train"]["compression"]) == {"c23"}
    assert math.isfinite(trainer.results["metrics"]["FF++"]["frame_auc"])


# -- two processes -------------------------------------------------------------------------------------------
def _ddp_rank(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    import detect.methods.qad as qad_module
    from detect.engine.context import StepContext
    from detect.engine.runtime import Runtime

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        m = QAD(TINY, ADAM, awp={"gamma": 0.01, "warmup_epochs": 0})
        m.configure_optimizers(1, 1)
        m.train()
        batch = _pairs_batch()
        shard = {k: v[2 * rank : 2 * rank + 2] for k, v in batch.items()}  # a different half per rank
        ctx = StepContext(Runtime(torch.device("cpu"), "fp32", rank=rank, world_size=2))
        seen = []
        original = qad_module.awp_perturbation

        def recording(weights, grads, gamma):  # the ascent gradient v is formed from
            seen.append(torch.cat([g.detach().reshape(-1) for g in grads]))
            return original(weights, grads, gamma)

        qad_module.awp_perturbation = recording
        try:
            m.fit_step(shard, ctx)
        finally:
            qad_module.awp_perturbation = original
        flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
        torch.save({"weights": flat, "ascent": seen[0]}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.e2e
@pytest.mark.long
def test_two_gloo_processes_perturb_by_one_global_v_and_keep_identical_weights(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank")
    mp.spawn(_ddp_rank, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    r0, r1 = (torch.load(f"{out}.{r}") for r in (0, 1))
    assert torch.equal(r0["weights"], r1["weights"])  # restored by copy, then one averaged update
    assert torch.equal(r0["ascent"], r1["ascent"])  # v from the gradient of the global batch on both ranks
    torch.manual_seed(0)
    start = torch.cat([p.detach().reshape(-1) for p in QAD(TINY, ADAM).parameters()])
    assert not torch.equal(start, r0["weights"])
