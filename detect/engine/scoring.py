"""Scoring a method on a protocol's test sets, the one evaluation ``train.py`` (``Trainer.test``) and
``eval.py`` (:func:`evaluate_checkpoint`: rebuild a trained method from its checkpoint) share."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from detect.data.class_checks import limited_table
from detect.data.datasets import sample_key
from detect.data.protocol import load_sets, prepare_data, protocol_sets
from detect.data.transforms import build_pipeline
from detect.engine.checkpoint import (
    describe,
    load_checkpoint,
    load_method_state,
    require_run_checkpoint,
)
from detect.engine.clip_scoring import metrics_for, predict_for_method
from detect.engine.loggers import build_logger
from detect.engine.method_builder import build_method
from detect.engine.predict_loop import table_mpd
from detect.engine.report import format_metrics_table, git_commit, save_predictions, write_results
from detect.engine.run_config import absolute_paths
from detect.engine.runtime import Runtime, cleanup, seed_everything, setup_runtime
from detect.engine.trust import checkpoint_build_config
from detect.evaluation.perturbations import build_perturbation


def evaluate_sets(
    method,
    test_sets: Mapping,
    tables: Mapping,
    pipeline,
    runtime: Runtime,
    cfg: DictConfig,
    run_dir: Path,
    logger=None,
) -> dict:
    """Predict and score every test set; predictions are saved per set."""
    metrics = {}
    tr = cfg.trainer
    for name, spec in test_sets.items():
        table = limited_table(tables[f"test/{name}"], tr.limit_eval_batches, int(tr.eval_batch_size))
        preds = predict_for_method(
            method,
            table,
            pipeline,
            runtime,
            int(tr.eval_batch_size),
            int(cfg.runtime.num_workers),
            spec.perturbation,
            None,
            desc=f"test {name}",
            progress=tr.progress,
        )
        metrics[name] = metrics_for(preds)
        metrics[name].update(perturbation_record(spec.perturbation, table["path"]))
        if spec.mpd_draws:
            metrics[name]["mpd"] = table_mpd(
                method,
                table,
                pipeline,
                runtime,
                int(tr.eval_batch_size),
                int(cfg.runtime.num_workers),
                spec.perturbation,
                spec.mpd_draws,
                None,
                progress=tr.progress,
            )
        if runtime.is_main:
            save_predictions(run_dir, name, preds)
            if logger is not None:
                logger.log_roc(name, preds["label"].to_numpy(), preds["prob"].to_numpy())
    return {**metrics, **variant_means(test_sets, metrics)}


def perturbation_record(perturbation: Mapping | None, paths) -> dict:
    """What a test set's results record of its perturbation's random draws (e.g. the JPEG qualities a
    ``random_jpeg`` drew for its frames); empty for fixed perturbations."""
    pert = build_perturbation(perturbation) if perturbation is not None else None
    record = getattr(pert, "record", None)
    return record([sample_key(p) for p in paths]) if callable(record) else {}


def variant_means(test_sets: Mapping, metrics: Mapping[str, Mapping]) -> dict[str, dict]:
    """Per set with test variants (``protocol.test_variants``), the mean of each numeric metric over its
    variants, plus ``n_variants``."""
    groups: dict[str, list[str]] = {}
    for name, spec in test_sets.items():
        if getattr(spec, "group", None):
            groups.setdefault(spec.group, []).append(name)
    out = {}
    for group, names in groups.items():
        keys = [k for k, v in metrics[names[0]].items() if isinstance(v, int | float)]
        out[group] = {
            k: float(np.mean([metrics[n][k] for n in names if metrics[n].get(k) is not None])) for k in keys
        }
        out[group]["n_variants"] = len(names)
    return out


def synthetic_clips_from_training(cfg: DictConfig, trained: DictConfig) -> None:
    """Evaluate a clip detector trained on the synthetic benchmark's consecutive clips on those clips too.

    ``conf/data/synthetic.yaml`` reads ``data.generator.clips``/``clip_len`` from the method's recipe, and an
    evaluation composes no method, so they read 0 there (8 evenly spaced frames, which hold no clip). When
    they do and the checkpoint's training data stored clips, the training's values are taken (and recorded
    in the evaluation's config); values given on the command line are kept."""
    if cfg.data.get("kind") != "synthetic":
        return
    ours, theirs = cfg.data.get("generator") or {}, (trained.get("data") or {}).get("generator") or {}
    if int(ours.get("clips") or 0) == 0 and int(theirs.get("clips") or 0) > 0:
        cfg.data.generator.clips = int(theirs["clips"])
        cfg.data.generator.clip_len = int(theirs["clip_len"])


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """Load ``cfg.ckpt`` (weights_only), evaluate ``cfg.protocol``'s test sets, write results.json."""
    t0 = time.perf_counter()
    absolute_paths(cfg)
    runtime = setup_runtime(cfg.runtime)
    try:
        state = require_run_checkpoint(load_checkpoint(cfg.ckpt, "cpu"), cfg.ckpt)
        build = checkpoint_build_config(
            state["config"], OmegaConf.to_container(cfg, resolve=True), cfg.get("trusted_targets") or ()
        )
        trained = OmegaConf.create(state["config"])
        method = build_method(build["method"], build["backbone"], build.get("curriculum"))
        load_method_state(method, state, cfg.ckpt, describe(state))
        method.to(runtime.device).eval()
        seed_everything(cfg.seed)
        synthetic_clips_from_training(cfg, trained)
        prepare_data(cfg)
        sets = protocol_sets(cfg, roles=("test",))
        tables = load_sets(sets, str(cfg.data.kind))
        pipeline = build_pipeline(OmegaConf.create(build["input"]), None)
        logger = build_logger(
            cfg.logger, OmegaConf.to_container(cfg, resolve=True), str(run_dir), run_dir.name, runtime.is_main
        )
        metrics = evaluate_sets(method, sets["test"], tables, pipeline, runtime, cfg, run_dir, logger)
        results = {
            "task": "eval",
            "status": "complete",
            "run_dir": str(run_dir),
            "checkpoint": str(cfg.ckpt),
            "checkpoint_epoch": state.get("epoch"),
            "git_commit": git_commit(),
            "seed": int(trained.seed),
            "eval_seed": int(cfg.seed),
            "data": str(cfg.data.kind),
            "method": str(trained.method.get("name", "?")),
            "backbone": str(trained.backbone.get("name", "?")),
            "metrics": metrics,
            "timings": {"eval_s": time.perf_counter() - t0},
            "config": OmegaConf.to_container(cfg, resolve=True),
            "trained_config": state["config"],
        }
        if runtime.is_main:
            write_results(run_dir, results)
            print(
                format_metrics_table(
                    metrics, f"checkpoint {cfg.ckpt} (epoch {state.get('epoch')}), data={results['data']}"
                ),
                flush=True,
            )
        logger.finish()
        return results
    finally:
        cleanup()
