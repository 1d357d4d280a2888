"""What a run leaves and logs: W&B offline (and surviving W&B failures), bf16 autocast, eval.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import PROBE_METHOD, engine_cfg, fit_trainer, save_random_checkpoint

from detect.engine import loggers

REPO = Path(__file__).resolve().parents[1]


def test_wandb_offline_run_logs_locally(ff_fixture, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = engine_cfg(
        ff_fixture,
        tmp_path,
        [*PROBE_METHOD, "logger=wandb", "trainer.epochs=1", "trainer.log_every_n_steps=1"],
    )
    tr, res = fit_trainer(cfg, tmp_path / "run")
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    keys = (b"test/FF++/frame_auc", b"train/loss", b"lr/model", b"val/frame_auc", b"roc/FF++")
    for _ in range(100):  # wandb-core may still be flushing its protobuf log after finish()
        record = next(runs[0].glob("*.wandb")).read_bytes()
        if all(k in record for k in keys):
            break
        time.sleep(0.1)
    for key in keys:
        assert key in record, key


def test_wandb_failure_never_stops_training(ff_fixture, tmp_path, monkeypatch):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(wandb, "init", broken)
    cfg = engine_cfg(ff_fixture, tmp_path, [*PROBE_METHOD, "logger=wandb", "trainer.epochs=1"])
    tr, res = fit_trainer(cfg, tmp_path / "run")
    assert (
        res["status"] == "complete" and isinstance(tr.logger, loggers.WandbLogger) and tr.logger.run is None
    )


def test_bf16_autocast_on_cpu(ff_fixture, tmp_path):
    cfg = engine_cfg(ff_fixture, tmp_path, ["runtime.precision=bf16", "trainer.epochs=1"])
    tr, res = fit_trainer(cfg, tmp_path / "run")
    assert tr.runtime.autocast_dtype is not None
    assert 0.0 <= res["metrics"]["FF++"]["frame_auc"] <= 1.0


def test_results_and_predictions_written(ff_fixture, tmp_path):
    tr, res = fit_trainer(
        engine_cfg(ff_fixture, tmp_path, [*PROBE_METHOD, "trainer.epochs=1"]), tmp_path / "run"
    )
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in (
        "config",
        "git_commit",
        "seed",
        "metrics",
        "best_epoch",
        "timings",
        "status",
        "select_metric",
    ):
        assert key in saved
    preds = pd.read_csv(tmp_path / "run" / "predictions" / "FF++.csv", dtype={"video": str})
    assert len(preds) == saved["metrics"]["FF++"]["n_frames"] and preds["prob"].between(0, 1).all()
    assert preds["video"].nunique() == saved["metrics"]["FF++"]["n_videos"]


@pytest.mark.e2e
def test_eval_py_scores_a_checkpoint_on_another_protocol(ff_fixture, tmp_path):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    common = [
        "data=real",
        f"paths.data_dir={ff_fixture}",
        f"paths.output_dir={tmp_path}",
        "runtime.num_workers=0",
        "trainer.progress=false",
    ]
    # the checkpoint's weights do not matter here: a random one, saved as after one epoch
    ckpt = save_random_checkpoint(tmp_path / "best.pt", ("backbone.input_size=32",), epoch=1)
    proc = subprocess.run(
        [
            sys.executable,
            "eval.py",
            *common,
            f"ckpt={ckpt}",
            "protocol=cross_manipulation",
            "dataset.manipulations=[DF,F2F]",
            "protocol.test.FS=null",
            "protocol.test.NT=null",
            "run_name=e",
            "protocol.perturbation={name: jpeg, quality: 40}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "runs/e/results.json").read_text())
    assert set(res["metrics"]) == {"DF", "F2F"} and res["checkpoint_epoch"] == 1
    assert "frame_auc" in proc.stdout
