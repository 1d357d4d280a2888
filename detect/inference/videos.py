"""Encode a test set's stored face frames as MP4 videos, one per video key, so ``predict.py`` can be
run (with ``faces=crops``) on videos with known labels: the synthetic benchmark stores frames, not
videos (``scripts/synthetic_videos.py``).

Frames are encoded with H.264 in 4:4:4 at QP 0 (lossless apart from the RGB <-> YCbCr rounding), so the
predictions on the decoded frames equal ``eval.py``'s on the stored PNGs up to that rounding.
``labels.csv`` lists each video's path, label (0 real, 1 fake), label name and video key.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from detect.utils.io import atomic_write_text


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def encode_mp4(path: Path, frames: list[np.ndarray], fps: int = 8, lossless: bool = True) -> None:
    """RGB uint8 frames (even sides) -> H.264 MP4; ``lossless``: 4:4:4, QP 0."""
    import av

    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"} if lossless else {"crf": "18"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_videos(table: pd.DataFrame, out_dir: str | Path, limit: int | None = None) -> pd.DataFrame:
    """One MP4 per ``video`` key of a sample table (frames in ``frame`` order) under
    ``out_dir/<label_name>/``; returns and writes ``labels.csv``. ``limit``: at most this many videos,
    spread evenly over the sorted video keys."""
    out_dir = Path(out_dir)
    rows = []
    keys = sorted(table["video"].astype(str).unique())
    if limit and limit < len(keys):  # evenly spread over the sorted keys: every label appears
        keys = [keys[i] for i in np.unique(np.linspace(0, len(keys) - 1, int(limit)).round().astype(int))]
    for key in keys:
        part = table[table["video"].astype(str) == key].sort_values("frame")
        frames = []
        for p in part["path"]:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read frame {p} of video {key}")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        label_name = str(part["label_name"].iloc[0]) if "label_name" in part else str(part["label"].iloc[0])
        path = out_dir / _safe(label_name) / f"{_safe(key)}.mp4"
        encode_mp4(path, frames)
        rows.append(
            {"path": str(path), "label": int(part["label"].iloc[0]), "label_name": label_name, "video": key}
        )
    labels = pd.DataFrame(rows, columns=["path", "label", "label_name", "video"])
    atomic_write_text(out_dir / "labels.csv", labels.to_csv(index=False))
    return labels
