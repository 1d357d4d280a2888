"""Tabulate results.json files of one or more run/multirun folders (see detect/tables/builder.py).

Examples::

    python scripts/make_tables.py          # the latest folder under outputs/multirun/ (an experiment's
                                           # sweep renders its paper table: its config's table_spec)
    python scripts/make_tables.py multirun/2026-11-23/14-00-00 --rows backbone.name \\
        --metrics frame_auc video_auc --format md
    python scripts/make_tables.py multirun/A multirun/B --rows method._name_ --test-sets GID-DF23 \\
        --metrics frame_acc frame_logloss frame_auc frame_eer --paper ltw --table table2 \\
        --row-map ltw=Ours baseline=Alltrain-Basemodel --format both --output tables/ltw_table2
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from detect.tables.builder import Run, TableSpec, experiment_spec, latest_run_dir, load_runs, make_tables


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "dirs", nargs="*", help="run/multirun folders, searched recursively (default: latest multirun)"
    )
    p.add_argument(
        "--multirun-root",
        default=os.path.join(os.environ.get("DETECT_OUTPUT_DIR", "outputs"), "multirun"),
        help="where the latest multirun folder is looked for ($DETECT_OUTPUT_DIR/multirun)",
    )
    p.add_argument(
        "--spec",
        help="a YAML file with TableSpec keys (default: the table_spec of the runs' experiment); "
        "the flags below override it",
    )
    p.add_argument("--rows", nargs="+", help="row keys: dotted config paths or results.<field>")
    p.add_argument("--metrics", nargs="+", help="metric names of results.json (frame_auc, video_auc, ...)")
    p.add_argument("--test-sets", nargs="+", help="test set names (default: all, in order of appearance)")
    p.add_argument("--paper", help="paper folder under detect/tables/papers (e.g. ltw)")
    p.add_argument("--table", help="paper table name (e.g. table2)")
    p.add_argument("--row-map", nargs="+", metavar="OURS=PAPER", help="our row label -> the paper's row")
    p.add_argument("--column-map", nargs="+", metavar="OURS=PAPER", help="our test set -> the paper's column")
    p.add_argument("--metric-map", nargs="+", metavar="OURS=PAPER", help="our metric -> the paper's metric")
    p.add_argument("--where", nargs="+", metavar="KEY=VALUE", help="keep only runs with these key values")
    p.add_argument(
        "--ignore-keys", nargs="+", help="config keys that may differ inside a row (replaces defaults)"
    )
    p.add_argument("--digits", type=int, help="decimals (default 3)")
    p.add_argument("--title", help="a title for the table")
    p.add_argument("--format", choices=["md", "latex", "both"], default="md")
    p.add_argument("--output", help="write OUTPUT.md / OUTPUT.tex (atomically)")
    p.add_argument("--quiet", action="store_true", help="do not print the tables")
    return p.parse_args(argv)


def build_spec(args: argparse.Namespace, runs: Sequence[Run] = ()) -> TableSpec:
    """``--spec`` file, else the ``table_spec`` the runs' experiment declares; the flags override either."""
    spec_file = Path(args.spec).read_text(encoding="utf-8") if args.spec else None
    raw = yaml.safe_load(spec_file) if spec_file is not None else experiment_spec(runs)
    raw = dict(raw or {})
    flags = {
        "rows": args.rows,
        "metrics": args.metrics,
        "test_sets": args.test_sets,
        "paper": args.paper,
        "table": args.table,
        "ignore_keys": args.ignore_keys,
        "digits": args.digits,
        "title": args.title,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    for key, flag in (
        ("row_map", "--row-map"),
        ("column_map", "--column-map"),
        ("metric_map", "--metric-map"),
    ):
        raw[key] = {**raw.get(key, {}), **_pairs(getattr(args, key), flag)}
    raw["where"] = {**raw.get("where", {}), **_pairs(args.where, "--where")}
    return TableSpec.from_mapping(raw)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dirs = args.dirs or [latest_run_dir(args.multirun_root)]
    formats = ["md", "latex"] if args.format == "both" else [args.format]
    loaded = load_runs(dirs)  # read once: for the experiment's table_spec and for the table
    texts = make_tables(dirs, build_spec(args, loaded[0]), formats, args.output, loaded=loaded)
    if not args.quiet:
        print(f"Runs from: {', '.join(map(str, dirs))}\n")
        print("\n".join(texts.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
