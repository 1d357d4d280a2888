"""Data checks the engine makes before training: both classes where they are needed, and the fixed
class-balanced subset that ``trainer.limit_eval_batches`` evaluates.

A train split with one class cannot teach a detector anything (an error); a validation or test set with
one class has no AUC (a warning naming the set: its AUC is NaN and validation cannot select an epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class OneClassSplit(ValueError):
    """The training split holds a single class."""


def check_classes(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Raise :class:`OneClassSplit` if ``tables['train']`` has one class; warn (and return the names)
    for every other set with fewer than two classes."""
    names = {0: "real", 1: "fake"}
    warned = []
    for role, table in tables.items():
        present = sorted(int(v) for v in pd.unique(table["label"])) if len(table) else []
        if len(present) >= 2:
            continue
        held = ", ".join(names.get(v, str(v)) for v in present) or "no frames"
        if role == "train":
            raise OneClassSplit(
                f"the train split holds only {held} ({len(table)} frames): a detector needs real and fake "
                "frames; check dataset.manipulations, the index's labels and protocol.train"
            )
        log.warning("set %r holds only %s (%d frames): its AUC is undefined (NaN)", role, held, len(table))
        warned.append(role)
    return warned


def limited_table(
    table: pd.DataFrame, limit_batches: int | None, batch_size: int, seed: int = 0
) -> pd.DataFrame:
    """The rows ``trainer.limit_eval_batches`` evaluates: at most ``limit_batches * batch_size`` frames,
    the same every epoch, half of each class where both have enough (not the table's first batches,
    which may hold one class and leave AUC undefined). The whole table when no limit applies."""
    if limit_batches is None or len(table) <= int(limit_batches) * int(batch_size):
        return table
    budget = int(limit_batches) * int(batch_size)
    rng = np.random.default_rng(seed)
    labels = table["label"].to_numpy()
    classes = sorted(np.unique(labels))
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take = [0] * len(pools)
    left = budget
    while left > 0:  # round-robin over classes with frames left
        progressed = False
        for i, pool in enumerate(pools):
            if left and take[i] < len(pool):
                take[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    rows = np.sort(np.concatenate([pool[:n] for pool, n in zip(pools, take, strict=True)]))
    return table.iloc[rows].reset_index(drop=True)
