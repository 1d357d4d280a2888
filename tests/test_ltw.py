"""LTW (Sun et al., AAAI 2021): the ICC loss by hand, the meta-split, and the meta gradients checked
against finite differences in float64 (∂M/∂w through θ'(w); θ's second-order update)."""

from __future__ import annotations

import pytest
import torch
from helpers import cpu_step_context

from detect.methods.ltw.ltw_losses import icc_loss, sample_losses
from detect.methods.ltw.ltw_method import LTW
from detect.methods.ltw.meta_split import meta_split

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 32, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


def test_icc_loss_by_hand():
    o = torch.tensor([1.0, 3.0, 0.0, 6.0])
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # C_real = 2; positive = ((1-2)^2 + (3-2)^2)/2 = 1; negative = ((0-2)^2 + (6-2)^2)/2 = 10
    assert icc_loss(o, y).item() == pytest.approx(1.0 - 10.0)
    # no fakes: only the positive term; no reals: no centre, 0
    assert icc_loss(o[:2], y[:2]).item() == pytest.approx(1.0)
    assert icc_loss(o[2:], y[2:]).item() == 0.0


def test_sample_losses_average_to_eq11():
    o = torch.tensor([1.0, 3.0, 0.0, 6.0])
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(o, y)
    got = sample_losses(o, y, 0.01).mean()
    assert got.item() == pytest.approx((bce + 0.01 * icc_loss(o, y)).item(), rel=1e-6)


def test_meta_split_is_disjoint_seeded_and_half():
    domains = ["DF", "F2F", "FS", "NT"]
    for epoch in range(6):
        train, meta = meta_split(domains, seed=3, epoch=epoch)
        assert len(train) == 2 and len(meta) == 2 and not set(train) & set(meta)
        assert sorted(train + meta) == domains
        assert (train, meta) == meta_split(domains, seed=3, epoch=epoch)
    assert len({tuple(meta_split(domains, 3, e)[0]) for e in range(12)}) > 1  # reshuffled per epoch
    train, meta = meta_split(["DF", "F2F", "FS"], seed=0, epoch=0)
    assert len(train) == 2 and len(meta) == 1  # ⌈N/2⌉ train the detector
    with pytest.raises(ValueError, match="two source domains"):
        meta_split(["DF"], 0, 0)


def _model(**kw) -> LTW:
    torch.manual_seed(0)
    m = LTW(TINY, ADAM, ADAM, weight_dropout=0.0, inner_lr=0.5, **kw).double()
    m.eval()  # BatchNorm from running statistics: M is a smooth function of the parameters
    return m


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64),
        "label": torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64),
        "meta_image": torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64),
        "meta_label": torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64),
    }


@pytest.mark.parametrize("readings", [{}, {"weight_icc": False, "meta_icc": False}])
def test_meta_gradient_of_w_matches_finite_differences(readings):
    m, batch = _model(**readings), _batch()
    w = m.weights.head[1].bias  # the weight network's output bias: moves every p(f_i; w)
    meta = m.meta_losses(batch)["meta_loss"]
    (grad,) = torch.autograd.grad(meta, [w])
    eps = 1e-5
    with torch.no_grad():
        w += eps
    up = m.meta_losses(batch)["meta_loss"].item()
    with torch.no_grad():
        w -= 2 * eps
    down = m.meta_losses(batch)["meta_loss"].item()
    with torch.no_grad():
        w += eps
    fd = (up - down) / (2 * eps)
    assert abs(fd) > 1e-8  # w does reach M through θ'
    assert grad.item() == pytest.approx(fd, rel=1e-4, abs=1e-10)


def test_second_order_theta_update_matches_finite_differences():
    """d/dθ [T(θ) + β·M(θ − α∇T(θ))] for one detector parameter, against finite differences."""
    m, batch = _model(), _batch()
    theta = m.detector.head.bias
    out = m.meta_losses(batch)
    (grad,) = torch.autograd.grad(out["train_loss"] + m.beta * out["meta_loss"], [theta])

    def objective() -> float:
        o = m.meta_losses(batch)
        return (o["train_loss"] + m.beta * o["meta_loss"]).item()

    eps = 1e-5
    with torch.no_grad():
        theta += eps
    up = objective()
    with torch.no_grad():
        theta -= 2 * eps
    down = objective()
    with torch.no_grad():
        theta += eps
    assert grad.item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-10)


def test_virtual_forward_leaves_batchnorm_statistics():
    m, batch = _model(), _batch()
    m.train()
    start = {n: b.clone() for n, b in m.detector.named_buffers()}
    m.detector(batch["image"])  # the real forward alone
    reference = {n: b.clone() for n, b in m.detector.named_buffers()}
    with torch.no_grad():
        for n, b in m.detector.named_buffers():
            b.copy_(start[n])
    m.meta_losses(batch)  # the real forward and the virtual one
    for n, b in m.detector.named_buffers():
        assert torch.equal(b, reference[n]), n


