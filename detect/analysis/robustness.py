"""Robustness curves (ProDet Fig. 5): frame AUC on a test set against the intensity of each perturbation."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from detect.analysis.runs import Run
from detect.engine.predict_loop import predict_table
from detect.evaluation.metrics import frame_metrics

log = logging.getLogger(__name__)


# Fig. 5's intensity levels per perturbation (0: clean).
FIG5_LEVELS: dict[str, tuple[float, ...]] = {
    "blockwise": (0.0, 0.1, 0.2, 0.3),
    "noise": (0, 10, 20, 30, 40, 50),
    "shift": (0, 10, 20, 30, 40, 50),
}
FIG5_TITLES = {
    "blockwise": "Block-wise (masked ratio)",
    "noise": "Noise (variance)",
    "shift": "Shift (pixels)",
}


def level_perturbation(kind: str, level: float, seed: int = 0) -> dict | None:
    """The perturbation config of Fig. 5's ``kind`` at ``level`` (None at level 0: the clean set)."""
    if kind not in FIG5_LEVELS:
        raise ValueError(f"unknown Fig. 5 perturbation {kind!r}; choose from {sorted(FIG5_LEVELS)}")
    if level == 0:
        return None
    if kind == "blockwise":
        return {"name": "prodet_blockwise", "ratio": float(level), "grid": 4, "seed": seed}
    if kind == "noise":
        return {"name": "prodet_noise", "variance": float(level), "seed": seed}
    return {"name": "prodet_shift", "shift": [int(level), int(level)], "seed": seed}


def robustness_curves(
    run: Run,
    levels: Mapping[str, Sequence[float]] = FIG5_LEVELS,
    test_set: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Frame AUC of ``test_set`` (the in-domain test set by default) per kind and level: ``{kind: [AUC per
    level]}``. Level 0 is the clean set, predicted once, so it equals the run's own test AUC."""
    name = test_set or run.in_domain
    tables = run.tables(("test",))
    if f"test/{name}" not in tables:
        raise KeyError(f"{run.run_dir}: no test set {name!r} (has {[k[5:] for k in tables]})")
    table = tables[f"test/{name}"]
    cache: dict = {}

    def auc(perturbation: dict | None) -> float:
        key = json.dumps(perturbation, sort_keys=True)
        if key not in cache:
            desc = "clean" if perturbation is None else perturbation["name"]
            preds = predict_table(
                run.method,
                table,
                run.pipeline,
                run.runtime,
                batch_size,
                num_workers,
                perturbation,
                desc=desc,
                progress=False,
            )
            cache[key] = frame_metrics(preds["label"].to_numpy(), preds["prob"].to_numpy())["auc"]
        return cache[key]

    return {
        kind: np.array([auc(level_perturbation(kind, lv, seed)) for lv in lvls])
        for kind, lvls in levels.items()
    }
