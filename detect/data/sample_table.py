"""The sample table: one row per frame, the single currency between the index and the dataset views.

Columns (all views and methods rely on these names):

- ``path``: absolute image path; ``label``: 0 real / 1 fake; ``label_name``: the index's label string;
- ``dataset``; ``domain``: the manipulation (``real`` for reals; ``DF``, ``F2F``, ... for fakes);
- ``compression``: ``raw``/``c23``/``c40``, ``-`` where the dataset has no levels; ``split``;
- ``video``: a key unique across datasets, labels and compressions (DF ``000_003`` != F2F ``000_003``);
- ``video_id``: the id as the index names it; ``source_video``: the key of the real video a fake was made
  from (a real's is its own), for pairing; ``frame``: the frame number;
- ``landmark_path``: the landmark ``.npy`` (may not exist); ``mask_path``: the manipulation mask or None.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = (
    "path",
    "label",
    "label_name",
    "dataset",
    "domain",
    "compression",
    "split",
    "video",
    "video_id",
    "source_video",
    "frame",
    "landmark_path",
    "mask_path",
)


def validate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check columns and dtypes; return the table with ``label``/``frame`` as int64."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"sample table lacks columns {missing}")
    table = table.astype({"label": "int64", "frame": "int64"})
    bad = set(table["label"].unique()) - {0, 1}
    if bad:
        raise ValueError(f"sample table has labels other than 0/1: {sorted(bad)}")
    return table


def concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tables of several sets, keeping one row per (path, split)."""
    if not tables:
        return pd.DataFrame(columns=list(COLUMNS))
    out = pd.concat(tables, ignore_index=True)
    return validate_table(out.drop_duplicates(subset=["path", "split"]).reset_index(drop=True))