def test_meta_loss_is_unweighted():
    """With α = 0, θ' = θ: M no longer depends on the weights at all."""
    m, batch = _model(), _batch()
    m.alpha = 0.0
    meta = m.meta_losses(batch)["meta_loss"]
    with torch.no_grad():
        m.weights.head[1].bias += 3.0
    assert torch.isclose(m.meta_losses(batch)["meta_loss"], meta)
    assert not torch.isclose(m.meta_losses(batch)["train_loss"], _model().meta_losses(batch)["train_loss"])


def test_released_code_readings_icc_unweighted_in_t_and_bce_alone_in_m():
    from detect.methods.ltw.ltw_losses import weighted_terms

    batch = _batch()
    paper, code = _model(icc_weight=0.5), _model(icc_weight=0.5, weight_icc=False, meta_icc=False)
    a, b = paper.meta_losses(batch), code.meta_losses(batch)
    w = a["weight"]
    assert torch.equal(w, b["weight"])  # the same weight network and input
    logits, _ = paper.detector(batch["image"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.reshape(-1), batch["label"], reduction="none"
    )
    icc = icc_loss(logits, batch["label"])
    # T: every sample's ICC contribution weighted (paper reading) vs ICC outside the weights (the code)
    torch.testing.assert_close(a["train_loss"], (w * sample_losses(logits, batch["label"], 0.5)).mean())
    torch.testing.assert_close(b["train_loss"], (w * bce).mean() + 0.5 * icc)
    per, rest = weighted_terms(logits, batch["label"], 0.5, weight_icc=False)
    torch.testing.assert_close(per, bce)
    torch.testing.assert_close(rest, 0.5 * icc)
    # M at θ' = θ (α = 0): L_ce + λ·L_icc (paper reading) vs the BCE alone (the code)
    paper.alpha = code.alpha = 0.0
    meta_logits, _ = paper.detector(batch["meta_image"])
    meta_bce = torch.nn.functional.binary_cross_entropy_with_logits(
        meta_logits.reshape(-1), batch["meta_label"]
    )
    meta_icc = icc_loss(meta_logits, batch["meta_label"])
    torch.testing.assert_close(paper.meta_losses(batch)["meta_loss"], meta_bce + 0.5 * meta_icc)
    torch.testing.assert_close(code.meta_losses(batch)["meta_loss"], meta_bce)
    from helpers import compose

    off = compose(["method=ltw/official"]).method
    assert (off.weight_icc, off.meta_icc) == (False, False)
    assert (compose(["method=ltw"]).method.weight_icc, compose(["method=ltw"]).method.meta_icc) == (
        True,
        True,
    )


# ---------------------------------------------------------------- presets and their effects


def _step_model(name: str, **overrides):
    from helpers import compose

    from detect.engine.method_builder import build_method

    cfg = compose([f"method={name}", "+scale=smoke", "backbone.input_size=32"])
    torch.manual_seed(0)
    m = build_method({**cfg.method, **overrides}, cfg.backbone)
    m.configure_optimizers(2, 4)
    return m


def _float_batch() -> dict:
    b = {k: v.float() for k, v in _batch().items()}
    b["index"] = torch.arange(4)
    return b


def test_weight_network_learns_in_ltw():
    m, ctx = _step_model("ltw"), cpu_step_context()
    before = [p.detach().clone() for p in m.weights.parameters()]
    for _ in range(2):
        out = m.fit_step(_float_batch(), ctx)
        ctx.end_iteration()
    assert all(k in out.logs for k in ("train_loss", "meta_loss", "mean_weight"))
    changed = [not torch.equal(a, p) for a, p in zip(before, m.weights.parameters(), strict=True)]
    assert any(changed)


@pytest.mark.parametrize(
    "name,overrides",
    [("ltw/official", {}), ("ltw", {"meta_weight": 0.0, "weight_grad": False})],  # w/o meta-testing
)
def test_frozen_weight_network_stays_fixed(name, overrides):
    m, ctx = _step_model(name, **overrides), cpu_step_context()
    before = {k: v.clone() for k, v in m.weights.state_dict().items() if v.is_floating_point()}
    assert len(m.configure_optimizers(2, 4)) == 1  # no optimiser for w
    m.fit_step(_float_batch(), ctx)
    after = m.weights.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if "running" not in k)
    assert all(p.grad is None for p in m.weights.parameters())


def test_official_weights_lie_in_one_to_two_and_presets_without_weights_use_ones():
    off = _step_model("ltw/official").eval()
    w = off.predict_weights(torch.randn(3, 3, 32, 32))
    assert float(w.min()) >= 1.0 and float(w.max()) <= 2.0
    for name in ("ltw/no_weights", "ltw/mldg"):
        m = _step_model(name)
        out = m.meta_losses(_float_batch())
        assert torch.equal(out["weight"], torch.ones(4)) and "meta_loss" in out
    assert _step_model("ltw/mldg").icc_weight == 0.0 and _step_model("ltw/no_icc").icc_weight == 0.0


