"""What a method's ``fit_step`` uses to run one update: autocast, backward, optimiser steps.

``step`` averages gradients across processes (torch.distributed), unscales fp16 gradients, clips the
global norm and steps the optimiser; the engine calls ``end_iteration`` once per iteration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from detect.engine.runtime import Runtime


class StepContext:
    """Engine services handed to ``Method.fit_step``."""

    def __init__(self, runtime: Runtime, grad_clip: float | None = None) -> None:
        self.runtime = runtime
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler("cuda", enabled=runtime.precision == "fp16")
        self.epoch = 0
        self.global_step = 0
        self._stepped: list[torch.optim.Optimizer] = []

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context (bf16/fp16) or a no-op (fp32)."""
        return self.runtime.autocast()

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """``loss.backward()``, scaled under fp16."""
        self.scaler.scale(loss).backward(**kwargs)

    def _sync_grads(self, params: list[torch.nn.Parameter]) -> None:
        world = self.runtime.world_size
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for g in grads:
            by_dtype.setdefault(g.dtype, []).append(g)
        for group in by_dtype.values():
            flat = _flatten_dense_tensors(group)
            dist.all_reduce(flat)
            flat /= world
            for g, synced in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
                g.copy_(synced)

    def step(self, optimizer: torch.optim.Optimizer, clip: bool = True) -> float | None:
        """Average grads across processes, unscale, clip, step, zero grads. Returns the grad norm."""
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        if self.runtime.distributed:
            self._sync_grads(params)
        norm = None
        if clip and self.grad_clip:
            self.scaler.unscale_(optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        self.scaler.step(optimizer)
        self._stepped.append(optimizer)
        optimizer.zero_grad(set_to_none=True)
        return norm

    def end_iteration(self) -> None:
        """Update the fp16 loss scale once per iteration (after every optimiser of the step)."""
        if self._stepped:
            self.scaler.update()
        self._stepped.clear()
        self.global_step += 1

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor from every process (sizes may differ); identity when single."""
        if not self.runtime.distributed:
            return tensor
        sizes = [
            torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(self.runtime.world_size)
        ]
        dist.all_gather(sizes, torch.tensor([tensor.numel()], device=tensor.device))
        top = int(max(s.item() for s in sizes))
        padded = torch.zeros(top, dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.numel()] = tensor.flatten()
        out = [torch.zeros_like(padded) for _ in sizes]
        dist.all_gather(out, padded)
        return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes, strict=True)])


def trainable(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters that require gradients."""
    return [p for p in params if p.requires_grad]
