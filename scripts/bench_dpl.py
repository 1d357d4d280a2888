"""DPL's cost: one Stage I step (backbone, feature selection, both GRU branches for each image's own step
counts, step predictions, focal loss + L_REG, backward, Adam) against one step of the bare backbone
(``dpl_baseline``: the same images, backbone, optimiser and loss family) on the same batch, plus a Stage II
step (PPO on Φ, everything else frozen) for reference (DPL issue: goal ≤ 1.3× for Stage I).

Step counts are drawn uniformly from 1..5 per image (the indicators are scored once before training and
cached, so they are not part of a step). Each contender runs in its own spawned process. One JSON line.

    python scripts/bench_dpl.py                                   # resnet10t at 96 px on the CPU
    python scripts/bench_dpl.py --backbone convnext_t --size 224 --batch 32 --device cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path

import torch

KINDS = {"baseline": ("dpl/baseline", 1), "stage1": ("dpl", 1), "stage2": ("dpl", 2)}


def _measure(kind: str, backbone: str, size: int, batch: int, steps: int, device: str, queue) -> None:
    from detect.analysis.engine_bench import compose_config
    from detect.engine.context import StepContext
    from detect.engine.method_builder import build_method
    from detect.engine.runtime import setup_runtime

    torch.set_num_threads(1)
    name, stage = KINDS[kind]
    cfg = compose_config(
        Path.cwd() / "conf",
        [
            f"method={name}",
            f"backbone={backbone}",
            f"backbone.input_size={size}",
            f"runtime.device={device}",
            "runtime.threads=1",
            "runtime.distributed=none",
            "data=synthetic",
        ],
    )
    rt = setup_runtime(cfg.runtime)
    torch.manual_seed(0)
    method = build_method({**cfg.method, "stage": stage}, cfg.backbone).to(rt.device)
    method.configure_optimizers(1, steps)
    ctx = StepContext(rt)
    g = torch.Generator().manual_seed(0)
    q = len(method.qualities)
    method._train_steps = torch.randint(1, method.n_steps + 1, (batch, q, 2), generator=g)
    b = {
        "images": torch.randn(batch, q, 3, size, size, generator=g).to(rt.device),
        "label": (torch.arange(batch) % 2).float().to(rt.device),
        "index": torch.arange(batch),
    }
    method.train()
    method.fit_step(b, ctx)  # warm-up
    times = []
    for _ in range(steps):
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        method.fit_step(b, ctx)
        ctx.end_iteration()
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    queue.put({"kind": kind, "step_ms": 1000 * statistics.median(times)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8, help="images per batch (each fed at 4 qualities)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    out = {"backbone": args.backbone, "size": args.size, "batch": args.batch, "device": args.device}
    for kind in KINDS:
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_measure, args=(kind, args.backbone, args.size, args.batch, args.steps, args.device, queue)
        )
        proc.start()
        res = queue.get()
        proc.join()
        out[f"{kind}_step_ms"] = round(res["step_ms"], 2)
    out["stage1_step_ratio"] = round(out["stage1_step_ms"] / out["baseline_step_ms"], 3)
    out["stage2_step_ratio"] = round(out["stage2_step_ms"] / out["baseline_step_ms"], 3)
    out["goal_ratio"] = 1.3
    print(json.dumps(out))


if __name__ == "__main__":
    main()
