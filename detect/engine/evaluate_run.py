"""``eval.py``: rebuild a trained method from its checkpoint and score it on any protocol's test sets."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from detect.data.protocol import load_sets, prepare_data, protocol_sets
from detect.data.transforms import build_pipeline
from detect.engine.checkpoint import (
    describe,
    load_checkpoint,
    load_method_state,
    require_run_checkpoint,
)
from detect.engine.loggers import build_logger
from detect.engine.report import format_metrics_table, git_commit, write_results
from detect.engine.runtime import cleanup, seed_everything, setup_runtime
from detect.engine.trainer import absolute_paths, build_method, evaluate_sets
from detect.engine.trust import checkpoint_build_config


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
