"""``scripts/bench.py`` (``detect.analysis.engine_bench``) at a tiny setting: one JSON line, positive
figures and ratios.

No timing thresholds: the figures are throughputs on a shared machine; only their presence is checked.
"""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from helpers import CONF

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e  # trains a tiny model for a few steps


POSITIVE = [
    "train_ips_engine",
    "train_ips_loop",
    "train_ips_bare",
    "train_ratio",
    "train_ratio_best",
    "train_loop_ratio",
    "train_ratio_cpu",
    "train_loop_ratio_cpu",
    "eval_ips_engine",
    "eval_ips_bare",
    "eval_ratio",
    "eval_ratio_cpu",
    "loader_sps_w0",
    "loader_sps_w2",
]


def test_bench_prints_one_json_line(tmp_path: Path, capsys) -> None:
    threads = torch.get_num_threads()
    argv = ["--steps", "3", "--backbone", "tiny", "--size", "32", "--batch", "8", "--threads", "1"]
    argv += ["--rounds", "2", "--warmup", "1", "--loader-rounds", "1", "--data-size", "64"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--override", "trainer.progress=false"]
    argv += ["--override", "runtime.device=cpu"]
    main = runpy.run_path(str(REPO / "scripts" / "bench.py"), run_name="bench")["main"]
    returned = main(argv, config_dir=CONF)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    result = json.loads(lines[0])
    assert result == returned
    assert (result["backbone"], result["size"], result["batch"], result["steps"]) == ("tiny", 32, 8, 3)
    assert (
        result["precision"] == "fp32" and result["device"] == "cpu" and result["torch"] == torch.__version__
    )
    for key in POSITIVE:
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, key
    assert set(result["train_minflt_per_step"]) == {"engine", "loop", "bare"}
    assert result["loop_overhead_us_per_step"] >= 0 and result["loop_epoch_overhead_ms"] >= 0
    assert isinstance(result["transform_hash"], str) and len(result["transform_hash"]) == 10
    assert result["n_train"] > 0
    assert torch.get_num_threads() == threads  # the bench leaves the process's thread count as it found it
