"""Clips of consecutive frames for video detectors (issue 18): where they start, which face is tracked
through a clip, and the one crop box a clip shares.

Video detectors (FTCN, AltFreezing, LipForensics) read ``clip_len`` consecutive frames; DeepfakeBench's
32 evenly spaced frames and the frame-wise crop of :mod:`detect.data.preprocess.pipeline` give neither
consecutive frames nor a steady crop (a per-frame box jitters, and that jitter is a temporal signal of its
own). So with ``clips=K clip_len=L`` preprocessing stores K clips of L consecutive frames spread evenly
over the video, and crops every frame of a clip with ONE square: ``scale`` x the union of the tracked
face's boxes over the clip (grown to hold the clip's landmarks, as the frame crop is).

The tracked face: the largest face of the clip's first frame, then in each next frame the detection that
overlaps the previous frame's box most (IoU); the largest face where none overlaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detect.data.preprocess.face_detection import Detection, largest_face

Box = tuple[float, float, float, float]


def clip_starts(n_total: int, clips: int, clip_len: int) -> list[int]:
    """First frames of ``clips`` non-overlapping clips of ``clip_len`` frames spread evenly over a video of
    ``n_total`` frames: ``floor(linspace(0, n_total - clip_len, clips))``, fewer clips where the video
    cannot hold ``clips`` of them side by side (``floor(n_total / clip_len)``); none where it is shorter
    than one clip."""
    if clips < 1 or clip_len < 1:
        raise ValueError(f"clips={clips}, clip_len={clip_len}: both must be at least 1")
    fit = min(int(clips), n_total // clip_len)
    if fit < 1:
        return []
    if fit == 1:
        return [0]
    # spacing (n_total - L) / (fit - 1) >= L, so the floored starts stay >= L apart: no overlap
    return [int(s) for s in np.floor(np.linspace(0, n_total - clip_len, fit))]


def clip_frames(starts: Sequence[int], clip_len: int) -> list[list[int]]:
    """The frame numbers of each clip."""
    return [list(range(s, s + clip_len)) for s in starts]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1)``."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_face(per_frame: Sequence[Sequence[Detection]]) -> list[Detection | None]:
    """One face per frame: the largest in the first frame with a face, then the detection overlapping
    the previous tracked box most (the largest face where none overlaps); None for frames without one."""
    out: list[Detection | None] = []
    prev: Detection | None = None
    for dets in per_frame:
        dets = list(dets)
        if not dets:
            out.append(None)
            continue
        chosen = None
        if prev is not None:
            best = max(dets, key=lambda d: iou(d.box, prev.box))
            chosen = best if iou(best.box, prev.box) > 0 else None
        chosen = chosen or largest_face(dets)
        out.append(chosen)
        prev = chosen
    return out


def union_box(boxes: Sequence[Box]) -> Box:
    """The smallest box holding every box of ``boxes``."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(arr):
        raise ValueError("union of no boxes")
    return (float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()), float(arr[:, 3].max()))
