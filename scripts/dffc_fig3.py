"""DFFC Fig. 3: cross-dataset video AUC of Xception under each training strategy (vanilla, BabyStep with and
without the easy-pool augmentation, DFFC with and without it), as grouped bars, from a sweep of
``experiment=dffc/fig3``. The paper prints no numbers for this figure: the plot is ours only.

    python train.py -m experiment=dffc/fig3 && python scripts/dffc_fig3.py      # the latest multirun
    python scripts/dffc_fig3.py outputs/multirun/<run> --output fig3.png

Runs are gathered and grouped as make_tables.py does (the sweep's ``table_spec``: rows = strategies, columns
= test sets); a strategy with several seeds is drawn at its mean with the standard deviation as error bar.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detect.tables.builder import (
    ResultTable,
    TableSpec,
    build_table,
    experiment_spec,
    latest_run_dir,
    load_runs,
)
from detect.utils.io import atomic_write


def fig3_table(dirs: Sequence[str | os.PathLike]) -> ResultTable:
    """The sweep's table (its experiment's ``table_spec``), as make_tables.py builds it."""
    runs, excluded = load_runs(dirs)
    spec = experiment_spec(runs)
    if spec is None:
        raise ValueError(
            f"the runs under {list(map(str, dirs))} declare no table_spec: sweep experiment=dffc/fig3"
        )
    return build_table(runs, TableSpec(**spec), excluded)


def plot_fig3(table: ResultTable, path: str | os.PathLike) -> Path:
    """Grouped bars: one group per test set, one bar per strategy (row); written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = table.columns
    width = 0.8 / max(1, len(table.rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 2.5, 4))
    x = np.arange(len(columns))
    for j, row in enumerate(table.rows):
        cells = [table.cells.get((row, c)) for c in columns]
        means = [c.mean if c is not None else np.nan for c in cells]
        errs = [c.std if c is not None and c.n > 1 else 0.0 for c in cells]
        ax.bar(x + (j - (len(table.rows) - 1) / 2) * width, means, width, yerr=errs, label=row, capsize=2)
    ax.set_xticks(x, [f"{ts}" for ts, _ in columns])
    ax.set_ylabel(" / ".join(sorted({m for _, m in columns})))
    ax.set_title(table.spec.title or "DFFC Fig. 3")
    ax.legend(fontsize=7, ncols=min(3, len(table.rows)))
    lo = np.nanmin([c.mean for c in table.cells.values()] or [0.0])
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None}))
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", help="the sweep's folder(s) (default: the latest multirun)")
    p.add_argument(
        "--multirun-root", default=os.path.join(os.environ.get("DETECT_OUTPUT_DIR", "outputs"), "multirun")
    )
    p.add_argument("--output", help="the PNG (default: <first folder>/dffc_fig3.png)")
    args = p.parse_args(argv)
    dirs = args.dirs or [str(latest_run_dir(args.multirun_root))]
    table = fig3_table(dirs)
    out = plot_fig3(table, args.output or Path(dirs[0]) / "dffc_fig3.png")
    print(f"wrote {out} ({len(table.rows)} strategies x {len(table.columns)} test sets)")


if __name__ == "__main__":
    main()
