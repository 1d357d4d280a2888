"""Train a detector: ``python train.py [method=...] [backbone=...] [dataset=...] [protocol=...]``.

Sweeps: ``python train.py -m experiment=<paper>/<table> [scale=smoke]``. All logic lives in ``detect``.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from detect.cli import run_train
from detect.engine.distributed import rank_overrides


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_train(cfg)


if __name__ == "__main__":
    sys.argv += rank_overrides(sys.argv[1:], os.environ)  # torchrun: rank 0 alone writes
    main()
