"""ForensicTransfer (Cozzolino et al., 2018): the half activations, the activation loss, the selection
block, the reconstruction term and the decision rule against hand computations; the autoencoder's shapes;
one update of every parameter with each loss term logged; the config; a smoke run."""

from __future__ import annotations

import pytest
import torch
from helpers import compose, cpu_step_context, train_in_process
from step_probe import fit_once_with_last_gradients, signed_uniform_batch, without_gradient

from detect.engine.method_builder import build_method
from detect.methods.forensic_transfer import (
    ForensicAutoencoder,
    ForensicTransfer,
    activation_loss,
    half_activations,
    select_half,
)

SIZE64 = {"name": "tiny", "input_size": 64}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


def _latent() -> torch.Tensor:
    """B=2, 4 channels (halves of 2), 1x2: sample 0 mostly real-half, sample 1 mostly fake-half."""
    return torch.tensor(
        [
            [[[1.0, -3.0]], [[0.0, 2.0]], [[0.5, 0.5]], [[0.0, -1.0]]],
            [[[0.0, 0.0]], [[0.2, 0.2]], [[2.0, 1.0]], [[1.0, 0.0]]],
        ]
    )


def test_half_activations_are_the_mean_absolute_value_of_each_half():
    a0, a1 = half_activations(_latent())
    # sample 0: h_0 = {1, 3, 0, 2} -> 6/4; h_1 = {.5, .5, 0, 1} -> 2/4; sample 1: .4/4 and 4/4
    torch.testing.assert_close(a0, torch.tensor([1.5, 0.1]))
    torch.testing.assert_close(a1, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="even number"):
        half_activations(torch.zeros(1, 3, 2, 2))


def test_activation_loss_by_hand_no_margin():
    a0, a1 = torch.tensor([1.5, 0.1, 0.3]), torch.tensor([0.5, 1.0, 0.2])
    y = torch.tensor([0.0, 1.0, 1.0])
    # real: |a1 - 0| + |a0 - 1|; fake: |a1 - 1| + |a0 - 0|
    want = torch.tensor([0.5 + 0.5, 0.0 + 0.1, 0.8 + 0.3])
    torch.testing.assert_close(activation_loss(a0, a1, y), want)
    # zero exactly at the targets (no margin): real (1, 0), fake (0, 1)
    zero = activation_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
    assert torch.equal(zero, torch.zeros(2))


def test_selection_block_keeps_the_half_of_the_true_class():
    h = _latent()
    out = select_half(h, torch.tensor([0.0, 1.0]))
    assert torch.equal(out[0, :2], h[0, :2]) and torch.equal(out[0, 2:], torch.zeros(2, 1, 2))
    assert torch.equal(out[1, 2:], h[1, 2:]) and torch.equal(out[1, :2], torch.zeros(2, 1, 2))


def test_decision_rule_and_score():
    a0, a1 = torch.tensor([1.5, 0.1, 0.0, 0.4]), torch.tensor([0.5, 1.0, 0.0, 0.4])
    assert ForensicTransfer.classify(a0, a1).tolist() == [0, 1, 0, 0]
    score = ForensicTransfer.fake_score(a0, a1)
    torch.testing.assert_close(score, torch.tensor([0.25, 1.0 / 1.1, 0.5, 0.5]))
    assert ((score > 0.5).long() == ForensicTransfer.classify(a0, a1)).all()


def test_autoencoder_shapes_and_layer_sizes():
    ae = ForensicAutoencoder()
    convs = [m for m in ae.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride[0], c.kernel_size) for c in convs] == [
        (32, 1, (3, 3)), (64, 2, (3, 3)), (64, 2, (3, 3)), (128, 2, (3, 3)), (128, 2, (3, 3))
    ]  # fmt: skip
    dec = [m for m in ae.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in dec] == [128, 64, 64, 32, 3]
    x = torch.randn(2, 3, 64, 64)
    h = ae(x)
    assert h.shape == (2, 128, 4, 4) and bool((h >= 0).all())  # BN-ReLU latent
    rec = ae.decode(h, (64, 64))
    assert rec.shape == x.shape and bool((rec.abs() <= 1).all())
    assert ae.decode(ae(torch.randn(1, 3, 60, 60)), (60, 60)).shape == (1, 3, 60, 60)  # 60: not / 16


def _batch() -> dict:
    return signed_uniform_batch(4)


def test_the_objective_is_activation_plus_gamma_reconstruction_with_the_selected_half():
    torch.manual_seed(0)
    m = ForensicTransfer(SIZE64, ADAM).eval()  # eval: BN with running stats, so the pieces agree
    batch = _batch()
    per_sample, logs = m.training_losses(batch, cpu_step_context())
    with torch.no_grad():
        h = m.autoencoder(batch["image"])
        a0, a1 = half_activations(h)
        act = activation_loss(a0, a1, batch["label"])
        rec = m.autoencoder.decode(select_half(h, batch["label"]), (64, 64))
        l1 = (rec - batch["image"]).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(per_sample, act + 0.1 * l1)
    torch.testing.assert_close(logs["activation"], act.mean())
    torch.testing.assert_close(logs["reconstruction"], l1.mean())
    unselected, _ = (
        ForensicTransfer(SIZE64, ADAM, selection=False).eval().training_losses(batch, cpu_step_context())
    )
    assert unselected.shape == (4,)


def test_one_fit_step_reaches_every_parameter_and_logs_each_term():
    torch.manual_seed(0)
    m = ForensicTransfer(SIZE64, ADAM)
    out, grads = fit_once_with_last_gradients(m, _batch())
    missing = without_gradient(m, grads)
    assert not missing, missing
    assert {"activation", "reconstruction"} <= set(out.logs)
    torch.testing.assert_close(out.loss, out.logs["activation"] + 0.1 * out.logs["reconstruction"])
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)
    m.eval()
    p = m.predict(_batch()["image"])  # images only
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())
    assert ForensicTransfer.needs_for({}) == frozenset()


def test_config_holds_the_papers_model_and_ltws_setting():
    cfg = compose(["method=forensic_transfer"])
    m = cfg.method
    assert list(m.channels) == [32, 64, 64, 128, 128] and list(m.strides) == [1, 2, 2, 2, 2]
    assert (m.reconstruction_weight, m.selection, m.optim.lr, m.scheduler.name) == (0.1, True, 1e-3, "none")
    assert cfg.input.size == 224 and list(cfg.input.mean) == list(cfg.input.std) == [0.5, 0.5, 0.5]
    assert (cfg.trainer.batch_size, cfg.trainer.epochs, cfg.protocol.frames.train) == (25, 20, 10)
    assert list(cfg.augment.train) == []
    smoke = compose(["method=forensic_transfer", "+scale=smoke"])
    built = build_method(smoke.method, smoke.backbone)
    assert isinstance(built, ForensicTransfer) and built.input_size == 64


@pytest.mark.e2e
@pytest.mark.long
def test_forensic_transfer_trains_and_evaluates_at_smoke_scale(synthetic_cache, tmp_path):
    results = train_in_process(
        synthetic_cache, tmp_path, ["method=forensic_transfer", "+scale=smoke"]
    ).results
    assert results["status"] == "complete"
    assert results["metrics"]["FF++"]["n_frames"] > 0
    assert 0.0 <= results["metrics"]["FF++"]["frame_auc"] <= 1.0
