"""The method contract: a method owns its detector, losses and optimisation step; the engine owns
everything around it (devices, data loading, epochs, validation-based selection, checkpoints, logging).

Hooks, in the order the engine calls them:

1. ``__init__(backbone, **hyper)`` from ``cfg.method`` (Hydra ``_target_``), then ``.to(device)``;
2. ``configure_optimizers(epochs, steps_per_epoch) -> list[OptimizerSpec]`` (LTW: θ and w; DPL: a
   Stage-II policy optimiser); the engine checkpoints and schedules them;
3. ``build_train_dataset(table, pipeline) -> Dataset`` (frames, aligned tuples, meta pairs, multi-quality);
4. per epoch: ``on_epoch_start(epoch, dataset, ctx)`` (meta-split, stage switch, warm-up, DFFC's pacing),
   then ``train_indices(epoch)`` (None: the whole dataset; DFFC returns its pool);
5. per batch: ``fit_step(batch, ctx) -> StepOutput`` runs one full update through ``ctx`` (autocast,
   backward, ``ctx.step(optimizer)``), so second-order and multi-stage updates need no engine change;
6. ``on_epoch_end(epoch, ctx)``; evaluation calls ``predict(images) -> P(fake)`` in eval mode; after
   training, ``report_images(train_dataset)`` may return figures the engine saves as PNGs;
7. ``extra_state()`` / ``load_extra_state(state)``: non-parameter state for checkpoints (tensors,
   numbers, lists, dicts only: checkpoints load with ``weights_only=True``).

Declarations the engine reads before and around training (class attributes):

- ``gradient_sync``: ``"ddp"`` for an update that is one backward of a loss computed by one forward, run
  through ``ctx.forward`` (the engine wraps the method in DistributedDataParallel under several processes);
  ``"explicit"`` (default, correct for any step) for second-order or multi-optimiser updates: ``ctx.step``
  all-reduces the gradients (``detect/engine/distributed.py``). ``find_unused_parameters``: some trainable
  parameters get no gradient in some steps (a warm-up head), passed on to DDP.
- ``data_needs``: what training needs from the sample table beyond frames and binary labels
  (``detect/engine/data_needs.py`` names them); ``needs_for(hyper)`` narrows it by the method's config.
  Training checks them before building the method; evaluation needs none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from detect.data.datasets import FrameDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler


@dataclass
class StepOutput:
    """What one ``fit_step`` reports: the (detached) loss, scalars to log (numbers or detached 0-d tensors:
    the engine reads them only at logging steps, so a step need not wait for the GPU), per-sample losses."""

    loss: torch.Tensor
    logs: dict[str, float | torch.Tensor] = field(default_factory=dict)
    sample_losses: torch.Tensor | None = None
    indices: torch.Tensor | None = None


class Method(nn.Module):
    """Base class; subclasses implement ``fit_step`` and ``predict`` and may override the hooks."""

    name = "method"
    gradient_sync: str = "explicit"
    find_unused_parameters: bool = False
    data_needs: frozenset[str] = frozenset()

    @classmethod
    def needs_for(cls, hyper: Mapping) -> frozenset[str]:
        """The data needs of this method built with ``hyper`` (its ``cfg.method``); by default
        ``data_needs`` whatever the configuration."""
        return cls.data_needs

    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        raise NotImplementedError

    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> Dataset:
        """Single frames with training augmentation by default."""
        return FrameDataset(table, pipeline, train=True)

    def on_epoch_start(self, epoch: int, dataset: Dataset, ctx: StepContext) -> None:
        """Called before each training epoch (epochs count from 0)."""

    def train_indices(self, epoch: int) -> Sequence[int] | None:
        """The dataset indices to train on this epoch (None: all)."""
        return None

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    # -- helpers for single-optimiser detectors (baseline, SRM, SPSL, MAT) ---------------------------------
    def one_optimizer(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        """``self.optimizer`` over every parameter from ``self.optim_cfg``, scheduled by
        ``self.scheduler_cfg`` (both replaceable, e.g. by DFFC's SGD recipe)."""
        self.optimizer = build_optimizer(self.optim_cfg, self.parameters())
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def update_on(
        self,
        per_sample: torch.Tensor,
        batch: Mapping,
        ctx: StepContext,
        logs: Mapping | None = None,
        indices: torch.Tensor | None = None,
    ) -> StepOutput:
        """One update of ``self.optimizer`` on the mean of ``per_sample`` losses; the step's output carries
        them with their sample indices (``batch["index"]`` unless given: what a curriculum records) and
        ``logs`` (each loss term, as the method computed it)."""
        loss = per_sample.mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        where = batch["index"] if indices is None else indices
        return StepOutput(loss.detach(), dict(logs or {}), per_sample.detach(), where)

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> None:
        """Called after each training epoch, before validation."""

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """P(fake) per image, shape [B]."""
        raise NotImplementedError

    def report_images(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Images the method reports at the end of training (HxWx3 uint8 RGB by name; LTW's weight grid).
        The engine writes them to ``<run dir>/figures/<name>.png``; no I/O here."""
        return {}

    def analysis_metrics(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Metrics about the training set the method computes after training, added to results.json's
        ``metrics`` under their own set names (DFFC's Table 4: ``hardness-<manipulation>``)."""
        return {}

    def run_info(self) -> dict:
        """What results.json records about the method beyond its config (``method_info``: e.g. DPL's
        indicator models, whether their weights were random, the fitted bins and the scoring speed)."""
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: Mapping) -> None:
        if state:
            raise ValueError(
                f"{type(self).__name__} has no extra state but the checkpoint holds {list(state)}"
            )
