"""Experiments run in phases, in order: each phase is the job's config with some keys set, trained in
``<run dir>/<phase name>/``; a later phase may start from an earlier phase's best checkpoint with
``init_from: phase:<name>`` (LTW's "w/o meta-testing" row trains a full LTW model first).

An experiment declares, for example::

    phases:
      - {name: ltw, set: {}}
      - {name: frozen, set: {init_from: "phase:ltw", method.beta: 0.0, method.freeze_weight_net: true}}

A finished phase (its ``phase_results.json`` says complete) is not run again when the job is resumed.
The job's own ``results.json`` is the last phase's, with every phase's results under ``phases``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

PHASE_PREFIX = "phase:"
PHASE_RESULTS = "phase_results.json"


def resolve_init_from(value: str | None, run_dir: Path) -> str | None:
    """``phase:<name>`` → that phase's ``best.pt`` in this job's run directory; a path stays a path."""
    if value is None or not str(value).startswith(PHASE_PREFIX):
        return value
    name = str(value)[len(PHASE_PREFIX) :]
    path = run_dir / name / "checkpoints" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"init_from={value}: phase {name!r} has no checkpoint at {path}; list it earlier"
        )
    return str(path)


def phase_config(cfg: DictConfig, phase: Mapping, run_dir: Path) -> DictConfig:
    """The config of one phase: the job's config without ``phases``, with the phase's ``set`` keys."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(out):
        out.phases = None
        for key, value in (phase.get("set") or {}).items():
            if OmegaConf.select(out, key, throw_on_missing=False) is None and "." in key:
                parent = key.rsplit(".", 1)[0]
                if OmegaConf.select(out, parent) is None:
                    raise KeyError(
                        f"phase {phase['name']!r} sets {key!r}, but {parent!r} is not in the config"
                    )
            OmegaConf.update(out, key, value, merge=False, force_add=True)
        out.init_from = resolve_init_from(out.get("init_from"), run_dir)
    return out


def run_phases(cfg: DictConfig, run_dir: Path, train_fn: Callable[..., dict], choices: Mapping) -> dict:
    """Run ``cfg.phases`` in order with ``train_fn(cfg, run_dir, choices, results_name)``."""
    names = [str(p["name"]) for p in cfg.phases]
    if len(set(names)) != len(names):
        raise ValueError(f"phase names must be unique, got {names}")
    done: dict[str, dict] = {}
    for phase in cfg.phases:
        name = str(phase["name"])
        phase_dir = run_dir / name
        saved = phase_dir / PHASE_RESULTS
        if saved.is_file() and json.loads(saved.read_text()).get("status") == "complete":
            done[name] = json.loads(saved.read_text())
            continue
        done[name] = train_fn(
            phase_config(cfg, phase, run_dir), phase_dir, {**choices, "phase": name}, PHASE_RESULTS
        )
    final = dict(done[names[-1]])
    final["phases"] = {
        n: {"run_dir": r["run_dir"], "metrics": r["metrics"], "best_epoch": r["best_epoch"]}
        for n, r in done.items()
    }
    return final
