"""Write the synthetic benchmark's test videos as MP4 files (the generator stores frames):

python scripts/synthetic_videos.py out_dir=videos limit=20
python predict.py ckpt=outputs/runs/<run>/checkpoints/best.pt input=videos faces=crops frames=8
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from detect.data.protocol import load_sets, prepare_data, protocol_sets
from detect.inference.videos import write_videos


@hydra.main(version_base="1.3", config_path="../conf", config_name="videos")
def main(cfg: DictConfig) -> None:
    prepare_data(cfg)
    sets = protocol_sets(cfg, roles=("test",))["test"]
    name = cfg.set or next(iter(sets))
    if name not in sets:
        raise KeyError(f"set={name!r}: the protocol's test sets are {list(sets)}")
    tables = load_sets({"test": {name: sets[name]}}, str(cfg.data.kind))
    labels = write_videos(tables[f"test/{name}"], cfg.out_dir, cfg.limit)
    print(f"wrote {len(labels)} videos of test set {name} under {cfg.out_dir} (labels.csv)")


if __name__ == "__main__":
    main()
