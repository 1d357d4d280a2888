"""Clips of one video for clip detectors (a method declaring ``clip_len``), prepared as preprocessing
prepares them with ``clips=K clip_len=L`` (:mod:`detect.data.preprocess.clips`): K runs of ``clip_len``
CONSECUTIVE decoded frames spread evenly over the video (``floor(linspace(0, n - clip_len, K))``), the
face tracked through each clip (:func:`~detect.data.preprocess.clips.track_face`), and every frame of a
clip cut with ONE square: ``scale`` x the union of the tracked boxes, grown to hold the clip's landmarks
(:func:`~detect.data.preprocess.crop.box_matrix`), so the crop does not jitter from frame to frame.

A clip with a frame the decoder did not deliver, or a frame without a face, is dropped (counted in the
video's row). With ``faces=crops`` every frame already is the face crop: a clip is its frames as decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from detect.data.preprocess.clips import clip_frames, clip_starts, track_face, union_box
from detect.data.preprocess.crop import box_matrix, warp
from detect.data.preprocess.face_detection import FaceModels
from detect.data.preprocess.video import count_frames, read_frames
from detect.inference.face_sampling import SampledInput, UnreadableInput
from detect.inference.load import FaceCrop
from detect.inference.sources import Source

CLIP_FACE_MODES = ("largest", "crops")


class NoClipInput(UnreadableInput):
    """A readable input that holds no clip: an image (``reason="image"``) or a video shorter than one clip
    (``reason="too_short"``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Clip:
    """One clip of one video: its frame numbers, the union of the tracked face's boxes, the one affine
    map (frame -> crop pixels) every frame was cut with, the crops (RGB uint8) and the frames' landmarks
    mapped into the crops (for clip detectors that cut a region from them, e.g. LipForensics' mouth)."""

    frames: list[int]
    box: tuple[float, float, float, float]
    matrix: np.ndarray | None
    crops: list[np.ndarray]
    landmarks: list[np.ndarray] | None = None  # per frame, in crop pixels (None with faces=crops)

    @property
    def start(self) -> int:
        return self.frames[0]


@dataclass
class SampledClips:
    """A video's decoded clip frames and the clips planned over it."""

    sampled: SampledInput
    planned: list[list[int]]


def clips_wanted(cfg_clips: int | None, method_clips: int | None, n_total: int, clip_len: int) -> int:
    """How many clips to score: ``predict.yaml``'s ``clips``, else the method's ``eval_clips_per_video``,
    else every non-overlapping clip the video holds."""
    for n in (cfg_clips, method_clips):
        if n is not None:
            if int(n) < 1:
                raise ValueError(f"clips={n}: must be at least 1 (null: every clip the video holds)")
            return int(n)
    return max(n_total // clip_len, 1)


def sample_clips(
    source: Source, clip_len: int, clips: int | None, method_clips: int | None, backend: str = "pyav"
) -> SampledClips:
    """Plan the clips of a video and decode their frames; an image, a video shorter than one clip or an
    undecodable file -> :class:`UnreadableInput` (:class:`NoClipInput` for the first two; the message
    names the file and why)."""
    if source.kind == "image":
        msg = f"{source.path} is an image; a clip detector reads {clip_len} consecutive frames"
        raise NoClipInput(msg, "image")
    try:
        n_total = count_frames(source.path, backend)
        if n_total <= 0:
            raise UnreadableInput(f"video has no frames: {source.path}")
        starts = clip_starts(n_total, clips_wanted(clips, method_clips, n_total, clip_len), clip_len)
        if not starts:
            msg = f"{source.path} has {n_total} frames, fewer than one clip (clip_len={clip_len})"
            raise NoClipInput(msg, "too_short")
        planned = clip_frames(starts, clip_len)
        decoded = read_frames(source.path, [i for c in planned for i in c], n_total, backend)
    except UnreadableInput:
        raise
    except Exception as err:  # VideoReadError and decoder errors alike: the input is reported
        raise UnreadableInput(str(err)) from err
    return SampledClips(SampledInput(source, dict(decoded.frames), n_total), planned)


def clips_of(sampled: SampledClips, mode: str, crop: FaceCrop, models: FaceModels | None) -> Iterator[Clip]:
    """The clips whose every frame was decoded and (``mode=largest``) shows the tracked face."""
    if mode not in CLIP_FACE_MODES:
        raise ValueError(
            f"faces={mode!r}: a clip detector tracks one face per clip; use one of {CLIP_FACE_MODES}"
        )
    if mode == "largest" and crop.mode != "box":
        raise ValueError(
            f"checkpoint crop.mode={crop.mode!r}: clips are cut with one box per clip (crop.mode=box), as "
            "preprocessing with clips=K cuts them"
        )
    frames = sampled.sampled.frames
    for numbers in sampled.planned:
        if any(i not in frames for i in numbers):
            continue
        rgbs = [frames[i] for i in numbers]
        if mode == "crops":
            h, w = rgbs[0].shape[:2]
            yield Clip(list(numbers), (0.0, 0.0, float(w), float(h)), None, rgbs)
            continue
        faces = track_face([models.detector.detect(rgb) for rgb in rgbs])
        if any(d is None for d in faces):
            continue
        landmarks = [models.predictor.predict(rgb, d.box) for rgb, d in zip(rgbs, faces, strict=True)]
        box = union_box([d.box for d in faces])
        matrix = box_matrix(box, crop.scale, crop.size, np.concatenate(landmarks))
        in_crop = [np.asarray(lm, np.float64) @ matrix[:, :2].T + matrix[:, 2] for lm in landmarks]
        yield Clip(list(numbers), box, matrix, [warp(rgb, matrix, crop.size) for rgb in rgbs], in_crop)
