"""H.264 round trip through PyAV/libx264: frames carry real codec artifacts at a given CRF."""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import cv2
import numpy as np


def h264_roundtrip(
    frames: Sequence[np.ndarray], crf: int, preset: str = "superfast", fps: int = 25
) -> list[np.ndarray]:
    """Encode RGB uint8 frames as one short H.264 clip at ``crf`` (yuv420p) and decode them back.

    Single-threaded x264 so the output is deterministic. Sizes must be even. RGB <-> YUV 4:2:0 conversion
    (BT.601) is done with OpenCV, the encoding and decoding by x264/FFmpeg.
    """
    if not frames:
        return []
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset, "threads": "1"}
        for f in frames:
            yuv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YUV_I420)
            for packet in stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    out: list[np.ndarray] = []
    with av.open(buf, "r") as container:
        for frame in container.decode(video=0):
            out.append(cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420))
    if len(out) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(out)} frames for {len(frames)}")
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
