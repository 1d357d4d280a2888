"""Evaluate a checkpoint: ``python eval.py ckpt=PATH [protocol=...] [dataset=...] [data=real]``."""

import hydra
from omegaconf import DictConfig

from detect.cli import run_eval


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_eval(cfg)


if __name__ == "__main__":
    main()
