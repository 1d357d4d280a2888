"""Throughput benchmark: the engine against a bare PyTorch loop, evaluation, and the data loader.

Prints one JSON line on stdout (progress and a human-readable summary go to stderr). Examples::

    python scripts/bench.py                                   # tiny at 64 px (and small, if configured)
    python scripts/bench.py --backbone effb0 --size 128 --batch 16 --precision bf16 --steps 5
    python scripts/bench.py --steps 3 --backbone tiny --size 32 --override runtime.channels_last=true

See ``detect/analysis/engine_bench.py`` for what each figure measures.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from detect.analysis.engine_bench import BenchOptions, run_bench

CONF = Path(__file__).resolve().parents[1] / "conf"


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    """Command-line options -> :class:`BenchOptions`."""
    p = argparse.ArgumentParser(
        prog="scripts/bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--backbone",
        default="auto",
        help="backbone config name(s), comma-separated (auto: tiny, plus small if present)",
    )
    p.add_argument("--size", type=int, default=None, help="input size (default: the backbone's input_size)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="steps per timed measurement (0: calibrated to about --target-s seconds)",
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before measuring")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds (figures are medians)")
    p.add_argument("--target-s", type=float, default=0.5, help="seconds per measurement when --steps 0")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts to measure, comma-separated")
    p.add_argument("--loader-rounds", type=int, default=2, help="loader epochs per worker count (median)")
    p.add_argument(
        "--data-size", type=int, default=256, help="synthetic benchmark image size (stored frames)"
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="where the synthetic benchmark is cached (default: the config's paths.cache_dir)",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override (repeatable), e.g. runtime.channels_last=true",
    )
    a = p.parse_args(argv)
    if a.batch < 1 or a.rounds < 1 or a.threads < 1 or a.steps < 0 or a.warmup < 1:
        p.error("--batch, --rounds, --threads and --warmup must be positive, --steps non-negative")
    return BenchOptions(
        backbones=[b for b in a.backbone.split(",") if b],
        size=a.size,
        batch=a.batch,
        precision=a.precision,
        threads=a.threads,
        steps=a.steps,
        warmup=a.warmup,
        rounds=a.rounds,
        target_s=a.target_s,
        workers=[int(w) for w in a.workers.split(",") if w != ""],
        loader_rounds=a.loader_rounds,
        data_size=a.data_size,
        cache_dir=a.cache_dir,
        overrides=list(a.override),
    )


def main(argv: Sequence[str] | None = None, config_dir: Path | None = None) -> dict:
    """Run the benchmark and print its one JSON line on stdout; returns the figures."""
    opts = parse_args(argv)
    if config_dir is None:
        config_dir = CONF
    result = run_bench(Path(config_dir), opts)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
