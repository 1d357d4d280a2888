"""Annotated outputs of ``predict.py`` (``visualize=true``): each sampled frame with its face boxes and
P(fake) drawn on it, as an MP4 per video (H.264 through PyAV) and a PNG per image; with
``visualize_cam=true`` each face's Grad-CAM heat map is blended in under the box
(:mod:`detect.inference.class_activation`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from detect.inference.sources import Source


def _colour(score: float) -> tuple[int, int, int]:
    """Green (real) to red (fake), RGB."""
    s = float(np.clip(score, 0.0, 1.0))
    return int(255 * s), int(255 * (1 - s)), 0


def annotate(frame: np.ndarray, faces: pd.DataFrame, heats: list | None = None) -> np.ndarray:
    """A copy of ``frame`` (RGB) with each face row's box and score, over its heat map when ``heats``
    (``(map, matrix)`` per row, in the rows' order) is given."""
    out = frame.copy()
    if heats is not None:
        from detect.inference.class_activation import overlay

        for r, (heat, matrix) in zip(faces.itertuples(), heats, strict=True):
            out = overlay(out, heat, matrix, (r.x0, r.y0, r.x1, r.y1))
    thick = max(1, round(max(frame.shape[:2]) / 300))
    for r in faces.itertuples():
        c = _colour(r.score)
        p0, p1 = (int(r.x0), int(r.y0)), (int(r.x1), int(r.y1))
        cv2.rectangle(out, p0, p1, c, thick)
        label = f"{r.face}: {r.score:.2f}"
        cv2.putText(out, label, (p0[0], max(p0[1] - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, c, thick)
    return out


def _output_name(source: Source, ext: str) -> str:
    stem = Path(source.path).resolve().with_suffix("").as_posix().strip("/").replace("/", "__")
    return f"{stem}{ext}"


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Encode RGB frames as H.264 (even dimensions; yuv420p)."""
    import av

    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h2, :w2]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_annotated(
    source: Source,
    frames: dict[int, np.ndarray],
    faces: pd.DataFrame,
    out_dir: Path,
    fps: float = 4.0,
    heats: list | None = None,
) -> Path:
    """Write ``source``'s annotated frames; returns the file written. ``heats``: ``(map, matrix)`` per row
    of ``faces`` (heat maps drawn under the boxes), or None."""
    faces = faces.reset_index(drop=True)
    drawn = []
    for n in sorted(frames):
        rows = faces[faces["frame"] == n]
        drawn.append(annotate(frames[n], rows, None if heats is None else [heats[i] for i in rows.index]))
    if source.kind == "image":
        path = out_dir / _output_name(source, ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(drawn[0], cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        return path
    path = out_dir / _output_name(source, ".mp4")
    write_mp4(path, drawn, fps)
    return path
