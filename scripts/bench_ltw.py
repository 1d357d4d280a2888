"""LTW's cost: one LTW step (virtual step, meta forward, second-order backward, two optimisers) and one
first-order LTW step (no second derivatives: w's meta gradient from one forward-mode pass) against one
baseline step on the same batch and backbone, plus the peak memory of each (LTW issue: goal ≤ 3.5×).
``ltw_step_ratio`` compares with the baseline on the batch's K training images; an LTW step also runs the K
meta images, so ``ltw_step_ratio_same_images`` compares with the baseline on all 2K images the step sees.

Each contender runs in its own (spawned) process, so peak memory is its own:
``torch.cuda.max_memory_allocated`` on a GPU, the growth of the process's peak resident memory after set-up
on the CPU. One JSON line.

    python scripts/bench_ltw.py                        # tiny backbone at 64 px, batch 16, on the CPU
    python scripts/bench_ltw.py --backbone effb0 --size 224 --batch 25 --device cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path

import torch

METHODS = {
    "baseline": "ltw/alltrain",
    "baseline_all_images": "ltw/alltrain",
    "ltw": "ltw",
    "ltw_first_order": "ltw/first_order",
}


def _config(kind: str, backbone: str, size: int, device: str):
    """The training config of ``kind`` (see ``METHODS``) on ``backbone`` at ``size``: one thread, no DDP."""
    from detect.analysis.engine_bench import compose_config

    overrides = [
        f"method={METHODS[kind]}",
        f"backbone={backbone}",
        f"backbone.input_size={size}",
        f"runtime.device={device}",
        "runtime.threads=1",
        "runtime.distributed=none",
    ]
    return compose_config(Path.cwd() / "conf", overrides)


def _measure(kind: str, backbone: str, size: int, batch: int, steps: int, device: str, queue) -> None:
    from detect.engine.context import StepContext
    from detect.engine.method_builder import build_method
    from detect.engine.runtime import setup_runtime

    torch.set_num_threads(1)
    cfg = _config(kind, backbone, size, device)
    rt = setup_runtime(cfg.runtime)
    torch.manual_seed(0)
    method = build_method(cfg.method, cfg.backbone).to(rt.device)
    method.configure_optimizers(1, steps)
    ctx = StepContext(rt)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(rt.device)
    y = (torch.arange(batch) % 2).float().to(rt.device)
    b = {"image": x, "label": y, "index": torch.arange(batch), "meta_image": x.flip(0), "meta_label": 1 - y}
    if kind == "baseline_all_images":  # the baseline on every image an LTW step sees (training + meta)
        b = {
            "image": torch.cat([x, x.flip(0)]),
            "label": torch.cat([y, 1 - y]),
            "index": torch.arange(2 * batch),
        }
    method.train()
    method.fit_step(b, ctx)  # warm-up
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        method.fit_step(b, ctx)
        ctx.end_iteration()
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if rt.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    queue.put({"kind": kind, "step_ms": 1000 * statistics.median(times), "peak_mib": peak})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    out = {"backbone": args.backbone, "size": args.size, "batch": args.batch, "device": args.device}
    for kind in METHODS:
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_measure, args=(kind, args.backbone, args.size, args.batch, args.steps, args.device, queue)
        )
        proc.start()
        res = queue.get()
        proc.join()
        out[f"{kind}_step_ms"] = round(res["step_ms"], 2)
        out[f"{kind}_peak_mib"] = round(res["peak_mib"], 1)
    out["ltw_step_ratio"] = round(out["ltw_step_ms"] / out["baseline_step_ms"], 2)
    out["ltw_first_order_step_ratio"] = round(out["ltw_first_order_step_ms"] / out["baseline_step_ms"], 2)
    out["ltw_step_ratio_same_images"] = round(out["ltw_step_ms"] / out["baseline_all_images_step_ms"], 2)
    out["goal_ratio"] = 3.5
    print(json.dumps(out))


if __name__ == "__main__":
    main()
