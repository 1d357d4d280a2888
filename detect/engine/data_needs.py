"""What a method needs from its training data, checked against the sample table before any training work.

A method declares ``data_needs`` (``Method.needs_for(cfg.method)``) from the vocabulary below; the trainer
calls :func:`check_data_needs` on the training table right after loading it, before it builds the method
or a data loader, and stops with an error naming every missing need, what it means and the dataset that
lacks it. Evaluation needs none of them: a trained detector scores single frames.

Each need is a check over the sample table's columns (``detect/data/sample_table.py``):

- ``landmarks``: a landmark file for every real training frame (SBI/CBI blend from real faces);
- ``masks``: a manipulation-mask file for every fake training frame;
- ``manipulation_labels``: the training fakes name their manipulation (``domain``), at least two
  different ones (a split or attribution by manipulation);
- ``aligned_groups``: fakes made from real videos of the same training table (``source_video`` pairs a
  fake with its real), so a real frame can be grouped with its manipulated versions;
- ``identity_labels``: an ``identity`` column naming the person of every training frame;
- ``multi_quality``: the same video at two or more compression levels (``compression``);
- ``clips``: several frames per training video (clip-based methods).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

import pandas as pd
from hydra.utils import get_class

MAX_SHOWN = 3


def _existing(paths: pd.Series) -> pd.Series:
    return paths.map(lambda p: isinstance(p, str) and bool(p) and os.path.isfile(p))


def _file_per_row(table: pd.DataFrame, rows: pd.Series, column: str, what: str) -> str | None:
    sub = table.loc[rows]
    if len(sub) == 0:
        return f"the training table has no {what}"
    if column not in sub:
        return f"the sample table has no '{column}' column"
    ok = _existing(sub[column])
    if bool(ok.all()):
        return None
    missing = sub.loc[~ok, column]
    shown = [str(p) for p in missing.head(MAX_SHOWN)]
    return f"{len(missing)} of {len(sub)} {what} have no file in '{column}' (e.g. {shown})"


def _landmarks(table: pd.DataFrame) -> str | None:
    return _file_per_row(table, table["label"] == 0, "landmark_path", "real frames")


def _masks(table: pd.DataFrame) -> str | None:
    return _file_per_row(table, table["label"] == 1, "mask_path", "fake frames")


def _manipulation_labels(table: pd.DataFrame) -> str | None:
    domains = sorted(set(table.loc[table["label"] == 1, "domain"].dropna().astype(str)))
    if len(domains) >= 2:
        return None
    return f"the training fakes carry {len(domains)} manipulation name(s) {domains}; at least two are needed"


def _aligned_groups(table: pd.DataFrame) -> str | None:
    reals = set(table.loc[table["label"] == 0, "source_video"].dropna())
    fakes = set(table.loc[table["label"] == 1, "source_video"].dropna())
    if reals & fakes:
        return None
    return (
        f"no training fake was made from a training real ({len(fakes)} fake and {len(reals)} real source "
        "videos, none shared): check the dataset's pairing (dataset.pairing) and that the training "
        "split holds reals and fakes of the same videos"
    )


def _identity_labels(table: pd.DataFrame) -> str | None:
    if "identity" not in table:
        return "the sample table has no 'identity' column"
    n = int(table["identity"].isna().sum())
    return None if n == 0 else f"{n} of {len(table)} training frames have no identity"


def _multi_quality(table: pd.DataFrame) -> str | None:
    keys = ["dataset", "label_name", "video_id"]
    levels = table.groupby(keys)["compression"].nunique()
    if len(levels) and int(levels.max()) >= 2:
        return None
    found = sorted(set(table["compression"].astype(str)))
    return f"no training video is present at two compression levels (levels found: {found})"


def _clips(table: pd.DataFrame) -> str | None:
    frames = table.groupby("video").size()
    if len(frames) and int(frames.min()) >= 2:
        return None
    single = frames[frames < 2]
    shown = list(single.index[:MAX_SHOWN])
    return f"{len(single)} of {len(frames)} training videos have a single frame (e.g. {shown})"


#: need -> (what it means, its check: None when met, else what is missing).
NEEDS: dict[str, tuple[str, Callable[[pd.DataFrame], str | None]]] = {
    "landmarks": ("a landmark file for every real training frame", _landmarks),
    "masks": ("a manipulation-mask file for every fake training frame", _masks),
    "manipulation_labels": ("the manipulation of every training fake, two or more", _manipulation_labels),
    "aligned_groups": ("fakes paired with the training reals they were made from", _aligned_groups),
    "identity_labels": ("the identity of every training frame", _identity_labels),
    "multi_quality": ("the same videos at several compression levels", _multi_quality),
    "clips": ("several frames per training video", _clips),
}


def check_needs_known(needs: Iterable[str], owner: str) -> frozenset[str]:
    """``needs`` as a frozenset, every one of them in :data:`NEEDS`."""
    needs = frozenset(needs)
    unknown = sorted(needs - set(NEEDS))
    if unknown:
        raise ValueError(f"{owner} declares unknown data needs {unknown}; known: {sorted(NEEDS)}")
    return needs


def method_needs(method_cfg: Mapping) -> frozenset[str]:
    """The data needs of the method ``method_cfg`` (``cfg.method``) builds, without building it."""
    target = method_cfg.get("_target_")
    if not target:
        raise ValueError(f"the method config has no '_target_': {dict(method_cfg)}")
    cls = get_class(str(target))
    needs_for = getattr(cls, "needs_for", None)
    needs = needs_for(method_cfg) if needs_for is not None else frozenset()
    return check_needs_known(needs, cls.__name__)


def missing_needs(needs: Iterable[str], table: pd.DataFrame) -> dict[str, str]:
    """need -> what the table lacks, for every need the table does not meet."""
    out = {}
    for need in sorted(check_needs_known(needs, "the caller")):
        problem = NEEDS[need][1](table)
        if problem is not None:
            out[need] = problem
    return out


def check_data_needs(method_cfg: Mapping, table: pd.DataFrame, dataset: str) -> frozenset[str]:
    """Stop, naming what is missing and for which dataset, when the training ``table`` lacks something the
    method needs; returns the needs checked."""
    needs = method_needs(method_cfg)
    missing = missing_needs(needs, table)
    if missing:
        name = method_cfg.get("name") or str(method_cfg.get("_target_"))
        lines = [f"  - {need} ({NEEDS[need][0]}): {problem}" for need, problem in missing.items()]
        raise ValueError(
            f"method {name!r} needs {', '.join(missing)} from its training data, which dataset {dataset!r} "
            f"does not provide ({len(table)} training frames):\n" + "\n".join(lines) + "\n"
            "Choose a dataset that has them, or a method that does not need them."
        )
    return needs
