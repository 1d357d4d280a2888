"""LTW's losses (Sun et al., "Domain General Face Forgery Detection by Learning to Weight", AAAI 2021).

- ``icc_loss``: the intra-class compact loss, Eqs. 7–10: L_icc = mean_real (o − C_real)² − mean_fake
  (o − C_real)², with C_real the mean output of the mini-batch's reals (Eq. 8); a term with no sample is 0
  (docs/methods/ltw.md, "ICC"), and with no real in the batch there is no centre: the loss is 0.
- ``sample_losses``: per-sample terms whose mean is L = L_ce + λ·L_icc (Eq. 11), so that the weighted
  training loss T(θ, w) = (1/K) Σ_i p(f_i; w)·L_i of Eq. 1 reduces to Eq. 11 when every weight is 1.
- ``weighted_terms``: T's per-sample weighted part and its unweighted rest: (L_i, 0) when each sample's
  ICC contribution is weighted (this project's reading of Eq. 1), (BCE_i, λ·L_icc) when ICC stays
  unweighted (the released code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _full(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (half/bfloat16 outputs of autocast are promoted; float64 stays)."""
    return x.to(torch.promote_types(x.dtype, torch.float32)).reshape(-1)


def icc_terms(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample ICC contributions [K] whose sum is L_icc: a real adds (o − C)²/|O_real|, a fake subtracts
    (o − C)²/|O_fake|; zeros when the batch holds no real."""
    o, y = _full(output), _full(labels)
    real = y < 0.5
    n_real, n_fake = int(real.sum()), int((~real).sum())
    if n_real == 0:
        return torch.zeros_like(o)
    centre = o[real].mean()
    d2 = (o - centre) ** 2
    terms = torch.where(real, d2 / max(n_real, 1), -d2 / max(n_fake, 1))
    return terms


def icc_loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 10: L_positive − L_negative (each 0 when it has no sample)."""
    return icc_terms(output, labels).sum()


def sample_losses(logits: torch.Tensor, labels: torch.Tensor, icc_weight: float) -> torch.Tensor:
    """Per-sample L_i = BCE_i + λ·K·icc_i, so mean_i L_i = L_ce + λ·L_icc (Eq. 11). ``logits``: [K] (the
    output o of Eqs. 7–9 is the detector's logit, after pooling and the fully-connected layer)."""
    logits, labels = _full(logits), _full(labels).to(_full(logits).dtype)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if icc_weight == 0:
        return bce
    return bce + icc_weight * len(logits) * icc_terms(logits, labels)


def weighted_terms(
    logits: torch.Tensor, labels: torch.Tensor, icc_weight: float, weight_icc: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per_sample [K], rest)`` with T(θ, w) = mean_i(p_i·per_sample_i) + rest: ``weight_icc`` puts each
    sample's ICC contribution under its weight (``sample_losses``, rest 0); otherwise only the BCE is
    weighted and rest = λ·L_icc (the released code)."""
    if weight_icc or icc_weight == 0:
        per = sample_losses(logits, labels, icc_weight)
        return per, per.new_zeros(())
    bce = sample_losses(logits, labels, 0.0)
    return bce, icc_weight * icc_loss(logits, labels)
