"""The landmark index of a table's real frames, built once and cached on disk (the blend package's only I/O).

The cache file is keyed by a hash of every indexed frame's (path, landmark file size, landmark mtime) and
the index parameters, so a changed table or landmark file gives a new key and a rebuild. Written
atomically (``np.savez`` to a temp file, then renamed); no pickles.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from detect.data.blend.landmark_index import LandmarkIndex, landmark_features
from detect.data.images import ImageReadError, read_landmarks
from detect.utils.io import atomic_write

log = logging.getLogger(__name__)

INDEX_VERSION = "1"


def real_frames(table: pd.DataFrame) -> pd.DataFrame:
    """The table's real frames, one row per image path, with ``group`` = dataset/video id.

    The group ignores compression: the c23 and c40 copies of a video are the same video.
    """
    reals = table[table["label"] == 0].drop_duplicates(subset=["path"]).reset_index(drop=True)
    return reals.assign(group=reals["dataset"].astype(str) + "/" + reals["video_id"].astype(str))


def index_key(reals: pd.DataFrame, k: int, n_points: int, image_size: float) -> str:
    """Hash of the frames' (path, group, landmark size, landmark mtime) and the index parameters."""
    h = hashlib.sha1(f"v{INDEX_VERSION}|k{k}|p{n_points}|s{image_size}".encode())
    for path, group, lm_path in zip(reals["path"], reals["group"], reals["landmark_path"], strict=True):
        try:
            st = os.stat(lm_path)
        except OSError as err:
            raise ImageReadError(f"cannot read landmarks {lm_path} (of {path}): {err}") from err
        h.update(f"\n{path}|{group}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_landmark_index(
    table: pd.DataFrame,
    cache_dir: str | os.PathLike,
    k: int = 3,
    n_points: int = 68,
    image_size: float = 256.0,
    workers: int = 1,
) -> LandmarkIndex:
    """The ``LandmarkIndex`` of ``table``'s real frames (pass the training table), from the cache or built.

    Cache file: ``<cache_dir>/landmark_index-<key>.npz`` (features, groups, paths, neighbours).
    """
    reals = real_frames(table)
    key = index_key(reals, k, n_points, image_size)
    path = Path(cache_dir) / f"landmark_index-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return LandmarkIndex(z["features"], z["groups"], z["paths"], k, z["neighbours"], workers)
    log.info("building the landmark index of %d real frames into %s", len(reals), path)
    landmarks = np.stack([read_landmarks(p)[:n_points] for p in reals["landmark_path"]])
    index = LandmarkIndex(
        landmark_features(landmarks, n_points, image_size), reals["group"], reals["path"], k, workers=workers
    )

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                features=index.features,
                groups=index.groups,
                paths=index.paths,
                neighbours=index.neighbours,
            )

    atomic_write(path, _write)
    return index
