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

from detect.data.datasets import FrameDataset
from detect.data.transforms import Pipeline
from detect.engine.runtime import Runtime
from detect.evaluation.perturbations import build_perturbation, draw_keys
from detect.evaluation.regularity import mean_perturbed_distance

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
def map_dataset(
    fn,
    method,
    dataset,
    runtime: Runtime,
    batch_size: int,
    num_workers: int,
    input_key: str = "image",
    index_key: str = "index",
    limit_batches: int | None = None,
    desc: str = "eval",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``fn(method, batch[input_key]) -> [B, ...]`` over an evaluation ``dataset`` in eval mode (sharded over
    processes, gathered on all): returns (the items' ``index_key``, outputs) sorted by that index."""
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
    indices, outputs = [], []
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and runtime.is_main))
    for b, batch in enumerate(bar):
        if limit_batches is not None and b >= limit_batches:
            break
        batch = to_device(batch, runtime)
        with runtime.autocast():
            out = fn(method, batch[input_key])
        indices.append(batch[index_key].cpu().numpy())
        outputs.append(out.float().cpu().numpy())
    method.train(was_training)
    idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    res = np.concatenate(outputs) if outputs else np.zeros(0, np.float32)
    if runtime.distributed:
        gathered: list = [None] * runtime.world_size
        dist.all_gather_object(gathered, (idx, res))
        idx = np.concatenate([g[0] for g in gathered])
        res = np.concatenate([g[1] for g in gathered])
    order = np.argsort(idx, kind="stable")
    return idx[order], res[order]


def map_table(
    fn,
    method,
    table: pd.DataFrame,
    pipeline: Pipeline,
    runtime: Runtime,
    batch_size: int,
    num_workers: int,
    perturbation=None,
    limit_batches: int | None = None,
    desc: str = "eval",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``fn(method, images) -> [B, ...]`` over ``table``'s frames in eval mode (sharded over processes,
    gathered on all): returns (table rows, outputs) sorted by row. ``perturbation``: a config mapping
    or a ready ``fn(image, sample_key)``."""
    if perturbation is not None and not callable(perturbation):
        perturbation = build_perturbation(perturbation)
    dataset = FrameDataset(table, pipeline, train=False, perturbation=perturbation)
    return map_dataset(
        fn, method, dataset, runtime, batch_size, num_workers,
        limit_batches=limit_batches, desc=desc, progress=progress,
    )  # fmt: skip


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
    idx, prob = map_table(
        lambda m, x: m.predict(x),
        method,
        table,
        pipeline,
        runtime,
        batch_size,
        num_workers,
        perturbation,
        limit_batches,
        desc,
        progress,
    )
    out = table.iloc[idx][PREDICTION_COLUMNS].reset_index(drop=True)
    out.insert(0, "index", idx)
    out["prob"] = prob
    if not np.all(np.isfinite(prob)):
        bad = out.loc[~np.isfinite(prob), "path"].head(5).tolist()
        raise FloatingPointError(f"{desc}: non-finite predictions, e.g. for {bad}")
    return out


def table_mpd(
    method,
    table: pd.DataFrame,
    pipeline: Pipeline,
    runtime: Runtime,
    batch_size: int,
    num_workers: int,
    perturbation: Mapping,
    draws: int,
    limit_batches: int | None = None,
    progress: bool = True,
) -> float:
    """ProDet's mPD (appendix 7.4) of a set: ``method.features`` of every frame, clean and ``draws`` times
    perturbed (the i-th draw of a frame uses key ``draw_keys(sample_key, draws)[i]``), F_std from the
    clean features of the set."""
    if not callable(getattr(method, "features", None)):
        raise TypeError(f"mPD needs the method's pooled features; {type(method).__name__} has no features()")
    pert = build_perturbation(perturbation)
    if pert is None:
        raise ValueError("mPD needs a perturbation (protocol.test.<set>.perturbation)")

    def features(m, x):
        return m.features(x)

    args = (method, table, pipeline, runtime, batch_size, num_workers)
    _, clean = map_table(features, *args, None, limit_batches, "mpd clean", progress)
    perturbed = []
    for i in range(draws):

        def nth(img, key, i=i):
            return pert(img, draw_keys(key, draws)[i])

        perturbed.append(map_table(features, *args, nth, limit_batches, f"mpd {i + 1}", progress)[1])
    return mean_perturbed_distance(torch.from_numpy(clean), torch.from_numpy(np.stack(perturbed, 1)))
