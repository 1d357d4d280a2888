"""Sharpness-aware minimisation (SAM: Foret, Kleiner, Mobahi and Neyshabur, "Sharpness-Aware Minimization
for Efficiently Improving Generalization", ICLR 2021), as SBI (Shiohara & Yamasaki, CVPR 2022, Sec. 4.1)
trains with it.

One SAM update is two forward/backward passes around a base optimiser (SGD in SBI):

1. the gradient ``g = ∇L(w)`` of the batch loss at the current weights;
2. the ascent to the worst point of the ρ-ball, ε̂(w) = ρ·g / ‖g‖₂ (SAM's Eq. 2 with p = 2; the norm over
   every trainable parameter together, not SAM's ``adaptive`` variant): :func:`ascend`;
3. the gradient ``∇L(w + ε̂)`` of the same batch at the perturbed weights (SAM's Eq. 3, the
   second-order term dropped as the paper does);
4. back to ``w`` (:func:`restore`: the saved values, not ``w + ε̂ − ε̂`` in floating point), then the base
   optimiser's step with that gradient.

Under several processes the ascent uses the gradient averaged over every process (the caller averages
it before :func:`ascend`), so each process perturbs identically and the weights stay equal; the second
gradient is averaged by the engine's explicit path. Nothing here reads the optimiser's state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


@torch.no_grad()
def gradient_norm(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """‖g‖₂ over every parameter that has a gradient (float32, on the first gradient's device)."""
    norms = [p.grad.detach().float().norm(2) for p in params if p.grad is not None]
    if not norms:
        raise ValueError("SAM's ascent needs gradients: no parameter has one (call backward first)")
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]), 2)


@torch.no_grad()
def ascend(
    params: Sequence[nn.Parameter], rho: float, eps: float = 1e-12
) -> list[torch.Tensor | None] | None:
    """Move every parameter to ``w + ε̂`` with ε̂ = ρ·g/(‖g‖₂ + eps); returns the saved ``w`` (None per
    parameter without a gradient), or None (nothing moved) when the gradient is not finite (an fp16 step
    the loss scaler will skip). ``eps``: SAM's released code adds 1e-12 to the norm."""
    norm = gradient_norm(params)
    if not bool(torch.isfinite(norm)):
        return None
    scale = rho / (norm + eps)
    saved: list[torch.Tensor | None] = []
    for p in params:
        if p.grad is None:
            saved.append(None)
            continue
        saved.append(p.detach().clone())
        p.add_(p.grad.to(p.dtype) * scale.to(device=p.device, dtype=p.dtype))
    return saved


@torch.no_grad()
def restore(params: Sequence[nn.Parameter], saved: Sequence[torch.Tensor | None] | None) -> None:
    """Put back the weights :func:`ascend` saved (the gradients are kept)."""
    if saved is None:
        return
    for p, w in zip(params, saved, strict=True):
        if w is not None:
            p.copy_(w)
