"""``scripts/gpu_check.py`` at smoke size on the CPU: options follow conf/method/, the table is complete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "scripts/gpu_check.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_options_are_the_method_config_files():
    proc = _run("--list")
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(
        p.relative_to(REPO / "conf/method").with_suffix("").as_posix()
        for p in (REPO / "conf/method").rglob("*.yaml")
    )
    assert proc.stdout.split() == files and len(files) > 10


@pytest.mark.e2e
def test_one_bf16_step_and_one_eval_batch_per_method_on_the_cpu():
    """Baseline (DDP path), LTW (second-order, explicit), ProDet (anchor tuples), MAT (warm-up: idle
    parameters, so find_unused_parameters) and DPL (two stages, PPO) under bf16 autocast on the CPU."""
    proc = _run("--device", "cpu", "--threads", "1", "--methods", "baseline", "ltw", "prodet", "mat", "dpl")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "on cpu (smoke size, batch 2), bf16 autocast" in out
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] in ("baseline", "ltw", "prodet", "mat", "dpl[stage1]", "dpl[stage2]"):
            rows[cells[0]] = cells
    assert set(rows) == {"baseline", "ltw", "prodet", "mat", "dpl[stage1]", "dpl[stage2]"}
    sync = {"baseline": "ddp", "ltw": "explicit", "prodet": "ddp", "mat": "ddp", "dpl[stage1]": "explicit"}
    for name, cells in rows.items():
        # method sync batch size backbone step_ms eval_ms peak_MiB idle status
        assert cells[2:5] == ["2", "64", "tiny"], cells
        assert float(cells[5]) > 0 and float(cells[6]) > 0 and float(cells[7]) > 0, cells
        assert cells[9] == "ok", cells
        if name in sync:
            assert cells[1] == sync[name], cells
    warm, late = (int(v) for v in rows["mat"][8].split("/"))
    assert warm > late > 0  # MAT's warm-up trains its warm head only; later the warm head is idle
    assert rows["prodet"][8] == "0/0"  # no parameter idle before or after the bridging warm-up
    assert re.search(r"6 rows, 0 failed, 0 not run \(budget\), \d+ s", out)
