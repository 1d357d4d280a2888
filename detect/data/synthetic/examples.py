"""Helpers around the generated benchmark: uncompressed real/fake pairs and dataset configs."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from detect.data.synthetic.config import SyntheticConfig
from detect.data.synthetic.generator import FF_NEEDS, ff_fakes, prepare, standin_fakes
from detect.data.synthetic.standins import FF_LABELS, FF_METHODS, FF_NAME, STAND_INS


@dataclass
class Example:
    """One uncompressed frame pair: the real target frame, its fake, the fake's mask and landmarks."""

    real: np.ndarray
    fake: np.ndarray
    mask: np.ndarray
    real_landmarks: np.ndarray
    fake_landmarks: np.ndarray


def uncompressed_example(cfg: SyntheticConfig, method: str, video: int = 0, frame: int = 0) -> Example:
    """The frame ``frame`` of target video ``video`` and its fake by ``method``, before the codec.

    ``method`` is an FF++ method (``DF``, ``F2F``, ``FS``, ``NT``, ``FSh``) or a stand-in name (its first
    fake kind). Identical to what the generator compresses and writes.
    """
    if method in FF_METHODS:
        pr = prepare(cfg, FF_NAME, video, {FF_NEEDS[method]})
        fakes = ff_fakes(cfg, method, pr.target, pr.reals, pr.lms, pr.sources)
    elif method in STAND_INS:
        s = STAND_INS[method]
        needs = {s.fakes[0].method}
        pr = prepare(replace(cfg, standins=(method,)), s.pool_name, video, needs)
        fakes = standin_fakes(cfg, s, 0, pr.target, pr.reals, pr.lms, pr.sources)
    else:
        raise ValueError(f"unknown method {method!r}: an FF++ method {list(FF_METHODS)} or a stand-in")
    f = fakes[frame]
    return Example(pr.reals[frame], f.image, f.mask, pr.lms[frame], f.landmarks)


def dataset_config(name: str, root: str | os.PathLike, compression: str | None = "c23") -> dict:
    """A dataset config (for ``DatasetSpec.from_config``) of one index of the benchmark at ``root``.

    ``name``: ``FaceForensics++``, a per-method FF++ index (``FF-DF``, ..., ``FF-FH``) or a stand-in.
    """
    root = Path(root)
    index = str(root / "dataset_json" / f"{name}.json")
    rgb = str(root / "rgb")
    ff_domain = {label: dom for dom, label in FF_LABELS.items()}
    if name == FF_NAME or name in ff_domain:
        keep = list(FF_LABELS.values()) if name == FF_NAME else [FF_LABELS["real"], name]
        labels = {
            lab: {"label": 0 if ff_domain[lab] == "real" else 1, "domain": ff_domain[lab]} for lab in keep
        }
        return {
            "name": name,
            "index": index,
            "root": rgb,
            "labels": labels,
            "compression": compression,
            "pairing": "ff",
        }
    if name in STAND_INS:
        s = STAND_INS[name]
        cfg = {
            "name": name,
            "index": str(root / "dataset_json" / s.json_name),
            "root": rgb,
            "labels": s.labels(),
            "compression": None,
            "pairing": "none",
        }
        if name.startswith("Celeb-DF"):
            cfg["test_list"] = str(root / "rgb" / s.rgb_folder / "List_of_testing_videos.txt")
        return cfg
    raise ValueError(f"unknown dataset {name!r}: {FF_NAME}, {sorted(ff_domain)[:-1]} or {sorted(STAND_INS)}")
