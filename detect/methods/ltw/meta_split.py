"""LTW's meta-split (Sun et al., AAAI 2021, "Meta-Split Strategy"): every epoch the N source domains are
shuffled with a seeded generator; ⌈N/2⌉ train the detector, the rest are meta domains (never both)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def meta_split(domains: Sequence[str], seed: int, epoch: int) -> tuple[list[str], list[str]]:
    """(training domains, meta domains) of ``epoch``; needs at least two domains."""
    domains = sorted(set(domains))
    if len(domains) < 2:
        raise ValueError(
            f"LTW's meta-split needs at least two source domains, got {domains}: train on several "
            "manipulations (e.g. protocol=gid or dataset.manipulations=[F2F,FS,NT])"
        )
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(domains))
    shuffled = [domains[i] for i in order]
    k = math.ceil(len(domains) / 2)
    return sorted(shuffled[:k]), sorted(shuffled[k:])
