"""What the detectors' tests share: one ``fit_step`` with every trainable parameter's gradient recorded (a
hook on each parameter keeps the gradient's absolute sum as backward produces it, before the step's
optimiser zeroes it; or a spy on the step context's optimiser step), the check that every trainable
parameter got one, fixed seeded batches, and the smoke-scale build and run of a preset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from helpers import compose, cpu_step_context, train_in_process

from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput

#: A smoke run's frames per video (the recipes evaluate 32; a smoke run needs few).
FEW_FRAMES = ["protocol.frames.train=2", "protocol.frames.val=2", "protocol.frames.test=2"]


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


def hook_last_gradients(method: Method) -> dict[str, float]:
    """Hook every trainable parameter of ``method``: the returned dict keeps, per name, the absolute sum of
    the last gradient backward gave it. The hooks stay registered."""
    grads: dict[str, float] = {}
    for name, p in method.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, name=name: grads.__setitem__(name, float(g.abs().sum())))
    return grads


def spy_step_gradients(method: Method, ctx: StepContext) -> dict[str, float]:
    """Wrap ``ctx.step``: at each optimiser step, before it runs, the returned dict records the absolute
    gradient sum of every parameter of ``method`` that holds a gradient (a later step overwrites)."""
    seen: dict[str, float] = {}
    step = ctx.step

    def spy(opt, clip=True):
        seen.update(
            {n: float(p.grad.abs().sum()) for n, p in method.named_parameters() if p.grad is not None}
        )
        return step(opt, clip)

    ctx.step = spy
    return seen


def without_gradient(method: Method, grads: Mapping[str, float]) -> list[str]:
    """The trainable parameters of ``method`` that ``grads`` records no gradient (or a zero one) for."""
    return [n for n, p in method.named_parameters() if p.requires_grad and grads.get(n, 0.0) == 0.0]


def graded_exactly_the_trainable(method: Method, grads: Mapping[str, float]) -> bool:
    """Whether ``grads`` names exactly the trainable parameters of ``method``, each with a non-zero sum."""
    trainable = [n for n, p in method.named_parameters() if p.requires_grad]
    return sorted(grads) == sorted(trainable) and all(grads[n] > 0 for n in trainable)


def masked_batch(b: int = 4, size: int = 64, seed: int = 2) -> dict:
    """:func:`fixed_batch` plus a ``mask`` (b, 1, size, size): zero for the reals (even rows), one over the
    box rows size/4 to 3·size/4, columns size/8 to 5·size/8 for the fakes."""
    mask = torch.zeros(b, 1, size, size)
    mask[1::2, :, size // 4 : 3 * size // 4, size // 8 : 5 * size // 8] = 1.0
    batch = fixed_batch(b, size, seed)
    return {"image": batch["image"], "mask": mask, "label": batch["label"], "index": batch["index"]}


def signed_uniform_batch(seed: int, b: int = 4, size: int = 64) -> dict:
    """``b`` images uniform in [-1, 1) of ``size`` px (half real, half fake), indices 0..b-1."""
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(b, 3, size, size, generator=g) * 2 - 1,
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
        "index": torch.arange(b),
    }


def smoke_method(preset: str) -> tuple[object, Method]:
    """The ``method=<preset> +scale=smoke`` config and the method built from it."""
    from detect.engine.method_builder import build_method

    cfg = compose([f"method={preset}", "+scale=smoke"])
    return cfg, build_method(cfg.method, cfg.backbone)


def predicts_probabilities(method: Method, n: int = 3, size: int = 64) -> bool:
    """Whether ``method`` in eval mode maps ``n`` random images (nothing else) to ``n`` values in [0, 1]."""
    p = method.eval().predict(torch.randn(n, 3, size, size))
    return p.shape == (n,) and bool(((p >= 0) & (p <= 1)).all())


def short_smoke_metrics(cache: Path, out: Path, preset: str) -> dict:
    """Train ``method=<preset>`` at smoke scale for one epoch of 3 batches on :data:`FEW_FRAMES` of the
    synthetic benchmark in ``cache``, in process, writing under ``out``; returns the run's metrics."""
    smoke = ["+scale=smoke", "trainer.epochs=1", "trainer.limit_train_batches=3", *FEW_FRAMES]
    return train_in_process(cache, out, [f"method={preset}", *smoke]).results["metrics"]


def fit_once_with_last_gradients(method: Method, batch: Mapping) -> tuple[StepOutput, dict[str, float]]:
    """Configure ``method``'s optimisers for one epoch of one step, switch it to training mode, hook its
    trainable parameters (:func:`hook_last_gradients`) and run one ``fit_step`` on ``batch`` on the CPU;
    returns the step's output and the recorded gradient sums."""
    method.configure_optimizers(1, 1)
    method.train()
    grads = hook_last_gradients(method)
    return method.fit_step(batch, cpu_step_context()), grads
