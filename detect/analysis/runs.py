"""Trained runs loaded back from their folders: the validation-selected checkpoint, the saved config,
the method rebuilt (strict) in eval mode, its evaluation pipeline and a runtime."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from detect.data.protocol import load_sets, prepare_data, protocol_sets
from detect.data.transforms import Pipeline, build_pipeline
from detect.engine.checkpoint import BEST, LAST, load_checkpoint
from detect.engine.method_builder import build_method
from detect.engine.method_contract import Method
from detect.engine.runtime import Runtime, setup_runtime

log = logging.getLogger(__name__)


# -- runs -------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A trained run rebuilt from its checkpoint (eval mode, on ``runtime.device``)."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig
    method: Method
    pipeline: Pipeline
    runtime: Runtime

    @property
    def label(self) -> str:
        return f"{self.config.method.get('name', type(self.method).__name__)} ({self.run_dir.name})"

    @property
    def in_domain(self) -> str:
        """The name the in-domain test set has in ``results.json`` and ``predictions/``."""
        return str(self.config.dataset.get("short", self.config.dataset.name))

    def tables(self, roles: tuple[str, ...] = ("val", "test")) -> dict[str, pd.DataFrame]:
        """The run's protocol tables (``val``, ``test/<name>``) for ``roles``."""
        return load_sets(protocol_sets(self.config, roles=roles), str(self.config.data.kind))


def find_checkpoint(run_dir: str | Path) -> Path:
    """``run_dir/checkpoints/best.pt`` (the validation-selected model the run was tested with), else
    ``last.pt`` (a run without a validation split, or whose validation metric was never defined)."""
    folder = Path(run_dir) / "checkpoints"
    for name in (BEST, LAST):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{run_dir} has no checkpoints/{BEST} or checkpoints/{LAST}: pass the folder of a finished run, "
        "outputs/runs/<run_name> (python train.py ... run_name=<run_name>)"
    )


def load_run(run_dir: str | Path, device: str = "auto", precision: str = "fp32") -> Run:
    """Rebuild a run's method from its checkpoint (strict) with the run's saved config; the synthetic
    benchmark is regenerated into the run's cache folder if it has gone."""
    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    state = load_checkpoint(ckpt, "cpu")
    cfg = OmegaConf.create(state["config"])
    if cfg.data.kind == "synthetic" and not (cfg.data.get("root") and Path(cfg.data.root).is_dir()):
        prepare_data(cfg)
    runtime_cfg = OmegaConf.merge(
        cfg.runtime, {"device": device, "distributed": False, "precision": precision, "threads": None}
    )
    runtime = setup_runtime(runtime_cfg)
    method = build_method(cfg.method, cfg.backbone)
    method.load_state_dict(state["method"], strict=True)
    method.to(runtime.device).eval()
    return Run(run_dir, ckpt, cfg, method, build_pipeline(cfg.input, None), runtime)
