"""DFFC around a detector: each curriculum preset's effect on the pools and the hardness (in-process runs
on a tiny FF++-shaped set), and Table 4's / Figs. 4-5's analysis against hand computations."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose

from detect.engine.trainer import Trainer
from detect.methods.curriculum.hardness_report import (
    dfh_curve_figure,
    dfh_curves,
    extreme_faces_grid,
    ssim,
    tampering_ratio,
    top_bottom_metrics,
)
from detect.methods.curriculum.pacing import babystep_pool

EPOCHS = 4


def _cfg(ff_fixture, tmp_path, preset: str, *extra: str):
    """``scripted.LinearProbe`` under ``curriculum=<preset>`` for 4 epochs with milestones [1, 2, 3] (T0 = 1;
    k shrinks by 0.5 at epochs 2 and 3), batch 8, on the tiny FF++-shaped set."""
    return compose(
        [
            "data=real",
            f"paths.data_dir={ff_fixture}",
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "logger=none",
            "trainer.progress=false",
            "backbone=tiny",
            "backbone.input_size=32",
            "runtime.num_workers=0",
            "augment=none",
            "dataset.manipulations=[DF,F2F]",
            "protocol.frames.train=4",
            "method._target_=scripted.LinearProbe",
            "~method.loss",
            "~method.focal_gamma",
            "~method.dropout",
            f"curriculum={preset}",
            f"trainer.epochs={EPOCHS}",
            "trainer.batch_size=8",
            "trainer.limit_eval_batches=1",
            "curriculum.milestones=[1,2,3]",
            "curriculum.alpha_k=0.5",
            "curriculum.n_easy=4",
            "curriculum.quality.kind=classical",
            *extra,
        ]
    )


def _run(ff_fixture, tmp_path, preset: str, *extra: str):
    """Train :func:`_cfg`'s run; returns the trainer and each epoch's training indices."""
    cfg = _cfg(ff_fixture, tmp_path, preset, *extra)
    trainer = Trainer(cfg, tmp_path / preset)
    trainer.setup()
    seen: list[np.ndarray] = []
    indices = trainer.method.train_indices

    def record(epoch):
        out = indices(epoch)
        seen.append(np.asarray(out))
        return out

    trainer.method.train_indices = record
    trainer.results = trainer.fit()
    return trainer, seen


@pytest.mark.e2e
def test_dffc_trains_the_shrinking_hard_pool_and_the_augmented_easy_pool(ff_fixture, tmp_path):
    trainer, seen = _run(ff_fixture, tmp_path, "dffc")
    cur, n = trainer.method, trainer.method.table.n
    assert cur.quality_info["kind"] == "classical" and not np.all(cur.table.quality == 1.0)
    # epoch 1 (warm-up, T0 = 1): everything, plain; k halves at epochs 2 and 3 (+ the 4 easiest through DA)
    assert sorted(seen[0].tolist()) == list(range(n))
    hard_sizes = [int((s < n).sum()) for s in seen]
    assert hard_sizes == [n, n // 2, n // 4, n // 4]
    assert [int((s >= n).sum()) for s in seen] == [0, 4, 4, 4]  # E_t outside H_t, through the DA view
    # DFH = d + α_f·q (Eq. 3), with the quality prior
    assert np.allclose(cur.table.dfh(), cur.table.d + 0.5 * (1.0 - cur.table.quality))
    assert cur.table.seen.all() and len(cur.table.history) == EPOCHS
    # epoch 4's hard pool = the k hardest after epoch 3
    dfh3 = cur.table.history[2]
    k = hard_sizes[3]
    hardest = np.lexsort((np.arange(n), -dfh3))[:k]
    assert sorted(seen[3][seen[3] < n].tolist()) == sorted(hardest.tolist())
    assert trainer.results["method_info"]["quality_prior"]["kind"] == "classical"
    # eval.py rebuilds the wrapped detector from the checkpoint and scores the same as the run's test
    from detect.engine.scoring import evaluate_checkpoint

    best = trainer.run_dir / "checkpoints" / "best.pt"
    cfg = compose(
        [
            f"ckpt={best}",
            "trusted_targets=[scripted.LinearProbe]",  # a test class, outside conf/'s allow-list
            "data=real",
            f"paths.data_dir={ff_fixture}",
            f"paths.output_dir={tmp_path}",
            "runtime.num_workers=0",
            "trainer.progress=false",
            "dataset.manipulations=[DF,F2F]",
        ],
        config_name="eval",
    )
    evaluated = evaluate_checkpoint(cfg, tmp_path / "eval")
    assert evaluated["metrics"]["FF++"]["frame_auc"] == pytest.approx(
        trainer.results["metrics"]["FF++"]["frame_auc"]
    )


@pytest.mark.e2e
def test_an_interrupted_dffc_run_resumes_its_curriculum(ff_fixture, tmp_path):
    """4 epochs straight == 2 epochs (interrupted after the first shrunk pool), then resume=auto: the same
    hardness table, history, k and weights (the pool of epochs 3-4 depends on all of them)."""
    from detect.engine.checkpoint import load_checkpoint

    _run(ff_fixture, tmp_path / "a", "dffc")
    first = Trainer(_cfg(ff_fixture, tmp_path / "b", "dffc"), tmp_path / "b" / "dffc")
    first.setup()
    first.cfg.trainer.max_steps = 6 + 3  # epoch 1: 48/8 steps; epoch 2: (24 hard + 4 easy) // 8
    first.fit()
    assert load_checkpoint(tmp_path / "b" / "dffc" / "checkpoints" / "last.pt")["epoch"] == 2
    second = Trainer(_cfg(ff_fixture, tmp_path / "b", "dffc", "resume=auto"), tmp_path / "b" / "dffc")
    second.setup()
    second.fit()
    a, b = (load_checkpoint(tmp_path / r / "dffc" / "checkpoints" / "last.pt") for r in ("a", "b"))
    assert a["epoch"] == b["epoch"] == 4 and a["extra"]["k"] == b["extra"]["k"] == 12
    for key in ("d", "seen", "history"):
        assert torch.equal(a["extra"]["hardness"][key], b["extra"]["hardness"][key]), key
    for key, value in a["method"].items():
        assert torch.equal(value, b["method"][key]), key


@pytest.mark.e2e
def test_dih_ignores_the_quality_prior(ff_fixture, tmp_path):
    trainer, _ = _run(ff_fixture, tmp_path, "dih")
    cur = trainer.method
    assert cur.hp["alpha_f"] == 0.0 and cur.quality_info == {"kind": "none"}
    assert np.array_equal(cur.table.dfh(), cur.table.d)


@pytest.mark.e2e
def test_without_da_the_easy_pool_is_trained_plain_and_never_updates_the_hardness(ff_fixture, tmp_path):
    trainer, seen = _run(ff_fixture, tmp_path, "dffc_no_da")
    cur, n = trainer.method, trainer.method.table.n
    assert all((s < n).all() for s in seen)  # no DA view
    # epoch 4: samples trained only as easy ones keep the d they had after epoch 3
    easy_only = np.setdiff1d(seen[3], cur.pool.hard)  # (the pool of the last epoch is still set)
    assert len(easy_only) > 0
    hist = np.stack(cur.table.history)
    q = 0.5 * (1.0 - cur.table.quality)
    assert np.allclose(hist[3][easy_only] - q[easy_only], hist[2][easy_only] - q[easy_only])
    assert not np.allclose(hist[3][cur.pool.hard], hist[2][cur.pool.hard])


@pytest.mark.e2e
def test_babystep_pools_are_static_quality_hardness_growing_at_the_milestones(ff_fixture, tmp_path):
    trainer, seen = _run(ff_fixture, tmp_path, "babystep")
    cur, n = trainer.method, trainer.method.table.n
    static = 1.0 - cur.table.quality
    for t, s in enumerate(seen, start=1):
        assert sorted(s.tolist()) == babystep_pool(t, static, [1, 2, 3]).hard.tolist()
    assert [len(s) for s in seen] == [int(np.ceil(n * 2 / 4)), int(np.ceil(n * 3 / 4)), n, n]
    assert not cur.table.seen.any()  # losses never enter BabyStep's hardness


@pytest.mark.e2e
def test_vanilla_trains_everything_every_epoch(ff_fixture, tmp_path):
    trainer, seen = _run(ff_fixture, tmp_path, "vanilla")
    n = trainer.method.table.n
    assert all(sorted(s.tolist()) == list(range(n)) for s in seen)
    opt = trainer.method.detector.optim_cfg  # DFFC's recipe replaced the detector's own
    assert opt["_target_"] == "torch.optim.SGD" and opt["lr"] == 0.1 and opt["momentum"] == 0.9


# -- analysis ---------------------------------------------------------------------------------------
def test_tampering_ratio_and_ssim_by_hand():
    mask = np.zeros((4, 4), np.uint8)
    mask[0, :3] = 255
    mask[1, 0] = 128  # 128/255 > 0.5
    mask[2, 0] = 127  # not
    assert tampering_ratio(mask) == pytest.approx(4 / 16)
    assert tampering_ratio(np.stack([mask] * 3, axis=2)) == pytest.approx(4 / 16)
    assert tampering_ratio(np.array([[0.6, 0.4]])) == pytest.approx(0.5)
    a = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 255 - a) < 0.0
    with pytest.raises(ValueError, match="one shape"):
        ssim(a, a[:8])


def _tiny_table(root) -> tuple[pd.DataFrame, np.ndarray]:
    """One real video (frames 0, 10) and 3 DF fakes of it; fake j has its top j+1 rows changed and masked."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    rows = []
    for f in (0, 10):
        p = root / f"real_{f}.png"
        cv2.imwrite(str(p), real[..., ::-1])
        rows.append(dict(path=str(p), label=0, domain="real", source_video="000", frame=f, mask_path=None))
    for j in range(3):
        fake, mask = real.copy(), np.zeros((8, 8), np.uint8)
        fake[: j + 1] = 0
        mask[: j + 1] = 255
        p, m = root / f"fake_{j}.png", root / f"mask_{j}.png"
        cv2.imwrite(str(p), fake[..., ::-1])
        cv2.imwrite(str(m), mask)
        rows.append(dict(path=str(p), label=1, domain="DF", source_video="000", frame=9, mask_path=str(m)))
    return pd.DataFrame(rows), real


