"""ProDet's losses and feature bridging (Cheng et al., NeurIPS 2024, Sec. 3.2–3.3), as pure functions.

- ``detection_loss``: L_d of Eq. 7, cross-entropy of the final classifier's 2-way logits with y' = "any
  fake" (blendfakes and deepfakes are the negatives), per sample;
- ``oriented_loss``: L_o of Eq. 6, binary cross-entropy summed over the three forgery attributes (the
  triplet strategy's 2-way heads take the soft target ``[1 − a', a']``), per sample; the multi-label and
  multi-class strategies of appendix 7.3 as options;
- ``bridge``/``bridge_ratios``: feature bridging of Eq. 4, ``Mix(a, b) = λ·later + (1 − λ)·earlier`` for
  features and attribute labels alike, λ ~ Beta(α, α) per sample with α ~ U(0.5, 2) per batch (the
  released code; the paper says only "a random mixing ratio");
- ``transition_loss``: L_t of Eq. 5, Σ_i MSE(T(N, F_i), F_{i+1}), each term the mean over elements (the
  released code: the paper's ‖·‖² summed over 512×8×8 elements would make γ = 10 swamp the other terms).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−Σ_k t_k log softmax(z)_k per sample ([N, k] logits and targets → [N])."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def detection_loss(logits: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Eq. 7 per sample: ``fake`` [N] in [0, 1] (soft when bridged features are detected as in manifold
    mixup, the w/o L_o ablation)."""
    fake = fake.float()
    return soft_cross_entropy(logits, torch.stack([1 - fake, fake], dim=-1))


def oriented_loss(logits: Sequence[torch.Tensor], target: torch.Tensor, strategy: str) -> torch.Tensor:
    """Eq. 6 per sample. ``target``: [N, 3] attribute labels (triplet, multilabel) or [N, n] class
    probabilities (multiclass)."""
    target = target.float()
    if strategy == "triplet":
        return sum(
            soft_cross_entropy(lg, torch.stack([1 - target[:, k], target[:, k]], dim=-1))
            for k, lg in enumerate(logits)
        )
    if strategy == "multilabel":
        return F.binary_cross_entropy_with_logits(logits[0].float(), target, reduction="none").sum(-1)
    if strategy == "multiclass":
        return soft_cross_entropy(logits[0], target)
    raise ValueError(f"unknown attribute strategy {strategy!r}")


def bridge_ratios(
    n: int, alpha_range: Sequence[float], device: torch.device | str = "cpu", generator=None
) -> torch.Tensor:
    """λ [n] ~ Beta(α, α), one α ~ U(alpha_range) for the batch."""
    lo, hi = float(alpha_range[0]), float(alpha_range[1])
    alpha = lo + (hi - lo) * torch.rand((), generator=generator)
    lam = torch.distributions.Beta(alpha, alpha).sample((n,))
    return lam.to(device)


def bridge(earlier: torch.Tensor, later: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``λ·later + (1 − λ)·earlier`` per sample (λ [N] broadcast over the other dimensions)."""
    lam = lam.to(earlier.dtype).reshape(-1, *([1] * (earlier.dim() - 1)))
    return lam * later + (1 - lam) * earlier


def transition_loss(predicted: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 5: Σ over the transition steps of the element-mean squared error."""
    if not predicted:
        raise ValueError("transition_loss needs at least one step")
    return sum(F.mse_loss(p.float(), t.float()) for p, t in zip(predicted, targets, strict=True))
