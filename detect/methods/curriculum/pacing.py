"""Pacing functions: which samples an epoch trains on (DFFC Algorithm 1; BabyStep for Fig. 3).

Epochs are 1-based here (the paper's t); the pool of epoch t is chosen from the hardness after epoch t − 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Pool:
    """An epoch's pool: ``hard`` samples (their losses update the hardness, Eq. 2's H_t) and ``easy`` ones
    (E_t: trained with the light augmentation DA when ``augment``, never updating the hardness)."""

    hard: np.ndarray
    easy: np.ndarray
    k: int
    augment: bool = True


def _order(scores: np.ndarray, descending: bool) -> np.ndarray:
    """Indices sorted by score (ties broken by index, so every process agrees)."""
    key = -scores if descending else scores
    return np.lexsort((np.arange(len(scores)), key))


def dffc_pool(
    t: int,
    dfh: np.ndarray,
    milestones: Sequence[int],
    k_prev: int,
    alpha_k: float,
    n_easy: int,
    augment_easy: bool = True,
) -> Pool:
    """Algorithm 1 at epoch ``t`` (1-based). t ≤ T0: everything (k = N). Otherwise k shrinks by α_k at each
    milestone after T0 (t ∈ T, t > T0), H_t = the k samples of highest DFH, E_t = the ``n_easy`` of lowest
    DFH, X'_t = H_t ∪ DA(E_t); a sample in both is trained once, as a hard one. ``augment_easy=False``
    trains E_t without DA (Fig. 3's "w/o DA"); E_t never updates the hardness (Eq. 2 covers H_t only)."""
    n = len(dfh)
    t0 = int(milestones[0])
    if t <= t0:
        return Pool(np.arange(n), np.zeros(0, np.int64), n, bool(augment_easy))
    k = k_prev
    if t in {int(m) for m in milestones[1:]}:
        k = max(1, int(round(k_prev * alpha_k)))
    hard = np.sort(_order(dfh, descending=True)[:k])
    easy = _order(dfh, descending=False)[: min(n_easy, n)]
    return Pool(hard, np.sort(np.setdiff1d(easy, hard)), k, bool(augment_easy))


def babystep_pool(
    t: int, hardness: np.ndarray, milestones: Sequence[int], n_easy: int = 0, augment_easy: bool = False
) -> Pool:
    """BabyStep (Bengio et al., 2009; Spitkovsky et al., 2010; docs/methods/dffc.md): a static hardness
    sorted easy → hard, the pool growing from the easiest fraction to all data in equal steps at the same
    milestones: with m milestones, epoch t trains the easiest (s + 1)/(m + 1) of the data, s = the number
    of milestones ≤ t. ``augment_easy``: the ``n_easy`` easiest samples of the pool are trained with DA."""
    n = len(hardness)
    m = len(milestones)
    s = sum(1 for x in milestones if int(x) <= t)
    k = n if s >= m else max(1, int(np.ceil(n * (s + 1) / (m + 1))))
    order = _order(hardness, descending=False)
    pool = order[:k]
    if not augment_easy or n_easy <= 0:
        return Pool(np.sort(pool), np.zeros(0, np.int64), k, False)
    easy = np.sort(pool[: min(n_easy, k)])
    return Pool(np.sort(pool[min(n_easy, k) :]), easy, k, True)