def test_top_bottom_metrics_by_hand(tmp_path):
    table, real = _tiny_table(tmp_path)
    dfh = np.array([0.0, 0.0, 0.3, 0.9, 0.1])  # fakes: j=0 -> 0.3, j=1 -> 0.9 (top), j=2 -> 0.1 (bottom)
    out = top_bottom_metrics(table, dfh, n=1)
    assert set(out) == {"DF"}
    m = out["DF"]
    assert m["tar_top"] == pytest.approx(100 * 2 / 8) and m["tar_bottom"] == pytest.approx(100 * 3 / 8)
    top_fake = real.copy()
    top_fake[:2] = 0
    assert m["ssim_top"] == pytest.approx(ssim(top_fake, real))  # against frame 10, the nearest real
    assert m["n_top"] == m["n_bottom"] == 1
    two = top_bottom_metrics(table, dfh, n=2)["DF"]
    assert two["tar_top"] == pytest.approx(100 * (2 / 8 + 1 / 8) / 2)


def test_dfh_curves_pick_the_highest_median_and_lowest_samples():
    history = np.stack([np.arange(11.0), np.arange(11.0)[::-1] * 0 + np.arange(11.0) * 2])  # [2, 11]
    curves = dfh_curves(history, k=3)
    assert curves["low"][:, -1].tolist() == [0, 2, 4]
    assert curves["median"][:, -1].tolist() == [8, 10, 12]
    assert curves["high"][:, -1].tolist() == [16, 18, 20]
    assert curves["high"].shape == (3, 2)
    img = dfh_curve_figure(history, k=3)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def test_extreme_faces_grid_renders_four_labelled_rows(tmp_path):
    table, _ = _tiny_table(tmp_path)
    img = extreme_faces_grid(table, np.array([0.5, 0.1, 0.3, 0.9, 0.1]), n=2, size=16)
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 100
