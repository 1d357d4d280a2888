"""The training engine: schedules, resumption, validation-only selection, NaN stops, checkpoints."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from helpers import PROBE_METHOD, TEST_SEARCHPATH, engine_cfg, fit_trainer

from detect.engine.checkpoint import load_checkpoint, save_checkpoint
from detect.engine.trainer import Trainer


@pytest.mark.e2e
def test_lr_schedule_per_epoch(ff_fixture, tmp_path):
    cfg = engine_cfg(
        ff_fixture,
        tmp_path,
        [
            *PROBE_METHOD,
            "trainer.epochs=3",
            "method.optim.lr=0.1",
            "method.scheduler.name=step",
            "+method.scheduler.step_size=1",
            "+method.scheduler.gamma=0.5",
            "method.scheduler.interval=epoch",
        ],
    )
    tr, _ = fit_trainer(cfg, tmp_path / "run")
    assert tr.specs[0].optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


@pytest.mark.e2e
def test_lr_schedule_per_step(ff_fixture, tmp_path):
    cfg = engine_cfg(
        ff_fixture,
        tmp_path,
        [
            *PROBE_METHOD,
            "trainer.epochs=2",
            "method.optim.lr=0.1",
            "method.scheduler.name=cosine",
            "method.scheduler.interval=step",
        ],
    )
    tr = Trainer(cfg, tmp_path / "run")
    tr.setup()
    total = 2 * tr.steps_per_epoch
    assert tr.steps_per_epoch > 1
    tr._train_epoch(0)  # after one epoch (half the iterations) cosine is at its midpoint
    assert tr.specs[0].optimizer.param_groups[0]["lr"] == pytest.approx(
        0.05 * (1 + math.cos(math.pi * tr.steps_per_epoch / total))
    )
    tr._train_epoch(1)
    assert tr.specs[0].optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["method"]


@pytest.mark.e2e
def test_resume_equals_straight_run(ff_fixture, tmp_path):
    """2 epochs straight == 1 epoch (interrupted), then resume=auto for the second epoch; baseline with
    the tiny backbone (BatchNorm), augmentations, shuffling and a per-step schedule included."""
    base = ["trainer.epochs=2", "method.scheduler.interval=step"]
    straight = tmp_path / "straight"
    fit_trainer(engine_cfg(ff_fixture, tmp_path, base), straight)
    split = tmp_path / "split"
    first = Trainer(engine_cfg(ff_fixture, tmp_path, base), split)
    first.setup()
    first.cfg.trainer.max_steps = first.steps_per_epoch  # stops after epoch 1, as a preempted job would
    first.fit()
    assert load_checkpoint(split / "checkpoints" / "last.pt")["epoch"] == 1
    second, _ = fit_trainer(engine_cfg(ff_fixture, tmp_path, [*base, "resume=auto"]), split)
    assert second.start_epoch == 1
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fresh, _ = fit_trainer(engine_cfg(ff_fixture, tmp_path, [*base, "seed=1"]), tmp_path / "other_seed")
    assert any(not torch.equal(a[k], _weights(tmp_path / "other_seed")[k]) for k in a)


@pytest.mark.e2e
def test_selection_uses_validation_only(ff_fixture, tmp_path):
    """With predictions that vary per epoch, the chosen epoch is the validation-best one even though
    another epoch scores higher on the test set."""
    extra = [
        "method._target_=scripted.ScriptedScores",
        "~method.loss",
        "~method.focal_gamma",
        "~method.dropout",
        "trainer.epochs=4",
        "+method.salt=5",
    ]
    cfg = engine_cfg(ff_fixture, tmp_path, extra)
    tr, res = fit_trainer(cfg, tmp_path / "run")
    val = [h["val_frame_auc"] for h in res["val_history"]]
    val_best = max(range(len(val)), key=lambda i: val[i]) + 1
    assert res["best_epoch"] == val_best
    # test AUC of each epoch's model
    from detect.engine.predict_loop import predict_table
    from detect.evaluation.metrics import compute_metrics

    test_auc = []
    for e in range(1, 5):
        tr.method.epoch.fill_(e)
        preds = predict_table(
            tr.method, tr.tables["test/FF++"], tr.eval_pipeline, tr.runtime, 32, 0, progress=False
        )
        test_auc.append(compute_metrics(preds)["frame_auc"])
    test_best = max(range(4), key=lambda i: test_auc[i]) + 1
    assert test_best != val_best, "fixture must make the val-best and test-best epochs differ"
    assert res["metrics"]["FF++"]["frame_auc"] == pytest.approx(test_auc[val_best - 1])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["best_epoch"] == val_best and saved["seed"] == 0 and saved["config"]["seed"] == 0


@pytest.mark.e2e
def test_nan_loss_names_step_and_samples(ff_fixture, tmp_path):
    cfg = engine_cfg(ff_fixture, tmp_path, [*PROBE_METHOD, "+method.nan_at_step=2", "trainer.epochs=1"])
    tr = Trainer(cfg, tmp_path / "run")
    tr.setup()
    with pytest.raises(FloatingPointError, match=r"step 2.*FaceForensics\+\+.*\.png"):
        tr.fit()


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoints_atomic_and_weights_only(tmp_path):
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"a": torch.ones(2)})
    assert torch.equal(load_checkpoint(p)["a"], torch.ones(2))
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]  # no temp file left
    with pytest.raises(RuntimeError):  # torch.save fails mid-way: the old file survives intact

        class Bad:
            def __reduce__(self):
                raise RuntimeError("boom")

        save_checkpoint(p, {"a": Bad()})
    assert torch.equal(load_checkpoint(p)["a"], torch.ones(2))
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(evil)


@pytest.mark.e2e
def test_phases_run_in_order_and_chain_checkpoints(ff_fixture, tmp_path):

    from detect.engine.trainer import train

    cfg = engine_cfg(
        ff_fixture, tmp_path, [TEST_SEARCHPATH, "experiment=two_phase", *PROBE_METHOD, "trainer.epochs=2"]
    )
    res = train(cfg, tmp_path / "run", {"experiment": "two_phase"})
    first = load_checkpoint(tmp_path / "run/first/checkpoints/best.pt")
    second = load_checkpoint(tmp_path / "run/second/checkpoints/last.pt")
    assert second["config"]["init_from"] == str(tmp_path / "run/first/checkpoints/best.pt")
    for k in first["method"]:  # lr 0 in the second phase: its weights are the first phase's best
        assert torch.equal(first["method"][k], second["method"][k])
    assert load_checkpoint(tmp_path / "run/first/checkpoints/last.pt")["epoch"] == 2
    assert second["epoch"] == 1
    saved = json.loads((tmp_path / "run/results.json").read_text())
    assert list(saved["phases"]) == ["first", "second"] and saved["phase"] == "second"
    assert not (tmp_path / "run/first/results.json").exists()  # phase results don't pose as runs
    assert res["metrics"] == saved["metrics"]


def test_balanced_sampling_oversamples_the_smaller_class():
    import numpy as np

    from detect.engine.trainer import balance_classes

    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1])
    out = balance_classes(np.arange(9), labels, np.random.default_rng(0))
    assert (labels[out] == 0).sum() == (labels[out] == 1).sum() == 7
    assert sorted(set(out[labels[out] == 0])) == [0, 1]  # every real kept: 3 whole copies + 1 drawn
    assert sorted(out[labels[out] == 1]) == list(range(2, 9))  # fakes once each
