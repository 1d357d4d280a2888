"""Batched scoring of face crops (or clips of crops, for clip methods): crops from many inputs are gathered
into batches of ``batch_size``, pushed through the checkpoint's pipeline (resize, normalise) and
``method.predict`` (P(fake)), on the runtime's device under its autocast (bf16 optional)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from detect.data.transforms import Pipeline
from detect.engine.method_contract import Method
from detect.engine.runtime import Runtime


class BatchScorer:
    """Queue crops with a callback; every full batch (and :meth:`flush`) scores them and calls back."""

    def __init__(self, method: Method, pipeline: Pipeline, runtime: Runtime, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; use a positive number")
        self.method, self.pipeline, self.runtime = method, pipeline, runtime
        self.batch_size = int(batch_size)
        self.pending: list[tuple[torch.Tensor, Callable[[float], None]]] = []
        self.n_scored = 0

    def add(self, crop: np.ndarray, done: Callable[[float], None]) -> None:
        self.pending.append((self.pipeline(crop, augment=False), done))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def add_clip(self, crops: list[np.ndarray], done: Callable[[float], None]) -> None:
        """Queue one clip (its frames' crops, in order) as a ``(T, C, H, W)`` tensor, for a clip method."""
        frames, _ = self.pipeline.apply_shared(crops, augment=False)
        self.pending.append((torch.stack(frames), done))
        if len(self.pending) >= self.batch_size:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        if not self.pending:
            return
        batch = torch.stack([t for t, _ in self.pending]).to(self.runtime.device)
        if self.runtime.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self.runtime.autocast():
            probs = self.method.predict(batch)
        probs = probs.float().cpu().numpy().reshape(-1)
        if not np.all(np.isfinite(probs)):
            raise FloatingPointError("non-finite fake probabilities from the model")
        for (_, done), p in zip(self.pending, probs, strict=True):
            done(float(p))
        self.n_scored += len(self.pending)
        self.pending = []
