"""Parameters of the synthetic benchmark and the cache key derived from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

GENERATOR_VERSION = "6"
"""Bump when the generator's output changes for the same parameters (invalidates every cache)."""


def _all_standins() -> tuple[str, ...]:
    from detect.data.synthetic.standins import STAND_INS

    return tuple(STAND_INS)


@dataclass
class SyntheticConfig:
    """What to generate. Every field changes the output, so every field is part of the cache key.

    - ``n_source_videos``: FF++ real videos (each a different identity; paired up, split by pair with
      ``split_fractions``, 60/20/20; stand-ins use ``standin_split_fractions``, 40/20/40, for larger tests);
    - ``frames_per_video``: frames stored per video (spread evenly over a nominal 300-frame clip);
    - ``crf_c23`` / ``crf_c40``: x264 CRF of the two FF++ quality levels; ``x264_preset``;
    - ``standin_videos``: real videos per stand-in (each with one fake per fake label);
      ``standin_frames``: frames per stand-in video (None: ``frames_per_video``);
    - ``standins``: which stand-ins (None: all of ``STAND_INS``); ``methods``: FF++ methods;
    - ``clips`` / ``clip_len``: 0 (default): the evenly spaced frames above; ``clips`` > 0: every video
      stores instead ``clips`` clips of ``clip_len`` consecutive frames (for video detectors), recorded in
      the index's ``clips`` key as preprocessing records them.
    """

    seed: int = 0
    n_source_videos: int = 40
    frames_per_video: int = 8
    image_size: int = 256
    crf_c23: int = 23
    crf_c40: int = 40
    x264_preset: str = "superfast"
    standin_videos: int = 32
    standin_frames: int | None = None
    standins: tuple[str, ...] | None = None
    methods: tuple[str, ...] = ("DF", "F2F", "FS", "NT", "FSh")
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    standin_split_fractions: tuple[float, float, float] = (0.4, 0.2, 0.4)
    clips: int = 0
    clip_len: int = 0

    def __post_init__(self) -> None:
        from detect.data.synthetic.standins import FF_METHODS, STAND_INS

        self.methods = tuple(self.methods)
        self.split_fractions = tuple(float(f) for f in self.split_fractions)  # type: ignore[assignment]
        self.standin_split_fractions = tuple(  # type: ignore[assignment]
            float(f) for f in self.standin_split_fractions
        )
        if self.standins is not None:
            self.standins = tuple(self.standins)
            unknown = [s for s in self.standins if s not in STAND_INS]
            if unknown:
                raise ValueError(f"unknown stand-ins {unknown}; known: {sorted(STAND_INS)}")
        bad = [m for m in self.methods if m not in FF_METHODS]
        if bad:
            raise ValueError(f"unknown FF++ methods {bad}; known: {list(FF_METHODS)}")
        if self.n_source_videos < 2 or self.standin_videos < 2:
            raise ValueError("n_source_videos and standin_videos must be at least 2 (videos are paired)")
        if self.frames_per_video < 1:
            raise ValueError("frames_per_video must be at least 1")
        if self.image_size % 16 or self.image_size < 64:
            raise ValueError("image_size must be a multiple of 16 and at least 64")
        self.clips, self.clip_len = int(self.clips), int(self.clip_len)
        if self.clips < 0:
            raise ValueError(f"clips={self.clips}: use 0 (evenly spaced frames) or a number of clips")
        if self.clips == 0:
            self.clip_len = 0  # unused: the same set, the same cache key
        elif self.clip_len < 1 or self.clips * self.clip_len > 300:
            raise ValueError(
                f"clips={self.clips} clip_len={self.clip_len}: clip_len must be at least 1 and the clips "
                "must fit side by side in the nominal 300-frame video"
            )
        for fr in (self.split_fractions, self.standin_split_fractions):
            if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6 or min(fr) < 0:
                raise ValueError("split fractions must be three fractions (train, val, test) summing to 1")

    @property
    def standin_names(self) -> tuple[str, ...]:
        """The stand-ins to generate."""
        return self.standins if self.standins is not None else _all_standins()

    @property
    def frames_standin(self) -> int:
        """Frames per stand-in video."""
        return self.standin_frames or self.frames_per_video

    def as_dict(self) -> dict:
        """Plain JSON-able parameters (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    def key(self) -> str:
        """Short hash of all parameters and ``GENERATOR_VERSION``: the cache folder's suffix."""
        text = json.dumps({"params": self.as_dict(), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]
