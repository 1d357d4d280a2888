"""``scripts/bench_dffc.py`` at a tiny setting: one JSON line with the step ratios, the amortised epoch work
and the light quality priors' time per image. No timing thresholds (a shared machine): presence and sanity
only."""

from __future__ import annotations

import json
import runpy
import sys

import cv2
import pytest
import torch
from helpers import REPO

pytestmark = pytest.mark.e2e  # trains a tiny model for a few steps


def test_bench_dffc_prints_one_json_line(monkeypatch, capsys) -> None:
    args = ["--backbone", "tiny", "--size", "32", "--batch", "4", "--rounds", "2", "--warmup", "1"]
    args += ["--n-samples", "200", "--epoch-repeats", "1", "--priors", "classical,clip_iqa"]
    args += ["--prior-images", "2", "--prior-repeats", "1", "--image-size", "64"]
    monkeypatch.setattr(sys, "argv", ["bench_dffc.py", *args])
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        runpy.run_path(str(REPO / "scripts" / "bench_dffc.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert res["curriculum"] == "dffc" and res["size"] == 32 and len(res["config_hash"]) == 12
    for key in ("baseline_step_ms", "dffc_step_ms", "dffc_step_ratio", "dffc_step_ratio_amortised"):
        assert res[key] > 0
    assert res["wrapper_overhead_us_per_step"] > 0 and res["wrapper_ratio_amortised"] >= 1.0
    # the epoch after the first milestone past T0 = 2: k = round(0.9 N), E = 10% of N
    assert res["epoch_t"] == 5 and res["pool_k"] == 180 and res["pool_easy"] <= 20
    assert res["steps_per_epoch"] >= 180 // 4
    assert set(res["quality_ms_per_image"]) == {"classical", "clip_iqa"}
    assert all(v > 0 for v in res["quality_ms_per_image"].values())
    assert res["quality_input_size"]["clip_iqa"] == 64
