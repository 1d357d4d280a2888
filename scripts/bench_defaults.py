"""First-use times of the defaults: generating the embedded synthetic benchmark (goal < 60 s) and
``python train.py`` with no overrides on it (goal: both together under 3 minutes).

Prints one JSON line: ``generation_wall_s``, ``generation_cpu_s`` (this process and its workers),
``train_wall_s`` and ``train_cpu_s`` (the default run in a fresh process, W&B offline, with its workers),
the sums, the goals (on wall time), the load average before, and the default run's test frame AUC (goal
>= 0.90). On a shared machine the wall times are inflated; the CPU times are not. Everything goes to
a temporary folder (removed afterwards)::

    python scripts/bench_defaults.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from detect.data.synthetic import SyntheticConfig, ensure_synthetic

REPO = Path(__file__).resolve().parents[1]
GENERATION_GOAL_S, TOTAL_GOAL_S, AUC_GOAL = 60.0, 180.0, 0.90


def _cpu_s() -> float:
    return sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def main() -> None:
    out: dict = {"load_before": os.getloadavg()[0], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench_defaults_") as tmp:
        cache, outputs = Path(tmp) / "cache", Path(tmp) / "outputs"
        cpu0, t0 = _cpu_s(), time.perf_counter()
        ensure_synthetic(cache, SyntheticConfig())
        out["generation_wall_s"] = round(time.perf_counter() - t0, 1)
        out["generation_cpu_s"] = round(_cpu_s() - cpu0, 1)
        env = {
            **os.environ,
            "DETECT_CACHE_DIR": str(cache),
            "DETECT_OUTPUT_DIR": str(outputs),
            "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        }
        cpu0, t0 = _cpu_s(), time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "train.py", "trainer.progress=false"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        out["train_wall_s"] = round(time.perf_counter() - t0, 1)
        out["train_cpu_s"] = round(_cpu_s() - cpu0, 1)  # the run and its data-loader workers
        if proc.returncode != 0:
            raise SystemExit(f"python train.py failed:\n{proc.stderr[-3000:]}")
        (results,) = (outputs / "runs").glob("*/results.json")
        res = json.loads(results.read_text())
        out["train_test_frame_auc"] = round(res["metrics"]["FF++"]["frame_auc"], 4)
        out["train_seed"] = res["seed"]
    out["total_s"] = round(out["generation_wall_s"] + out["train_wall_s"], 1)
    out["total_cpu_s"] = round(out["generation_cpu_s"] + out["train_cpu_s"], 1)
    out["generation_goal_s"], out["total_goal_s"] = GENERATION_GOAL_S, TOTAL_GOAL_S
    out["auc_goal"] = AUC_GOAL
    out["meets_goals"] = (
        out["generation_wall_s"] < GENERATION_GOAL_S
        and out["total_s"] < TOTAL_GOAL_S
        and out["train_test_frame_auc"] >= AUC_GOAL
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
