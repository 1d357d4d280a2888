"""What a method's ``fit_step`` uses to run one update: autocast, backward, optimiser steps.

``forward`` runs a method's training forward (through DistributedDataParallel when the engine wrapped the
method: ``detect/engine/distributed.py``); ``step`` averages gradients across processes where DDP does not
(the explicit path), unscales fp16 gradients, clips the global norm and steps the optimiser; the engine
calls ``end_iteration`` once per iteration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist

from detect.engine.distributed import average_gradients, call_through
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
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None  # set by the engine
        self._forwards = 0

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context (bf16/fp16) or a no-op (fp32)."""
        return self.runtime.autocast()

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """``loss.backward()``, scaled under fp16."""
        self.scaler.scale(loss).backward(**kwargs)

    def forward(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``: a ``gradient_sync = "ddp"`` method's training forward (the whole loss),
        run through the DDP wrapper under several processes so its backward all-reduces in buckets."""
        self._forwards += 1
        if self.ddp is None:
            return fn(*args, **kwargs)
        return call_through(self.ddp, fn, *args, **kwargs)

    def step(self, optimizer: torch.optim.Optimizer, clip: bool = True) -> float | None:
        """Average grads across processes, unscale, clip, step, zero grads. Returns the grad norm."""
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        if self.ddp is not None:
            if not self._forwards:
                raise RuntimeError(
                    f"{type(self.ddp.module).__name__} declares gradient_sync='ddp' but its fit_step did not "
                    "run its forward through ctx.forward(...): its gradients would not be synchronised"
                )
        elif self.runtime.distributed:
            average_gradients(params, self.runtime.world_size)
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
        self._forwards = 0
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
