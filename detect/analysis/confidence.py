"""Predicted confidence and logits per test set (ProDet Fig. 10) from a run's saved per-frame predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from detect.analysis.runs import Run
from detect.engine.method_contract import Method
from detect.engine.predict_loop import map_table
from detect.evaluation.predictions import read_predictions

log = logging.getLogger(__name__)


def logit_from_prob(prob: np.ndarray) -> np.ndarray:
    """l_fake - l_real of a 2-way softmax from its P(fake): ``log p - log(1 - p)`` in float64, with p
    clipped to float32's open unit interval (±16.6 and ±87 where the saved p saturated)."""
    eps = float(np.finfo(np.float32).eps) / 2
    p = np.clip(np.asarray(prob, np.float64), float(np.finfo(np.float32).tiny), 1 - eps)
    return np.log(p) - np.log1p(-p)


def saturated(prob: np.ndarray) -> np.ndarray:
    return (prob >= 1.0) | (prob <= 0.0)


def confidence_scores(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Per test set of a run, its saved per-frame predictions (``predictions/<set>.csv``, in the order
    of ``results.json``) with a ``logit`` column (:func:`logit_from_prob`) and ``saturated`` flags."""
    run_dir = Path(run_dir)
    files = {p.stem: p for p in sorted((run_dir / "predictions").glob("*.csv"))}
    if not files:
        raise FileNotFoundError(
            f"{run_dir}/predictions/ holds no per-frame predictions: finish the run (train.py tests it) "
            f"or score it with `python eval.py ckpt={run_dir}/checkpoints/best.pt`"
        )
    order = list(files)
    results = run_dir / "results.json"
    if results.is_file():
        named = [n for n in json.loads(results.read_text()).get("metrics", {}) if n in files]
        order = named + [n for n in order if n not in named]
    out = {}
    for name in order:
        df = read_predictions(files[name])
        df["logit"] = logit_from_prob(df["prob"].to_numpy())
        df["saturated"] = saturated(df["prob"].to_numpy())
        out[name] = df
    return out


def logit_difference(method: Method, images: torch.Tensor) -> torch.Tensor:
    logits = method.logits(images)
    return logits[:, 1] - logits[:, 0]


def recompute_logits(
    run: Run, scores: dict[str, pd.DataFrame], batch_size: int = 64, num_workers: int = 0
) -> dict[str, pd.DataFrame]:
    """``scores`` with ``logit`` replaced by the model's l_fake - l_real where the saved P(fake) saturated
    (the test sets re-read from the run's protocol; ``index`` is the row in its table)."""
    if not callable(getattr(run.method, "logits", None)):
        raise TypeError(f"{type(run.method).__name__} has no logits(): cannot recompute them")
    tables = run.tables(("test",))
    out = {}
    for name, df in scores.items():
        df = df.copy()
        if df["saturated"].any() and f"test/{name}" in tables:
            pos = np.unique(df.loc[df["saturated"], "index"].to_numpy())
            table = tables[f"test/{name}"].iloc[pos].reset_index(drop=True)
            idx, diff = map_table(
                logit_difference,
                run.method,
                table,
                run.pipeline,
                run.runtime,
                batch_size,
                num_workers,
                desc=f"logits {name}",
                progress=False,
            )
            fix = dict(zip(pos[idx].tolist(), diff.astype(np.float64).tolist(), strict=True))
            sel = df["saturated"].to_numpy()
            df.loc[sel, "logit"] = [fix[int(i)] for i in df.loc[sel, "index"]]
            df["saturated"] = False
        out[name] = df
    return out