def test_first_order_keeps_the_weight_gradient_and_drops_the_hessian():
    grads = {}
    for first in (False, True):
        m, ctx = (
            _step_model("ltw", first_order=first, inner_lr=0.5),
            cpu_step_context(),
        )  # a visible Hessian term
        m.eval()  # identical BatchNorm behaviour in both runs
        m.optimizer.step = lambda: None  # keep the gradients for inspection
        m.weight_optimizer.step = lambda: None
        m.optimizer.zero_grad = m.weight_optimizer.zero_grad = lambda set_to_none=True: None
        m.fit_step(_float_batch(), ctx)
        grads[first] = (
            [p.grad.clone() for p in m.weights.parameters() if p.grad is not None],
            m.detector.head.weight.grad.clone(),
        )
    w2, t2 = grads[False]
    w1, t1 = grads[True]
    assert w1 and all(torch.allclose(a, b) for a, b in zip(w1, w2, strict=True))
    assert not torch.allclose(t1, t2)


@pytest.mark.e2e
def test_short_ltw_run_on_a_synthetic_gid_protocol(synthetic_cache, tmp_path):
    from helpers import train_in_process

    overrides = [
        "method=ltw",
        "protocol=gid",
        "+scale=smoke",
        "trainer.epochs=1",  # what follows holds after any epoch
        "trainer.limit_train_batches=4",
    ]
    trainer = train_in_process(synthetic_cache, tmp_path, overrides)
    res = trainer.results
    assert res["status"] == "complete" and list(res["metrics"]) == ["GID-DF23"]
    assert 0.0 <= res["metrics"]["GID-DF23"]["frame_auc"] <= 1.0
    train_domains = set(trainer.tables["train"]["domain"]) - {"real"}
    assert train_domains == {"F2F", "FS", "NT"}  # the held-out domain never trains
    assert set(trainer.tables["val"]["domain"]) - {"real"} == {"F2F", "FS", "NT"}
    assert set(trainer.method.split[0]) | set(trainer.method.split[1]) == train_domains
    # Fig. 4: training faces with their weights, written at the end of training
    import cv2

    grid = cv2.imread(str(tmp_path / "run" / "figures" / "ltw_weights.png"))
    assert grid is not None and grid.shape == (8 * 128, 2 * 128, 3)


@pytest.mark.e2e
def test_basemodel_only_tests(synthetic_cache, tmp_path):
    from helpers import train_in_process

    overrides = ["method=ltw/basemodel", "protocol=gid", "+scale=smoke", "trainer.limit_eval_batches=2"]
    trainer = train_in_process(synthetic_cache, tmp_path, overrides)
    assert trainer.ctx.global_step == 0 and trainer.results["best_epoch"] is None
    assert trainer.results["status"] == "complete" and "GID-DF23" in trainer.results["metrics"]


@pytest.mark.parametrize(
    "schedule,want",
    [
        ("follow_lr", [1e-3] * 5 + [1e-4] * 5 + [1e-5] * 5 + [1e-6] * 5),  # StepLR(5, 0.1) on α too
        ("constant", [1e-3] * 20),
    ],
)
def test_virtual_step_rate_per_epoch_under_both_schedules(schedule, want):
    from helpers import compose

    from detect.engine.method_builder import build_method

    cfg = compose(["method=ltw", "+scale=smoke", "backbone.input_size=32"])
    assert cfg.method.alpha_schedule == "follow_lr"  # the default: the paper's StepLR names α with γ
    m = build_method({**cfg.method, "alpha_schedule": schedule}, cfg.backbone)
    (spec,) = [s for s in m.configure_optimizers(20, 4) if s.name == "detector"]
    alphas = []
    for _ in range(20):
        alphas.append(m.current_alpha())
        spec.optimizer.step()  # (no gradients: a no-op, in the order PyTorch expects)
        spec.scheduler.step()  # the scheduler's interval is the epoch
    assert alphas == pytest.approx(want, rel=1e-9)
    batch = _float_batch()
    out = m.meta_losses(batch)  # the virtual step uses α of the last epoch
    theta = dict(m.detector.named_parameters())
    name = next(n for n, p in theta.items() if p.requires_grad)
    grad = torch.autograd.grad(out["train_loss"], theta[name], retain_graph=True)[0]
    expected = theta[name] - want[-1] * grad
    torch.testing.assert_close(out["virtual"][name], expected)
    with pytest.raises(Exception, match="alpha_schedule='cosine'"):
        build_method({**cfg.method, "alpha_schedule": "cosine"}, cfg.backbone)


def test_official_preset_runs_at_224():
    from helpers import compose

    cfg = compose(["method=ltw/official"])
    assert cfg.backbone.name == "effb4" and cfg.backbone.input_size == 224 and cfg.input.size == 224
    assert cfg.method.alpha_schedule == "follow_lr" and cfg.trainer.batch_size == 128
    assert compose(["method=ltw"]).input.size == 224  # EfficientNet-B0's own size
