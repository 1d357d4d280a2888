"""Gradient synchronisation across processes: PyTorch's ``DistributedDataParallel`` or an explicit all-reduce.

A method declares which one its update needs (``Method.gradient_sync``):

- ``"ddp"``: the update is one backward pass of a loss computed by one forward. The engine wraps the method
  in :class:`torch.nn.parallel.DistributedDataParallel`, whose reducer all-reduces gradients in buckets
  while backward is still running (communication overlaps computation). The method's ``fit_step`` runs its
  forward through ``ctx.forward(fn, ...)``, which calls ``fn`` *through the DDP wrapper*
  (:func:`call_through`) so the reducer sees the forward and its outputs; ``ctx.step`` then does no
  all-reduce of its own. ``Method.find_unused_parameters`` is passed on to DDP for methods whose step
  leaves some parameters without gradient (a warm-up head, an idle branch).
- ``"explicit"``: the update needs something DDP cannot express: second-order meta gradients through a
  virtual step (LTW), several optimisers stepping on different losses or stage switches that change which
  parameters train (DPL). ``ctx.step`` averages the gradients of the optimiser's parameters with one
  all-reduce per dtype after backward (:func:`average_gradients`). This is the safe default: it is correct
  for any ``fit_step``.

Under one process neither does anything. Checkpoints are taken from the unwrapped method (the engine keeps
it), so saved state dicts never carry DDP's ``module.`` prefix (:func:`unwrap` for code holding a wrapper).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel

from detect.engine.runtime import Runtime

log = logging.getLogger(__name__)

GRADIENT_SYNC = ("ddp", "explicit")

#: DDP's gradient bucket size (PyTorch's default): gradients are all-reduced bucket by bucket, in reverse
#: order of the forward, as soon as all gradients of a bucket are ready.
BUCKET_CAP_MB = 25


def gradient_sync_of(method: nn.Module) -> str:
    """The method's declared gradient synchronisation (``"ddp"`` or ``"explicit"``), checked."""
    sync = getattr(method, "gradient_sync", "explicit")
    if sync not in GRADIENT_SYNC:
        raise ValueError(
            f"{type(method).__name__}.gradient_sync={sync!r}; use one of {GRADIENT_SYNC} "
            "(detect/engine/distributed.py says which fits which update)"
        )
    return sync


def wrap_for_training(method: nn.Module, runtime: Runtime) -> DistributedDataParallel | None:
    """A DDP wrapper around ``method`` when several processes train it and it declares ``"ddp"``, else None.

    Call after the method's weights are final on every rank (resume, ``init_from``): DDP broadcasts rank 0's
    parameters and buffers at construction, and registers its gradient hooks on the parameters that require
    gradients at that moment."""
    if not runtime.distributed or gradient_sync_of(method) != "ddp":
        if runtime.distributed:
            log.info("gradient sync: explicit all-reduce after backward (%s)", type(method).__name__)
        return None
    find_unused = bool(getattr(method, "find_unused_parameters", False))
    ddp = DistributedDataParallel(
        method,
        device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
        output_device=runtime.device.index if runtime.device.type == "cuda" else None,
        find_unused_parameters=find_unused,
        bucket_cap_mb=BUCKET_CAP_MB,
        gradient_as_bucket_view=True,
    )
    log.info(
        "gradient sync: DistributedDataParallel (%s, find_unused_parameters=%s)",
        type(method).__name__,
        find_unused,
    )
    return ddp


