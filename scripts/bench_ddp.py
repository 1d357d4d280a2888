"""Two-process training step time of both gradient paths (``make bench``): DistributedDataParallel and the
explicit all-reduce (``detect/engine/distributed.py``).

Contenders, each in its own group of spawned processes (gloo on the CPU, one thread each), on the same
per-process batch of synthetic in-memory images and the same backbone:

- ``baseline_ddp``: the baseline under DDP (its declared path: bucketed all-reduce from backward hooks);
- ``baseline_explicit``: the same baseline forced onto the explicit path (one all-reduce per dtype after
  backward), the comparison DDP is meant to win at scale;
- ``ltw_explicit``: LTW (its declared path: second-order meta update, the global virtual step's
  differentiable all-reduce, the explicit all-reduce of θ and w);
- ``baseline_single`` / ``ltw_single``: one process, the same per-process batch: the step without any
  communication, the reference for the ``*_vs_single`` ratios.

Times are the median over the timed steps of rank 0's wall time (and its process CPU time) per step.
On two CPU cores DDP's overlap of communication with the backward cannot show: gloo's all-reduce on a
shared core competes with the backward it would overlap, and a tiny model's gradients fit one bucket. The
JSON line says so; measure the overlap on GPUs with NCCL (``--device cuda`` on a multi-GPU machine).

    python scripts/bench_ddp.py                       # tiny backbone, 64 px, batch 8 per process
    python scripts/bench_ddp.py --backbone effb0 --size 224 --batch 16 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

CONF = Path(__file__).resolve().parents[1] / "conf"

CONTENDERS = {
    "baseline_ddp": ("baseline", 2, None),
    "baseline_explicit": ("baseline", 2, "explicit"),
    "baseline_single": ("baseline", 1, None),
    "ltw_explicit": ("ltw", 2, None),
    "ltw_single": ("ltw", 1, None),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(method: str, backbone: str, size: int, device: str):
    from hydra import compose, initialize_config_dir

    overrides = [
        f"method={method}",
        f"backbone={backbone}",
        f"backbone.input_size={size}",
        "backbone.pretrained=false",
        f"runtime.device={device}",
        "runtime.threads=1",
        "runtime.num_workers=0",
        "logger=none",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _batch(b: int, size: int, seed: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(b) % 2).float()
    out = {
        "image": torch.randn(b, 3, size, size, generator=g),
        "label": y,
        "index": torch.arange(b),
        "meta_image": torch.randn(b, 3, size, size, generator=g),
        "meta_label": 1 - y,
        "meta_index": torch.arange(b, 2 * b),
    }
    return {k: v.to(device) for k, v in out.items()}


class _Views:
    """LTW's epoch hook without data: two manipulation domains for its meta-split."""

    by_domain = {"DF": {}, "F2F": {}}

    def set_domains(self, *args, **kwargs) -> None:
        pass


def _worker(rank: int, world: int, port: int, name: str, args, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from detect.engine.context import StepContext
    from detect.engine.distributed import wrap_for_training
    from detect.engine.method_builder import build_method
    from detect.engine.runtime import cleanup, setup_runtime

    method_name, _, forced = CONTENDERS[name]
    cfg = _config(method_name, args.backbone, args.size, args.device)
    rt = setup_runtime(cfg.runtime)
    torch.manual_seed(0)
    method = build_method(cfg.method, cfg.backbone).to(rt.device)
    if forced:
        method.gradient_sync = forced
    method.configure_optimizers(1, args.steps + args.warmup)
    ctx = StepContext(rt)
    ctx.ddp = wrap_for_training(method, rt)
    method.train()
    method.on_epoch_start(0, _Views(), ctx)
    walls, cpus = [], []
    for step in range(args.warmup + args.steps):
        batch = _batch(args.batch, args.size, 1000 * step + rank, rt.device)
        if rt.distributed:
            torch.distributed.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        method.fit_step(batch, ctx)
        ctx.end_iteration()
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    if rank == 0:
        result = {"wall_ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * statistics.median(cpus)}
        Path(out_dir, f"{name}.json").write_text(json.dumps(result))
    cleanup()


def measure(name: str, args) -> dict:
    world = CONTENDERS[name][1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(world, _free_port(), name, args, out), nprocs=world, join=True)
        return json.loads(Path(out, f"{name}.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="images per process")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    times = {name: measure(name, args) for name in CONTENDERS}
    report = {
        "bench": "ddp",
        "backbone": args.backbone,
        "size": args.size,
        "batch_per_process": args.batch,
        "steps": args.steps,
        "device": args.device,
        **{f"{k}_step_ms": round(v["wall_ms"], 2) for k, v in times.items()},
        **{f"{k}_cpu_ms": round(v["cpu_ms"], 2) for k, v in times.items()},
        "baseline_ddp_vs_explicit": round(
            times["baseline_ddp"]["wall_ms"] / times["baseline_explicit"]["wall_ms"], 3
        ),
        "baseline_ddp_vs_single": round(
            times["baseline_ddp"]["wall_ms"] / times["baseline_single"]["wall_ms"], 3
        ),
        "ltw_explicit_vs_single": round(times["ltw_explicit"]["wall_ms"] / times["ltw_single"]["wall_ms"], 3),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "note": (
            "two processes on CPU cores: DDP's overlap of all-reduce with backward cannot be seen here "
            "(gloo shares the cores the backward uses; a tiny model's gradients fill one bucket); "
            "measure the overlap with NCCL on GPUs"
        ),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
