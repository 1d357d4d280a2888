"""Detect deepfakes in your own videos and images:
``python predict.py ckpt=PATH input=PATH [frames=32] [faces=largest|all|crops] [visualize=true]``.

Writes ``predictions.csv`` (per face), ``videos.csv`` (per input) and ``failures.csv`` into ``out_dir``
(default ``outputs/predict/<time>``). All logic lives in :mod:`detect.inference`.
"""

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from detect.inference.run import run_predict

    run_predict(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