def sync_batchnorm(method: nn.Module, runtime: Runtime, enabled: bool) -> nn.Module:
    """``runtime.sync_bn``: every BatchNorm of ``method`` as ``nn.SyncBatchNorm`` (statistics over the
    global batch) when several processes train, before DDP wraps it; both gradient paths keep it."""
    if not (enabled and runtime.distributed):
        return method
    if runtime.device.type == "cpu":
        raise ValueError(
            "runtime.sync_bn=true: PyTorch's SyncBatchNorm runs on GPUs only; use runtime.sync_bn=false on "
            "the CPU"
        )
    log.info("BatchNorm layers converted to SyncBatchNorm")
    return nn.SyncBatchNorm.convert_sync_batchnorm(method)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def call_through(ddp: DistributedDataParallel, fn: Callable, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` as the wrapped module's forward, through ``ddp.__call__``.

    A method's training forward is not its ``forward`` (``fit_step`` computes losses from a batch), so the
    module's ``forward`` is pointed at ``fn`` for this one call and restored before ``fn`` runs: DDP's
    pre-forward (buffer broadcast, reducer preparation) and post-forward (finding unused parameters from the
    outputs) see exactly the computation whose loss the caller then backpropagates. ``fn`` must compute
    the whole loss: a parameter used after this call would not be known to the reducer."""
    module = ddp.module
    had_own = "forward" in module.__dict__
    saved = module.__dict__.get("forward")

    def redirected(*a, **k):
        if had_own:
            module.forward = saved
        else:
            del module.forward
        return fn(*a, **k)

    module.forward = redirected
    try:
        return ddp(*args, **kwargs)
    finally:
        if module.__dict__.get("forward") is redirected:  # ddp raised before calling the forward
            if had_own:
                module.forward = saved
            else:
                del module.forward


def average_gradients(params: Sequence[nn.Parameter], world_size: int) -> None:
    """The explicit path: average ``params``' gradients over the processes, one all-reduce per dtype (a
    missing gradient counts as zeros, so every process reduces the same tensors)."""
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
        flat /= world_size
        for g, synced in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
            g.copy_(synced)


def mean_across_processes(
    tensors: Sequence[torch.Tensor], differentiable: bool = False
) -> list[torch.Tensor]:
    """The mean of each tensor over the processes (the tensors themselves under one process).

    Explicit-path methods use it where a step needs a quantity of the *global* batch before its backward,
    e.g. LTW's virtual step θ' = θ − α∇θT over the whole batch. ``differentiable=True`` keeps the autograd
    graph (``torch.distributed.nn.functional.all_reduce``: its backward sums the incoming gradients of
    every process), as a second-order update through the mean needs."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(tensors)
    world = dist.get_world_size()
    if differentiable:
        return [_differentiable_sum(t) / world for t in tensors]
    out = []
    for t in tensors:
        t = t.detach().clone()
        dist.all_reduce(t)
        out.append(t / world)
    return out


def _differentiable_sum(tensor: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) with autograd: PyTorch's functional collective where it has a backward (an
    all-reduce of the incoming gradients), else the older ``torch.distributed.nn`` one (same backward)."""
    from torch.distributed import _functional_collectives as funcol

    if hasattr(funcol, "all_reduce_backward"):
        return funcol.all_reduce(tensor, "sum", dist.group.WORLD)  # waits when first used
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


# -- one run directory for every process ---------------------------------------------------------------
def rank_overrides(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Command-line overrides ``train.py`` adds under several processes so that rank 0 alone writes into
    the run directory: on ranks other than 0, no ``.hydra/`` copy of the config and a log to the console
    only. Every rank resolves the same directory by itself: the default ``run_name`` is one per job
    (``detect/utils/run_names.py``: the torchrun rendezvous or the Slurm job). Everything else a run writes
    (checkpoints, results, predictions, figures, the logger) is written by rank 0 alone
    (``Runtime.is_main``)."""
    if int(env.get("WORLD_SIZE", "1")) <= 1 or any(a in ("-m", "--multirun") for a in argv):
        return []
    out = []
    if int(env.get("RANK", "0")) != 0:
        out += ["hydra.output_subdir=null", "hydra.job_logging.root.handlers=[console]"]
    return out


def check_shared_run_dir(run_dir: Path, runtime: Runtime) -> None:
    """Stop when the processes resolved different run directories (a launcher that starts them at
    different default names): name them and the fix."""
    if not runtime.distributed:
        return
    dirs: list = [None] * runtime.world_size
    dist.all_gather_object(dirs, str(run_dir))
    if len(set(dirs)) > 1:
        raise RuntimeError(
            f"the {runtime.world_size} processes resolved different run directories {dirs}: pass one "
            "run_name=<name> to every process"
        )
