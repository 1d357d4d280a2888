"""Official test subsets that a paper fixes on top of a dataset's split.

- ``last_real_videos`` (LTW, GCD protocol): the last ``n`` real videos of DFDC (sorted by id) with the fakes
  made from them, read from DFDC's ``metadata.json`` (``{fake.mp4: {"original": real.mp4}}``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import PurePosixPath

import pandas as pd


def _stem(name: str) -> str:
    return PurePosixPath(str(name)).stem


def last_real_videos(table: pd.DataFrame, n: int, metadata: str) -> pd.DataFrame:
    """Keep the last ``n`` real videos (by id) and the fakes whose ``original`` is one of them."""
    if not os.path.isfile(metadata):
        raise FileNotFoundError(
            f"subset 'last_real_videos' needs DFDC's metadata.json (fake -> original): {metadata} not found"
        )
    with open(metadata, encoding="utf-8") as fh:
        meta = json.load(fh)
    original = {_stem(k): _stem(v["original"]) for k, v in meta.items() if v.get("original")}
    reals = sorted(table.loc[table["label"] == 0, "video_id"].unique())[-int(n) :]
    keep = set(reals)
    is_real = table["label"] == 0
    keep_fake = table["video_id"].map(lambda v: original.get(v) in keep)
    return table[(is_real & table["video_id"].isin(keep)) | (~is_real & keep_fake)]


def apply_subset(table: pd.DataFrame, subset: Mapping, dataset: str) -> pd.DataFrame:
    """Apply the subset the config of ``dataset`` (its name, for errors) names under ``subset`` (only on the
    split it names)."""
    kind = subset.get("kind")
    if subset.get("split") and (table.empty or table["split"].iloc[0] != subset["split"]):
        return table
    if kind == "last_real_videos":
        return last_real_videos(table, int(subset["n"]), str(subset["metadata"]))
    raise ValueError(f"dataset {dataset!r}: unknown subset kind {kind!r} (known: 'last_real_videos')")
