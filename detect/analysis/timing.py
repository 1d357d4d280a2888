"""Timing helpers of the benchmarks (``scripts/bench*.py``): device-synchronised wall clock, contenders
measured in alternating rotated order, medians and ratios, process CPU time and minor page faults."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds taken by ``fn()``, the device synchronised before and after."""
    sync_device(device)
    t0 = time.perf_counter()
    fn()
    sync_device(device)
    return time.perf_counter() - t0


def alternate(contenders: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each contender once per round, the order rotating each round; returns each one's results."""
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(contenders[name]())
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def calibrate_steps(fn: Callable[[int], float], warmup: int, target_s: float) -> int:
    """Steps per measurement lasting about ``target_s`` (timed on a warm-up run), clamped to [3, 200]."""
    per_step = fn(max(1, warmup)) / max(1, warmup)
    return int(min(200, max(3, round(target_s / max(per_step, 1e-6)))))


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


@dataclass
class Race:
    """One alternated measurement: per-round images/s (wall clock and process CPU time) and the minor page
    faults per step (memory the allocator handed back to the OS and touched again)."""

    steps: int
    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    faults: dict[str, list[float]]


def race(
    contenders: Mapping[str, Callable[[int], float]],
    images_per_step: int,
    warmup: int,
    rounds: int,
    steps: int = 0,
    target_s: float = 0.5,
) -> Race:
    """Warm every contender up (``warmup`` steps), pick the step count (``steps``, or calibrated on the last
    contender to about ``target_s`` seconds), then alternate ``rounds`` times. Each contender takes a step
    count and returns the seconds it took."""
    for fn in contenders.values():
        fn(warmup)
    steps = steps or calibrate_steps(list(contenders.values())[-1], warmup, target_s)
    images = steps * images_per_step
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    faults: dict[str, list[float]] = {k: [] for k in contenders}

    def measure(name: str, fn: Callable[[int], float]) -> Callable[[], float]:
        def run() -> float:
            c0, f0 = time.process_time(), minor_faults()
            wall = fn(steps)
            cpu[name].append(images / max(time.process_time() - c0, 1e-9))
            faults[name].append((minor_faults() - f0) / steps)
            return images / wall

        return run

    wall = alternate({k: measure(k, fn) for k, fn in contenders.items()}, rounds)
    return Race(steps, wall, cpu, faults)
