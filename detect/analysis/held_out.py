"""Held-out aligned anchor tuples (real, SBI, CBI, deepfake) of a run's validation or test split, and the
pooled features a model gives them (ProDet's ``features``: GAP(F ⊙ M))."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from detect.analysis.runs import Run
from detect.data.anchor_tuples import TUPLE_ANCHORS, AnchorTupleDataset
from detect.data.transforms import Pipeline
from detect.engine.method_contract import Method

log = logging.getLogger(__name__)


# -- held-out anchor tuples -------------------------------------------------------------------------
@dataclass
class AnchorTuples:
    """Held-out aligned tuples, flattened tuple-major: ``raw[j]`` is an HWC uint8 image (before resizing),
    ``anchors[j]`` its anchor (index into ``TUPLE_ANCHORS``), ``tuples[j]`` its tuple's dataset index."""

    raw: list[np.ndarray]
    anchors: np.ndarray
    tuples: np.ndarray

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def n_tuples(self) -> int:
        return len(np.unique(self.tuples))

    def inputs(self, pipeline: Pipeline, rows: Sequence[int] | None = None) -> torch.Tensor:
        """The network inputs [n, 3, H, W] of ``rows`` (all by default), no augmentation."""
        rows = range(len(self.raw)) if rows is None else rows
        return torch.stack([pipeline(self.raw[j], augment=False) for j in rows])


def held_out_tuples(run: Run, n_tuples: int, split: str = "test", seed: int = 0) -> AnchorTuples:
    """``n_tuples`` real/SBI/CBI/deepfake tuples of the run's validation (``split="val"``) or in-domain test
    split (``"test"``), chosen at random with ``seed``; blends are seeded by ``(seed, tuple)``."""
    if n_tuples < 1:
        raise ValueError(f"n_tuples must be >= 1, got {n_tuples}")
    if split not in ("val", "test"):
        raise ValueError(f"held-out tuples come from the 'val' or 'test' split, got {split!r}")
    key = "val" if split == "val" else f"test/{run.in_domain}"
    tables = run.tables(("val",) if split == "val" else ("test",))
    if key not in tables:
        raise KeyError(f"{run.run_dir}: its protocol has no {key} set (has {sorted(tables)})")
    method = run.method
    dataset = AnchorTupleDataset(
        tables[key],
        run.pipeline,
        anchors=TUPLE_ANCHORS,
        blend=getattr(method, "blend_cfg", None),
        cache_dir=run.config.paths.cache_dir,
        train=False,
        seed=seed,
        landmark_points=int(getattr(method, "landmark_points", 68)),
    )
    n = min(int(n_tuples), len(dataset))
    if n < n_tuples:
        log.warning("%s has %d tuples, fewer than the %d asked", key, len(dataset), n_tuples)
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    raw, anchors, tuples = [], [], []
    for i in chosen:
        images, _ = dataset.raw_tuple(int(i))
        raw += images
        anchors += dataset.anchor_ids.tolist()
        tuples += [int(i)] * len(images)
    return AnchorTuples(raw, np.asarray(anchors, np.int64), np.asarray(tuples, np.int64))


# -- features and perturbed distance ----------------------------------------------------------------
@torch.no_grad()
def map_images(
    run: Run,
    fn: Callable[[Method, torch.Tensor], torch.Tensor],
    make: Callable[[int], torch.Tensor],
    n: int,
    batch_size: int,
) -> np.ndarray:
    """``fn(method, images)`` over ``n`` images made by ``make(j)``, in batches, as float32 numpy."""
    out = []
    for start in range(0, n, batch_size):
        x = torch.stack([make(j) for j in range(start, min(n, start + batch_size))]).to(run.runtime.device)
        with run.runtime.autocast():
            out.append(fn(run.method, x).float().cpu().numpy())
    return np.concatenate(out)


def pooled(method: Method, images: torch.Tensor) -> torch.Tensor:
    if not callable(getattr(method, "features", None)):
        raise TypeError(f"{type(method).__name__} has no features(): these figures need a ProDet run")
    return method.features(images)


def pooled_features(run: Run, tuples: AnchorTuples, batch_size: int = 64) -> np.ndarray:
    """The pooled final feature GAP(F ⊙ M) of every tuple image [M, C] (``ProDet.features``)."""
    return map_images(
        run, pooled, lambda j: run.pipeline(tuples.raw[j], augment=False), len(tuples), batch_size
    )


def require_2d(run: Run, features: np.ndarray) -> None:
    """Figs. 4a/4b plot the actual features: they must be 2-d (a toy model)."""
    if features.ndim != 2 or features.shape[1] != 2:
        raise ValueError(
            f"{run.label}: the pooled features are {features.shape[-1]}-d, but Figs. 4a/4b plot the actual "
            "2-d features of a toy model; train one with method.feature_dim=2 (e.g. `python train.py "
            "method=prodet method.feature_dim=2 run_name=prodet_toy`) or draw this run with the tsne figure"
        )
