"""Per-frame prediction files: one CSV per test set, the input of ``metrics.compute_metrics``.

Columns: ``index`` (the sample's row in the test table), ``path``, ``video`` (the unique video key),
``label`` (0 real / 1 fake), ``prob`` (fake probability), ``dataset``, ``domain``, then any extra
columns the caller passes, in their order. Floats are written so that they read back bit-exact.
"""

from __future__ import annotations

import os

import pandas as pd

from detect.utils.io import atomic_write

PREDICTION_COLUMNS = ("index", "path", "video", "label", "prob", "dataset", "domain")
_STRING_COLUMNS = ("path", "video", "dataset", "domain")


def write_predictions(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write predictions to ``path`` as CSV, atomically; required columns first, extras after."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"predictions for {path} lack columns {missing}; have {list(df.columns)}")
    extras = [c for c in df.columns if c not in PREDICTION_COLUMNS]
    out = df[list(PREDICTION_COLUMNS) + extras]
    atomic_write(path, lambda tmp: out.to_csv(tmp, index=False, float_format=None))


def _numeric_or_text(col: pd.Series) -> pd.Series:
    """An extra column back as numbers where every non-empty entry parses, else as text."""
    try:
        return pd.to_numeric(col.replace("", float("nan")))
    except (ValueError, TypeError):
        return col


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a file written by :func:`write_predictions` (ids such as ``000_003`` stay strings)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a predictions file: it lacks columns {missing}")
    for col in df.columns:
        if col in ("index", "label"):
            df[col] = df[col].astype("int64")
        elif col == "prob":
            df[col] = df[col].replace("", "nan").astype("float64")  # float(): round-trip exact
        elif col not in _STRING_COLUMNS:
            df[col] = _numeric_or_text(df[col])
    return df
