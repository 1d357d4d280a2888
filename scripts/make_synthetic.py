"""Generate (or find cached) the embedded synthetic benchmark and print where it is and how long it took.

Usage: ``python scripts/make_synthetic.py --cache-dir .cache/synthetic [--workers 2] [--set seed=1 ...]``
"""

from __future__ import annotations

import argparse
import ast
import logging
import time

from detect.data.synthetic import SyntheticConfig, ensure_synthetic


def _value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=".cache/synthetic", help="folder holding synthetic-<hash>/ sets")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: min(2, cores))")
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="SyntheticConfig fields, e.g. seed=1"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(item.split("=", 1) for item in args.set)
    cfg = SyntheticConfig(**{k: _value(v) for k, v in overrides.items()})
    start = time.perf_counter()
    root = ensure_synthetic(args.cache_dir, cfg, workers=args.workers)
    print(f"{root}\t{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
