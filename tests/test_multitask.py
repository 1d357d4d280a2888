"""Multi-task (Nguyen et al., BTAS 2019): the three heads and their losses against hand computations, the
loss weights, the parameter count of the authors' Y-shaped autoencoder, one update reaching every parameter
with each loss logged, evaluation on images alone through the encoder only, the config, and a smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import CONF, compose, cpu_step_context, train_in_process
from step_probe import fit_once_with_last_gradients, masked_batch, without_gradient

from detect.engine.data_needs import method_needs
from detect.engine.method_builder import build_method
from detect.methods.multitask import (
    MultiTask,
    activation_loss,
    activations,
    reconstruction_loss,
    segmentation_loss,
    select_half,
)

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
BACKBONE = {"name": "small", "input_size": 32}


def test_activations_and_activation_loss_by_hand():
    latent = torch.tensor([[[[1.0, -3.0]], [[0.0, 2.0]], [[0.5, 0.5]], [[-1.0, 0.0]]]])  # [1, 4, 1, 2]
    a0, a1 = activations(latent)
    # real half: |1|, |-3|, |0|, |2| -> 1.5; fake half: .5, .5, 1, 0 -> 0.5
    torch.testing.assert_close((a0, a1), (torch.tensor([1.5]), torch.tensor([0.5])))
    # a real (y = 0): |a1 - 0| + |a0 - 1| = 0.5 + 0.5; a fake (y = 1): |a1 - 1| + |a0 - 0| = 0.5 + 1.5
    y = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(activation_loss(a0.repeat(2), a1.repeat(2), y), torch.tensor([1.0, 2.0]))


def test_select_half_keeps_the_labels_half():
    latent = torch.arange(1.0, 9.0).view(2, 4, 1, 1)
    out = select_half(latent, torch.tensor([0.0, 1.0]))[..., 0, 0]
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 7.0, 8.0]]))


def test_segmentation_and_reconstruction_losses_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # [1, 2 classes, 1, 2]
    masks = torch.tensor([[[[0.2, 0.7]]]])  # binarised: [0, 1]
    # pixel 0: class 0, -log(e²/(e²+1)); pixel 1: class 1, -log(e/(1+e))
    want = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    torch.testing.assert_close(segmentation_loss(logits, masks), torch.tensor([want]))
    p = logits.softmax(dim=1)  # the authors' code: CE of the probabilities
    p0, p1 = p[0, :, 0, 0], p[0, :, 0, 1]
    twice = (-torch.log_softmax(p0, 0)[0] - torch.log_softmax(p1, 0)[1]) / 2
    torch.testing.assert_close(segmentation_loss(logits, masks, softmax_twice=True), twice.view(1))
    rec = torch.tensor([[[[0.5, -1.0]]]])
    img = torch.tensor([[[[0.0, 1.0]]]])
    torch.testing.assert_close(reconstruction_loss(rec, img), torch.tensor([(0.25 + 4.0) / 2]))


def _reference_parameters() -> int:
    """The authors' ``model/ae.py`` counted layer by layer: 3x3 (transposed) convolutions with bias and
    batch norm (weight, bias) after every layer but the two branch outputs."""
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    enc = [(3, 8), (8, 8), (8, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 128)]
    shared = [(128, 64), (64, 64), (64, 32), (32, 32)]
    branch = [(32, 16), (16, 16), (16, 8), (8, 8)]
    n = sum(conv(a, b) + 2 * b for a, b in enc + shared + branch + branch)
    return n + conv(8, 2) + conv(8, 3)


def test_three_heads_shapes_and_the_authors_parameter_count():
    torch.manual_seed(0)
    m = MultiTask(BACKBONE, ADAM)
    assert sum(p.numel() for p in m.parameters()) == _reference_parameters() == 304_949
    out = m.heads(torch.randn(2, 3, 32, 32), torch.tensor([0.0, 1.0]))
    assert m.net.encoder(torch.randn(1, 3, 32, 32)).shape == (1, 128, 2, 2)  # S / 16
    assert out["a0"].shape == out["a1"].shape == (2,)
    assert out["seg"].shape == (2, 2, 32, 32) and out["rec"].shape == (2, 3, 32, 32)
    assert float(out["rec"].detach().abs().max()) <= 1.0  # tanh
    with pytest.raises(ValueError, match="not a multiple of 16"):
        MultiTask({"input_size": 40}, ADAM)


def _batch(b: int = 4) -> dict:
    return masked_batch(b, 32)  # fakes masked over rows 8:24, columns 4:20


def test_the_loss_is_the_weighted_sum_of_the_three_terms():
    torch.manual_seed(0)
    m = MultiTask(BACKBONE, ADAM, weights={"act": 2.0, "seg": 3.0, "rec": 5.0}).eval()
    batch = _batch()
    per_sample, logs = m.training_losses(batch, cpu_step_context())
    out = m.heads(batch["image"], batch["label"])
    act = activation_loss(out["a0"], out["a1"], batch["label"])
    seg = segmentation_loss(out["seg"], batch["mask"])
    rec = reconstruction_loss(out["rec"], batch["image"])
    torch.testing.assert_close(per_sample, 2.0 * act + 3.0 * seg + 5.0 * rec)
    torch.testing.assert_close(logs["seg"], seg.mean())
    with pytest.raises(ValueError, match="unknown terms"):
        MultiTask(BACKBONE, ADAM, weights={"cls": 1.0})


def test_one_step_reaches_every_parameter_and_logs_each_loss():
    torch.manual_seed(0)
    m = MultiTask(BACKBONE, ADAM)
    out, grads = fit_once_with_last_gradients(m, _batch())
    assert without_gradient(m, grads) == []
    assert set(out.logs) == {"act", "seg", "rec"}
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)


def test_evaluation_takes_images_only_and_runs_the_encoder_alone():
    torch.manual_seed(0)
    m = MultiTask(BACKBONE, ADAM).eval()
    calls = []
    m.net.shared.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(3, 3, 32, 32)
    p = m.predict(x)
    a0, a1 = activations(m.net.encoder(x))
    torch.testing.assert_close(p, torch.softmax(torch.stack([a0, a1], dim=1), dim=1)[:, 1])
    assert p.shape == (3,) and calls == []


def test_config_is_the_papers_recipe_and_there_is_no_deepfakebench_preset():
    cfg = compose(["method=multitask"])
    assert (cfg.input.size, list(cfg.input.mean)) == (256, [0.485, 0.456, 0.406])
    assert dict(cfg.method.weights) == {"act": 1.0, "seg": 1.0, "rec": 1.0}
    assert (cfg.method.optim.lr, cfg.method.optim.eps, cfg.method.optim.weight_decay) == (1e-3, 1e-7, 5e-4)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, list(cfg.augment.train)) == (100, 64, [])
    assert method_needs(cfg.method) == {"masks"}
    assert not (CONF / "method" / "multitask").exists()  # DeepfakeBench does not implement Multi-task
    smoke = compose(["method=multitask", "+scale=smoke"])
    assert isinstance(build_method(smoke.method, smoke.backbone), MultiTask)


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache, tmp_path):
    trainer = train_in_process(synthetic_cache, tmp_path, ["method=multitask", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())
