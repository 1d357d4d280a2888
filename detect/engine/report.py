"""What a run leaves behind: per-set predictions, results.json and the printed metrics table."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from detect.evaluation.predictions import write_predictions
from detect.utils.io import atomic_write_json

TABLE_METRICS = ("frame_auc", "frame_eer", "frame_ap", "frame_acc", "frame_logloss", "video_auc", "video_eer")


def git_commit() -> str:
    """The project's git commit (``+dirty`` when the tree has uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_predictions(run_dir: str | Path, name: str, predictions: pd.DataFrame) -> Path:
    """Write one test set's per-frame predictions to ``run_dir/predictions/<name>.csv``."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    path = Path(run_dir) / "predictions" / f"{safe}.csv"
    write_predictions(path, predictions)
    return path


def write_results(run_dir: str | Path, results: Mapping, name: str = "results.json") -> Path:
    """Write ``results.json`` (or another name) atomically."""
    path = Path(run_dir) / name
    atomic_write_json(path, dict(results))
    return path


def format_metrics_table(metrics: Mapping[str, Mapping[str, float]], header: str = "") -> str:
    """A plain-text table: one row per test set, one column per metric; sets with none of those metrics
    (a method's analysis, e.g. DFFC's ``hardness-<manipulation>``) follow as ``set: key=value`` lines."""
    cols = ["set", *TABLE_METRICS, "n_frames", "n_videos"]
    rows, other = [], []
    for name, m in metrics.items():
        if not any(c in m for c in TABLE_METRICS):
            other.append(f"{name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in m.items()))
            continue
        row = [name]
        for c in cols[1:]:
            row.append(_fmt(m.get(c)))
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [header] if header else []
    out += [line, "-" * len(line)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out + other)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return "" if v is None else str(v)
