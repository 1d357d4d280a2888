"""End-to-end runs on the default synthetic benchmark, through the same engine as every method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import train_in_process

REPO = Path(__file__).resolve().parents[1]


def _run(cache: Path, out: Path, overrides: list[str]) -> dict:
    return train_in_process(cache, out, overrides).results


@pytest.mark.e2e
@pytest.mark.long
def test_synthetic_benchmark_has_a_real_but_not_universal_signal(synthetic_cache, tmp_path):
    """A short baseline run learns in-domain (frame AUC ≥ 0.9), while a detector trained on one
    manipulation scores at least 0.10 lower on at least 3 of the 4 others (the benchmark is not trivial)."""
    common = [
        "backbone=tiny",
        "backbone.input_size=96",
        "method.optim.lr=2e-3",
        "trainer.epochs=20",
        "runtime.num_workers=0",
    ]
    res = _run(synthetic_cache, tmp_path / "all", common)
    assert res["metrics"]["FF++"]["frame_auc"] >= 0.9, res["metrics"]
    one = _run(
        synthetic_cache,
        tmp_path / "one",
        [
            *common,
            "protocol=cross_manipulation",
            "dataset.manipulations=[DF]",
            "+protocol.test.FSh={split: test, manipulations: [FSh]}",
        ],
    )
    auc = {k: v["frame_auc"] for k, v in one["metrics"].items()}
    drops = [auc["DF"] - auc[m] for m in ("F2F", "FS", "NT", "FSh")]
    assert sum(d >= 0.10 for d in drops) >= 3 and auc["DF"] >= 0.9, auc


@pytest.mark.e2e
@pytest.mark.long
def test_default_train_py_runs_and_learns(synthetic_cache, tmp_path):
    """`python train.py` with no overrides (W&B offline) on the generated benchmark completes and learns.
    Its time (goal: under 3 minutes with first-time generation) is measured by scripts/bench_defaults.py."""
    env = {
        **os.environ,
        "DETECT_CACHE_DIR": str(synthetic_cache),
        "DETECT_OUTPUT_DIR": str(tmp_path / "out"),
    }
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frame_auc" in proc.stdout and "FF++" in proc.stdout
    (results,) = (tmp_path / "out" / "runs").glob("*/results.json")
    res = json.loads(results.read_text())
    assert res["data"] == "synthetic" and res["status"] == "complete"
    assert res["metrics"]["FF++"]["frame_auc"] > 0.6  # the default run learns
