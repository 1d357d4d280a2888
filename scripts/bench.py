"""Throughput benchmark: the engine against a bare PyTorch loop, evaluation, and the data loader.

Prints one JSON line on stdout (progress and a human-readable summary go to stderr). Examples::

    python scripts/bench.py                                   # tiny at 64 px (and small, if configured)
    python scripts/bench.py --backbone effb0 --size 128 --batch 16 --precision bf16 --steps 5
    python scripts/bench.py --steps 3 --backbone tiny --size 32 --override runtime.channels_last=true

See ``detect/analysis/engine_bench.py`` for what each figure measures.
"""

from __future__ import annotations

from pathlib import Path

from detect.analysis.engine_bench import main

CONF = Path(__file__).resolve().parents[1] / "conf"

if __name__ == "__main__":
    main(config_dir=CONF)
