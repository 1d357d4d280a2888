"""One ``fit_step`` with every trainable parameter's gradient recorded (the detectors' tests share it): a
hook on each parameter keeps the gradient's absolute sum as backward produces it, before the step's
optimiser zeroes it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from helpers import cpu_step_context

from detect.engine.method_contract import Method, StepOutput


def one_step_gradients(
    method: Method, batch: Mapping, epochs: int = 1
) -> tuple[StepOutput, dict[str, float]]:
    """Configure the optimisers, run one training ``fit_step`` on ``batch``; returns the step's output and,
    per trainable parameter name, the absolute sum of the gradients it received (0.0: none)."""
    method.configure_optimizers(epochs, 4)
    method.train()
    seen = {n: 0.0 for n, p in method.named_parameters() if p.requires_grad}
    hooks = []
    for n, p in method.named_parameters():
        if p.requires_grad:

            def record(g: torch.Tensor, n: str = n) -> None:
                seen[n] += float(g.detach().abs().sum())

            hooks.append(p.register_hook(record))
    try:
        out = method.fit_step(batch, cpu_step_context())
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def fixed_batch(b: int = 4, size: int = 64, seed: int = 2) -> dict:
    """A fixed batch of ``b`` images (half real, half fake) of ``size`` px with their indices."""
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(b, 3, size, size, generator=g),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
        "index": torch.arange(10, 10 + b),
    }
