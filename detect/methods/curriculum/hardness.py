"""Dynamic forensic hardness (DFFC: Lin et al., "DFFC: Dynamic Facial Forensic Curriculum", 2024, Sec. 2.2;
the choices the paper leaves open follow docs/methods/dffc.md).

* Eq. 1, instantaneous hardness: s_t(i) = l(f(x_i; θ_{t−1}), y_i) · η_max / η_t, the loss of sample i when it
  was last trained (recorded during the training pass), with η_t floored at η_min = ``eta_floor``·η_max so
  the ratio stays finite at the end of a cosine schedule;
* Eq. 2, dynamic hardness (after DIH, Zhou et al., NeurIPS 2020): d_t(i) = γ·s_t(i) + (1 − γ)·d_{t−1}(i) for
  i in the hard pool H_t (every sample during warm-up; the augmented easy samples are not in it), d_t(i) =
  d_{t−1}(i) otherwise; d_0 = the loss of the first epoch a sample is trained in;
* Eq. 3: DFH_t(i) = d_t(i) + α_f·q(i), q(i) = 1 − quality(i) the static quality prior.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class HardnessTable:
    """d_t and the prior q for N samples; :meth:`update` applies one epoch's recorded losses."""

    def __init__(
        self, n: int, gamma: float = 0.9, alpha_f: float = 0.5, eta_max: float = 0.1, eta_floor: float = 1e-3
    ) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"curriculum.gamma={gamma} must lie in [0, 1]")
        if eta_max <= 0 or not 0 < eta_floor <= 1:
            raise ValueError(f"curriculum.eta_max={eta_max} must be > 0 and eta_floor={eta_floor} in (0, 1]")
        self.n, self.gamma, self.alpha_f = int(n), float(gamma), float(alpha_f)
        self.eta_max, self.eta_min = float(eta_max), float(eta_floor) * float(eta_max)
        self.d = np.zeros(self.n, dtype=np.float64)
        self.seen = np.zeros(self.n, dtype=bool)
        self.quality = np.ones(self.n, dtype=np.float64)
        self.history: list[np.ndarray] = []  # DFH after each epoch (Fig. 4)

    def set_quality(self, quality: np.ndarray) -> None:
        """The prior's quality in [0, 1] per sample (q = 1 − quality)."""
        quality = np.asarray(quality, dtype=np.float64)
        if quality.shape != (self.n,) or not np.isfinite(quality).all():
            raise ValueError(f"quality must be {self.n} finite values, got shape {quality.shape}")
        self.quality = quality

    def instantaneous(self, losses: np.ndarray, lrs: np.ndarray) -> np.ndarray:
        """Eq. 1: s = loss · η_max / max(η, η_min)."""
        return (
            np.asarray(losses, np.float64)
            * self.eta_max
            / np.maximum(np.asarray(lrs, np.float64), self.eta_min)
        )

    def update(self, indices: np.ndarray, losses: np.ndarray, lrs: np.ndarray) -> None:
        """Eq. 2 for the samples trained as hard this epoch (``indices``, their losses and learning rates; a
        sample recorded twice keeps its last record). Samples not listed keep their d."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n):
            raise IndexError(
                f"sample indices must lie in [0, {self.n}), got {indices.min()}..{indices.max()}"
            )
        s = self.instantaneous(losses, lrs)
        last = {int(i): float(v) for i, v in zip(indices, s, strict=True)}
        idx = np.fromiter(last, dtype=np.int64, count=len(last))
        val = np.fromiter(last.values(), dtype=np.float64, count=len(last))
        first = ~self.seen[idx]
        self.d[idx] = np.where(first, val, self.gamma * val + (1.0 - self.gamma) * self.d[idx])
        self.seen[idx] = True

    def dfh(self) -> np.ndarray:
        """Eq. 3: DFH = d + α_f·(1 − quality)."""
        return self.d + self.alpha_f * (1.0 - self.quality)

    def end_epoch(self) -> None:
        """Record this epoch's DFH (for Fig. 4)."""
        self.history.append(self.dfh().astype(np.float32))

    def state(self) -> dict:
        return {
            "d": self.d.copy(),
            "seen": self.seen.copy(),
            "quality": self.quality.copy(),
            "history": np.stack(self.history) if self.history else np.zeros((0, self.n), np.float32),
        }

    def load_state(self, state: Mapping) -> None:
        self.d = np.asarray(state["d"], np.float64)
        self.seen = np.asarray(state["seen"], bool)
        self.quality = np.asarray(state["quality"], np.float64)
        self.history = [np.asarray(h, np.float32) for h in np.asarray(state["history"])]
