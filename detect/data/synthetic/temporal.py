"""Time in the synthetic benchmark: smooth per-video motion tracks and the per-frame jitter of fakes.

A real video's frame parameters (head position and scale, expression, gaze, exposure) are smooth functions
of the frame number (:func:`smooth_track`: a few low-frequency sinusoids, seeded per video), so
consecutive frames differ a little and frames far apart as much as independent draws would. A deepfake is
generated frame by frame, each frame independently: its alignment, blend mask, colour correction and
relighting wobble from frame to frame (:class:`FrameJitter`), a flicker that real videos do not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLIP_FRAMES = 300
"""The nominal length of a synthetic video in frames (stored frames are frame numbers of such a clip)."""


def smooth_track(
    rng: np.random.Generator, frames: Sequence[int], periods: tuple[float, float], waves: int = 3
) -> np.ndarray:
    """A zero-mean, unit-variance smooth signal at ``frames``: ``waves`` sinusoids with periods drawn
    log-uniformly in ``periods`` (frames), random phases and amplitudes normalised so that the sum's
    variance over time is 1 (``sum(a_k^2) / 2 = 1``). Its slope is at most ``sum(a_k) 2 pi / min(periods)
    <= 2 pi sqrt(2 waves) / min(periods)`` (Cauchy-Schwarz), so consecutive frames differ by at most that."""
    lo, hi = (float(p) for p in periods)
    if not 0 < lo <= hi:
        raise ValueError(f"periods={periods}: need 0 < low <= high")
    period = np.exp(rng.uniform(np.log(lo), np.log(hi), waves))
    phase = rng.uniform(0, 2 * np.pi, waves)
    amp = np.abs(rng.normal(1.0, 0.3, waves)) + 0.1
    amp = amp * np.sqrt(2.0 / np.sum(amp**2))
    t = np.asarray(frames, dtype=np.float64)[:, None]
    return np.sum(amp * np.sin(2 * np.pi * t / period + phase), axis=1)


def blink_track(
    rng: np.random.Generator, frames: Sequence[int], rate: float = 6.0, half_width: float = 5.0
) -> np.ndarray:
    """Eyelid closure at ``frames``: a low resting level, plus ``Poisson(rate)`` blinks over the nominal
    clip, each a raised-cosine bump of ``half_width`` frames either side of its centre to a peak in
    [0.6, 1]."""
    t = np.asarray(frames, dtype=np.float64)
    rest = np.clip(0.1 + 0.05 * smooth_track(rng, frames, (40.0, 200.0)), 0.0, 0.2)
    out = rest.copy()
    n = int(rng.poisson(rate))
    centres = rng.uniform(0, CLIP_FRAMES, n)
    peaks = rng.uniform(0.6, 1.0, n)
    for c, p in zip(centres, peaks, strict=True):
        d = np.abs(t - c)
        bump = np.where(d < half_width, 0.5 * (1 + np.cos(np.pi * d / half_width)), 0.0)
        out = np.maximum(out, rest + (p - rest) * bump)
    return out


@dataclass(frozen=True)
class FrameJitter:
    """One fake frame's independent generation error (each drawn afresh per frame).

    - ``shift``: (x, y) pixels the generated face is misaligned by (per-frame landmark/alignment noise);
    - ``grow``: pixels the blend mask's boundary moves out (negative: in);
    - ``colour``: per-channel offset (RGB, in [0, 1] units) of the colour correction;
    - ``gain``: factor on the relighting amplitude; ``angle``: radians the relighting direction turns.
    """

    shift: tuple[float, float] = (0.0, 0.0)
    grow: float = 0.0
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gain: float = 1.0
    angle: float = 0.0


NO_JITTER = FrameJitter()


@dataclass(frozen=True)
class JitterScale:
    """Standard deviations of :class:`FrameJitter` (``grow`` is uniform in +-``grow``)."""

    shift: float = 0.6
    grow: float = 1.5
    colour: float = 0.012
    gain: float = 0.1
    angle: float = 0.15


DEFAULT_JITTER = JitterScale()


def draw_jitter(rng: np.random.Generator, scale: JitterScale = DEFAULT_JITTER) -> FrameJitter:
    """One frame's jitter (shift clipped to 2 standard deviations)."""
    shift = np.clip(rng.normal(0, scale.shift, 2), -2 * scale.shift, 2 * scale.shift)
    return FrameJitter(
        shift=(float(shift[0]), float(shift[1])),
        grow=float(rng.uniform(-scale.grow, scale.grow)),
        colour=tuple(float(c) for c in rng.normal(0, scale.colour, 3)),  # type: ignore[arg-type]
        gain=float(1 + rng.normal(0, scale.gain)),
        angle=float(rng.normal(0, scale.angle)),
    )
