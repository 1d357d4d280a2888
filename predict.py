"""Detect deepfakes in your own videos and images:
``python predict.py ckpt=PATH input=PATH [frames=32] [faces=largest|all|crops] [visualize=true]``.

Writes ``predictions.csv`` (per face), ``videos.csv`` (per input) and ``failures.csv`` into ``out_dir``
(default ``outputs/predict/<time>``). All logic lives in :mod:`detect.inference`.
"""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from detect.engine.trust import UntrustedTarget
    from detect.inference.prediction import run_predict

    try:
        run_predict(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UntrustedTarget as err:  # a checkpoint naming code outside the project: one line, exit 2
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
