"""Run a method over a set's frames: per-frame predictions, then metrics (frame and video level)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from detect.data.transforms import Pipeline
from detect.data.views import FrameDataset
from detect.engine.runtime import Runtime
from detect.evaluation.perturbations import build_perturbation

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["path", "video", "label", "dataset", "domain", "compression", "frame"]


def to_device(batch: Mapping, runtime: Runtime) -> dict:
    """Move a collated batch's tensors to the device (images channels-last when configured)."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(runtime.device, non_blocking=True)
            if runtime.channels_last and v.dim() == 4 and v.is_floating_point():
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


@torch.no_grad()
def predict_table(
    method,
    table: pd.DataFrame,
    pipeline: Pipeline,
    runtime: Runtime,
    batch_size: int,
    num_workers: int,
    perturbation: Mapping | None = None,
    limit_batches: int | None = None,
    desc: str = "eval",
    progress: bool = True,
) -> pd.DataFrame:
    """Per-frame P(fake) for every row of ``table`` (sharded over processes, gathered on all)."""
    dataset = FrameDataset(table, pipeline, train=False, perturbation=build_perturbation(perturbation))
    rows = np.arange(len(dataset))[runtime.rank :: runtime.world_size]
    loader = DataLoader(
        Subset(dataset, rows.tolist()),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=runtime.device.type == "cuda",
    )
    was_training = method.training
    method.eval()
    indices, probs = [], []
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and runtime.is_main))
    for b, batch in enumerate(bar):
        if limit_batches is not None and b >= limit_batches:
            break
        batch = to_device(batch, runtime)
        with runtime.autocast():
            p = method.predict(batch["image"])
        indices.append(batch["index"].cpu().numpy())
        probs.append(p.float().cpu().numpy())
    method.train(was_training)
    idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    prob = np.concatenate(probs) if probs else np.zeros(0, np.float32)
    if runtime.distributed:
        gathered: list = [None] * runtime.world_size
        dist.all_gather_object(gathered, (idx, prob))
        idx = np.concatenate([g[0] for g in gathered])
        prob = np.concatenate([g[1] for g in gathered])
    order = np.argsort(idx, kind="stable")
    idx, prob = idx[order], prob[order]
    out = table.iloc[idx][PREDICTION_COLUMNS].reset_index(drop=True)
    out.insert(0, "index", idx)
    out["prob"] = prob
    if not np.all(np.isfinite(prob)):
        bad = out.loc[~np.isfinite(prob), "path"].head(5).tolist()
        raise FloatingPointError(f"{desc}: non-finite predictions, e.g. for {bad}")
    return out
