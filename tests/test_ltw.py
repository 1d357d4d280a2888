"""LTW (Sun et al., AAAI 2021): the ICC loss by hand, the meta-split, and the meta gradients checked
against finite differences in float64 (∂M/∂w through θ'(w); θ's second-order update)."""

from __future__ import annotations

import pytest
import torch

from detect.methods.ltw.losses import icc_loss, sample_losses
from detect.methods.ltw.meta_split import meta_split
from detect.methods.ltw.method import LTW

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


def test_meta_gradient_of_w_matches_finite_differences():
    m, batch = _model(), _batch()
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
