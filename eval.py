"""Evaluate a checkpoint: ``python eval.py ckpt=PATH [protocol=...] [dataset=...] [data=real]``."""

import os
import sys

import hydra
from omegaconf import DictConfig

from detect.cli import run_eval
from detect.engine.distributed import rank_overrides


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_eval(cfg)


if __name__ == "__main__":
    sys.argv += rank_overrides(sys.argv[1:], os.environ)  # torchrun: rank 0 alone writes
    main()
