"""Each detector's training and evaluation images/s at smoke scale beside the baseline's on the same
backbone and size, measured alternately in one process (see ``detect/analysis/detector_bench.py``).

    python scripts/bench_detectors.py                      # every method option in conf/method
    python scripts/bench_detectors.py --methods f3net,ucf --batch 8 --rounds 3
    python scripts/bench_detectors.py --methods ftcn --loader-workers 2   # clip figures: clips/s

Clip detectors add a second table: training clips/s and the clip loader's clips/s with 2 workers.

One JSON line on stdout, a table on stderr; exit status 1 when a method could not be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from detect.analysis.detector_bench import DetectorBenchOptions, bench_detectors, method_options

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> int:
    p = argparse.ArgumentParser(prog="scripts/bench_detectors.py", description=__doc__)
    p.add_argument("--methods", default="", help="comma-separated method options (default: all)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=0, help="steps per measurement (0: about --target-s)")
    p.add_argument("--target-s", type=float, default=0.5)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--loader-workers", type=int, default=2, help="workers of the clip loading rate")
    p.add_argument("--loader-rounds", type=int, default=3, help="epochs of the clip loading rate (median)")
    a = p.parse_args()
    for key in ("NO_ALBUMENTATIONS_UPDATE", "HF_HUB_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    methods = [m for m in a.methods.split(",") if m] or method_options(CONF)
    opts = DetectorBenchOptions(
        methods=methods, batch=a.batch, threads=a.threads, rounds=a.rounds, steps=a.steps,
        target_s=a.target_s, cache_dir=a.cache_dir, loader_workers=a.loader_workers,
        loader_rounds=a.loader_rounds,
    )  # fmt: skip
    res = bench_detectors(CONF, opts)
    say = lambda *x: print(*x, file=sys.stderr)  # noqa: E731
    heads = ("train img/s", "x baseline", "eval img/s", "x baseline", "params")
    say(f"{'method':24} " + " ".join(f"{h:>12}" for h in heads))
    for name, r in res["detectors"].items():
        say(
            f"{name:24} {r['train_ips']:12.1f} {r['train_vs_baseline']:12.3f} {r['eval_ips']:12.1f} "
            f"{r['eval_vs_baseline']:12.3f} {r['params']:12d}"
        )
    clips = {n: r for n, r in res["detectors"].items() if "clip_len" in r}
    if clips:
        heads = ("clip_len", "train clip/s", "load clip/s", "workers", "1st batch s")
        say(f"{'clip method':24} " + " ".join(f"{h:>12}" for h in heads))
        for name, r in clips.items():
            say(
                f"{name:24} {r['clip_len']:12d} {r['train_clips_per_s']:12.2f} {r['load_clips_per_s']:12.1f} "
                f"{r['load_workers']:12d} {r['load_first_batch_s']:12.3f}"
            )
    for name, err in res["errors"].items():
        say(f"{name:24} FAILED: {err}")
    print(json.dumps(res))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
