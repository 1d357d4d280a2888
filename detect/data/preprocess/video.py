"""Read N evenly spaced frames of a video (PyAV by default, OpenCV as an alternative)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from detect.data.index import evenly_spaced

BACKENDS = ("pyav", "opencv")


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file."""


def sample_indices(n_total: int, n_wanted: int | None) -> np.ndarray:
    """Indices of ``n_wanted`` frames spread evenly over ``n_total`` frames.

    ``detect.data.index.evenly_spaced``: ``floor(linspace(0, n_total - 1, n_wanted))`` as DeepfakeBench's
    preprocessing does (not the first N frames).
    """
    return evenly_spaced(n_total, n_wanted)


@dataclass
class SampledFrames:
    """Frames read from one video: ``frames[i]`` is frame ``i`` (RGB uint8, H x W x 3)."""

    n_total: int
    wanted: list[int]
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    decode_error: str | None = None

    @property
    def missing(self) -> list[int]:
        """Wanted indices the decoder never delivered (a truncated or mis-counted video)."""
        return [i for i in self.wanted if i not in self.frames]


def _check_file(path: str | os.PathLike) -> None:
    if not os.path.isfile(path):
        raise VideoReadError(f"video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"video file is empty: {path}")


def count_frames(path: str | os.PathLike, backend: str = "pyav") -> int:
    """Number of frames of a video (container metadata, else a count of demuxed packets)."""
    _check_file(path)
    if backend == "opencv":
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise VideoReadError(f"cannot open video {path} (OpenCV)")
            return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        finally:
            cap.release()
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"no video stream in {path}")
            stream = container.streams.video[0]
            if stream.frames and stream.frames > 0:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.FFmpegError as err:
        raise VideoReadError(f"cannot read video {path}: {err.strerror or err}") from err


def read_frames(
    path: str | os.PathLike, indices: Iterable[int], n_total: int, backend: str = "pyav"
) -> SampledFrames:
    """Decode the video sequentially and keep the frames at ``indices`` (RGB uint8)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; use one of {BACKENDS} (video_backend)")
    _check_file(path)
    result = SampledFrames(n_total=n_total, wanted=sorted({int(i) for i in indices}))
    if not result.wanted:
        return result
    if backend == "opencv":
        _read_opencv(str(path), result)
    else:
        _read_pyav(str(path), result)
    if not result.frames:
        reason = f": {result.decode_error}" if result.decode_error else " (no frame could be decoded)"
        raise VideoReadError(f"cannot decode video {path}{reason}")
    return result


def read_sampled(path: str | os.PathLike, n_wanted: int | None, backend: str = "pyav") -> SampledFrames:
    """Count the frames, choose ``n_wanted`` evenly spaced ones, and decode them."""
    n_total = count_frames(path, backend)
    if n_total <= 0:
        raise VideoReadError(f"video has no frames: {path}")
    return read_frames(path, sample_indices(n_total, n_wanted), n_total, backend)


def _read_pyav(path: str, out: SampledFrames) -> None:
    import av

    wanted = set(out.wanted)
    last = out.wanted[-1]
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(f"no video stream in {path}")
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out.frames[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except av.FFmpegError as err:
        out.decode_error = str(err.strerror or err)


def _read_opencv(path: str, out: SampledFrames) -> None:
    import cv2

    wanted = set(out.wanted)
    last = out.wanted[-1]
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoReadError(f"cannot open video {path} (OpenCV)")
        i = 0
        while i <= last:
            if not cap.grab():
                break
            if i in wanted:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    out.frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
