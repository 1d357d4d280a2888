"""Preprocess raw videos into DeepfakeBench's layout: ``scripts/preprocess.py dataset=ff input_dir=...``.

A thin Hydra wrapper (config: ``conf/preprocess.yaml``); the logic is in ``detect.data.preprocess``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from detect.data.preprocess.pipeline import run_preprocess


@hydra.main(config_path="../conf", config_name="preprocess", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the preprocessing of ``cfg.dataset`` (see ``conf/preprocess.yaml``)."""
    run_preprocess(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
