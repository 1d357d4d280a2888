"""DPL's indicator binning: an indicator score in [0, 100] -> a step count 1..5.

DPL (ECCV 2024) runs each branch for as many GRU steps as its indicator's level (``k1``, ``k2`` in
{1..5}). Two ways to get that level from a score, both kept (docs/methods/dpl.md, "Indicators"):

* fixed intervals, as in the released code and the paper's supplement (:func:`bin_by_intervals`);
* equal-count quantiles of the training set's scores, as in the paper's Sec. 3.1 ("divide the scores
  into K1 bins, ensuring that the range of each bin can include a similar number of images")
  (:class:`QuantileBinner`).

Direction (which end of the score gets more steps):

* VQI (visual quality): lower quality -> more steps, so the step count *decreases* as the score grows
  (``descending=True``); "a smaller bin index represents better image quality" (Sec. 3.1).
* FII (forgery identifiability, P("genuine face") x 100): the more genuine a face looks, the harder it
  is, so the step count *increases* with the score (``descending=False``).

In both schemes a score lying exactly on an edge goes to the bin of the higher scores (the intervals are
closed below, ``[a, b)``, and the top one is closed on both sides).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

SCORE_MIN, SCORE_MAX = 0.0, 100.0

VQI_EDGES = (40.0, 45.0, 50.0, 55.0)
"""VQI: [0,40) -> 5, [40,45) -> 4, [45,50) -> 3, [50,55) -> 2, [55,100] -> 1 steps (the released code; the
paper's supplement prints the first interval as [50,100], a typo)."""

FII_EDGES = (50.0, 65.0, 80.0, 90.0)
"""FII: [0,50) -> 1, [50,65) -> 2, [65,80) -> 3, [80,90) -> 4, [90,100] -> 5 steps."""

DESCENDING = {"vqi": True, "fii": False}
"""The direction each indicator uses (``True``: the step count decreases as the score grows)."""

_EDGES = {"vqi": VQI_EDGES, "fii": FII_EDGES}


def check_scores(scores: Any, what: str = "scores") -> np.ndarray:
    """``scores`` as a float64 array, checked finite and within [0, 100] (ValueError naming a bad value)."""
    arr = np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr < SCORE_MIN) | (arr > SCORE_MAX)
    if bad.any():
        raise ValueError(
            f"{what} must be finite and within [0, 100]; got {arr[bad].ravel()[0]!r} "
            f"({int(bad.sum())} bad value(s))"
        )
    return arr


def _steps(scores: np.ndarray, edges: np.ndarray, descending: bool) -> np.ndarray:
    """0-based bin of each score among ``len(edges) + 1`` (a score equal to an edge goes up), as steps."""
    idx = np.searchsorted(edges, scores, side="right")
    n_bins = len(edges) + 1
    return (n_bins - idx if descending else idx + 1).astype(np.int64)


def bin_by_intervals(scores: Any, kind: Literal["vqi", "fii"]) -> np.ndarray:
    """Step counts 1..5 (int64, same shape as ``scores``) from DPL's fixed intervals.

    ``kind="vqi"``: :data:`VQI_EDGES`, fewer steps for higher scores (55 -> 1, 54.99 -> 2, 0 -> 5).
    ``kind="fii"``: :data:`FII_EDGES`, more steps for higher scores (90 -> 5, 89.99 -> 4, 0 -> 1).
    Scores outside [0, 100] (or not finite) raise ValueError.
    """
    if kind not in _EDGES:
        raise ValueError(f"kind must be 'vqi' or 'fii', got {kind!r}")
    arr = check_scores(scores)
    return _steps(arr, np.asarray(_EDGES[kind]), DESCENDING[kind])


class QuantileBinner:
    """Equal-count bins of the training scores (DPL Sec. 3.1), fitted once and saved with the run.

    ``fit(train_scores, n_bins=5, descending=...)``: with the ``n`` training scores sorted ascending as
    ``s_0 <= ... <= s_{n-1}``, edge ``j`` (``j = 1..n_bins-1``) is ``s_{ceil(j*n/n_bins)}``. ``__call__``
    puts a score in the ascending bin ``#{edges <= score}`` (a score equal to an edge goes to the bin of
    the higher scores, deterministically) and returns steps: ``bin + 1`` for ``descending=False`` (FII:
    higher score, more steps), ``n_bins - bin`` for ``descending=True`` (VQI: lower quality, more steps).

    With distinct training scores, training sample of rank ``i`` lands in bin ``floor(i*n_bins/n)``, so
    every bin holds ``floor(n/n_bins)`` or ``ceil(n/n_bins)`` of them. Ties straddling an edge all go to
    the upper bin, so heavy ties make bins uneven (and can make one empty when two edges coincide).
    """

    def __init__(self, edges: Any = None, descending: bool = False) -> None:
        self.edges: np.ndarray | None = None
        self.descending = bool(descending)
        if edges is not None:
            self.edges = self._check_edges(edges)

    @staticmethod
    def _check_edges(edges: Any) -> np.ndarray:
        arr = check_scores(edges, "quantile edges").ravel()
        if np.any(np.diff(arr) < 0):
            raise ValueError(f"quantile edges must be non-decreasing, got {arr.tolist()}")
        return arr

    @property
    def n_bins(self) -> int:
        """How many bins (steps 1..n_bins)."""
        if self.edges is None:
            raise RuntimeError("QuantileBinner is not fitted; call fit() or from_dict() first")
        return len(self.edges) + 1

    def fit(self, train_scores: Any, n_bins: int = 5, *, descending: bool) -> QuantileBinner:
        """Set the edges from the training scores (see the class docstring); returns ``self``."""
        if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        k = int(n_bins)
        s = np.sort(check_scores(train_scores, "train_scores").ravel())
        n = len(s)
        if n < k:
            raise ValueError(f"need at least n_bins={k} training scores, got {n}")
        idx = -((-np.arange(1, k) * n) // k)  # ceil(j * n / k), exact integer arithmetic
        self.edges = s[idx].astype(np.float64)
        self.descending = bool(descending)
        return self

    def __call__(self, scores: Any) -> np.ndarray:
        """Step counts 1..n_bins (int64, same shape as ``scores``); scores outside [0, 100] raise."""
        if self.edges is None:
            raise RuntimeError("QuantileBinner is not fitted; call fit() or from_dict() first")
        return _steps(check_scores(scores), self.edges, self.descending)

    def to_dict(self) -> dict[str, Any]:
        """``{"n_bins", "edges", "descending"}`` with plain Python types (JSON / YAML safe)."""
        return {"n_bins": self.n_bins, "edges": [float(e) for e in self.edges], "descending": self.descending}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantileBinner:
        """Inverse of :meth:`to_dict` (checks that ``len(edges) == n_bins - 1``)."""
        missing = {"n_bins", "edges", "descending"} - set(d)
        if missing:
            raise ValueError(f"QuantileBinner dict lacks {sorted(missing)}")
        binner = cls(list(d["edges"]), bool(d["descending"]))
        if binner.n_bins != int(d["n_bins"]):
            raise ValueError(f"n_bins={d['n_bins']} does not match {len(d['edges'])} edges")
        return binner

    def __repr__(self) -> str:
        edges = None if self.edges is None else self.edges.tolist()
        return f"QuantileBinner(edges={edges}, descending={self.descending})"
