"""Test-time perturbations chosen by config, e.g. ``{name: jpeg, quality: 50}``.

A perturbation is ``fn(image, sample_key) -> image`` on HWC uint8 RGB arrays. Random ones draw their
parameters from a generator seeded by ``(config seed, sample_key)``, so every method and every loader
order sees the same perturbed test set (``sample_key``: the sample's row in the test table).

Register more kinds with::

    @register_perturbation("noise")
    def _noise(std: float, seed: int = 0) -> Perturbation: ...

the factory takes the config's parameters (everything but ``name``) as keyword arguments.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from detect.data.jpeg import jpeg_compress

Perturbation = Callable[[np.ndarray, int], np.ndarray]
PerturbationFactory = Callable[..., Perturbation]

_REGISTRY: dict[str, PerturbationFactory] = {}
NONE_NAMES = ("none", "identity")


def register_perturbation(name: str) -> Callable[[PerturbationFactory], PerturbationFactory]:
    """Decorator: register ``factory(**params) -> Perturbation`` under ``name``."""

    def deco(factory: PerturbationFactory) -> PerturbationFactory:
        if name in _REGISTRY or name in NONE_NAMES:
            raise ValueError(f"perturbation {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_perturbations() -> list[str]:
    """Names accepted by :func:`build_perturbation` (besides ``none``)."""
    return sorted(_REGISTRY)


def _to_dict(cfg: Mapping) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


def build_perturbation(cfg: Mapping | None) -> Perturbation | None:
    """Build the perturbation a config names; ``None`` or ``{name: none}`` gives ``None`` (no-op)."""
    if cfg is None:
        return None
    params = _to_dict(cfg)
    name = params.pop("name", None)
    if name is None:
        raise ValueError(
            f"perturbation config {params} has no 'name' (known: none, {available_perturbations()})"
        )
    if str(name).lower() in NONE_NAMES:
        if params:
            raise ValueError(f"perturbation 'none' takes no parameters, got {sorted(params)}")
        return None
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown perturbation {name!r}; known: none, {', '.join(available_perturbations())}"
        )
    factory = _REGISTRY[name]
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"perturbation {name!r} got unknown parameters {unknown}; it accepts {list(accepted)}"
        )
    return factory(**params)


def apply_perturbation(fn: Perturbation | None, image: np.ndarray, sample_key: int) -> np.ndarray:
    """``fn(image, sample_key)``, or ``image`` unchanged when ``fn`` is None."""
    return image if fn is None else fn(image, sample_key)


def sample_rng(seed: int, sample_key: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, sample_key)`` (both non-negative integers)."""
    if seed < 0 or sample_key < 0:
        raise ValueError(f"seed and sample_key must be non-negative, got {seed}, {sample_key}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(sample_key)]))


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"perturbations take HWC uint8 RGB images, got {image.dtype} {image.shape}")


def _check_quality(q: int, what: str) -> int:
    if not 1 <= int(q) <= 100 or int(q) != q:
        raise ValueError(f"{what} must be an integer JPEG quality in [1, 100], got {q}")
    return int(q)


@register_perturbation("jpeg")
def _jpeg(quality: int) -> Perturbation:
    """JPEG compression at a fixed quality."""
    q = _check_quality(quality, "jpeg.quality")

    def fn(image: np.ndarray, sample_key: int) -> np.ndarray:
        return jpeg_compress(image, q)

    return fn


PER_CHOICES = ("sample", "image", "set", "run")


def _stream_entropy(*keys: object) -> list[int]:
    """Stable 32-bit integers for string/int keys (the entropy of an independent random stream)."""
    return [zlib.crc32(str(k).encode("utf-8")) for k in keys]


@dataclass(frozen=True)
class RandomJpeg:
    """JPEG at a quality drawn uniformly from the integers ``[low, high]``.

    How the quality is drawn (``per``):

    - ``sample``: one quality per image from ``(seed, sample_key)`` (independent of the set);
    - ``image``: one quality per image from ``(seed, stream, low-high range, sample_key)``, where
      ``stream`` names the test set (``protocol.test_variants`` fills it in) and the sample key is the
      CRC of the frame's path (:func:`detect.data.datasets.sample_key`): two images of a set, and the
      ranges of one image, get independent qualities;
    - ``set``: one quality for the whole set from ``(seed, stream, low-high range)``, as DPL's released
      ``test.py`` draws one quality per range (``random.randint``), but each range from its own stream;
    - ``run``: one quality from ``seed`` alone, the stream every range shares (kept only to reproduce
      runs made before ``set`` existed: the ranges' qualities then rise and fall together).
    """

    low: int
    high: int
    seed: int = 0
    per: str = "sample"
    stream: str = ""

    def _rng(self, sample_key: int) -> np.random.Generator:
        if self.per == "run":
            return np.random.default_rng(int(self.seed))
        if self.per == "sample":
            return sample_rng(self.seed, sample_key)
        keys = [int(self.seed) & 0xFFFFFFFF, *_stream_entropy(self.stream, f"{self.low}-{self.high}")]
        if self.per == "image":
            keys.append(int(sample_key) & 0xFFFFFFFF)
        return np.random.default_rng(np.random.SeedSequence(keys))

    def quality(self, sample_key: int) -> int:
        """The quality this sample gets."""
        return int(self._rng(sample_key).integers(self.low, self.high + 1))

    def record(self, sample_keys: Sequence[int]) -> dict[str, Any]:
        """What a run's results record of the qualities drawn for one set's samples (numbers only): the
        range, and the set's quality (``set``/``run``) or the mean, min and max of its images' qualities."""
        qs = np.array([self.quality(k) for k in sample_keys], dtype=np.int64)
        out: dict[str, Any] = {"jpeg_low": self.low, "jpeg_high": self.high}
        if self.per in ("set", "run") or not len(qs):
            out["jpeg_quality"] = int(qs[0]) if len(qs) else self.quality(0)
        else:
            out.update(
                jpeg_quality_mean=float(qs.mean()),
                jpeg_quality_min=int(qs.min()),
                jpeg_quality_max=int(qs.max()),
            )
        return out

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        return jpeg_compress(image, self.quality(sample_key))


@register_perturbation("random_jpeg")
def _random_jpeg(low: int, high: int, seed: int = 0, per: str = "sample", stream: str = "") -> Perturbation:
    """See :class:`RandomJpeg`."""
    lo, hi = _check_quality(low, "random_jpeg.low"), _check_quality(high, "random_jpeg.high")
    if lo > hi:
        raise ValueError(f"random_jpeg needs low <= high, got low={lo}, high={hi}")
    if per not in PER_CHOICES:
        raise ValueError(f"random_jpeg.per must be one of {', '.join(PER_CHOICES)}, got {per!r}")
    return RandomJpeg(lo, hi, int(seed), per, str(stream))


# --------------------------------------------------------------------------------------------------
# ProDet (NeurIPS 2024), Sec. 4.4 "Robustness against Unseen Perturbations", Table 4 and Fig. 5:
# block-wise masking (ratio 0.1, 4x4 grid), Gaussian noise (variance 10-50), shift (-50..50 px on both
# axes), "applied with random intensity ten times". Named ``prodet_*``: DPL's block-wise/noise
# perturbations differ and get names of their own.
# --------------------------------------------------------------------------------------------------

DRAW_STRIDE = 2**16
"""Most perturbed versions :func:`draw_keys` gives one sample (its keys are ``sample_key*DRAW_STRIDE+i``)."""


def draw_keys(sample_key: int, n: int) -> list[int]:
    """``n`` distinct deterministic keys for ``n`` perturbed versions of one sample (ProDet's mPD, App. 7.4).

    The i-th perturbed version of sample ``k`` is ``perturbation(image, draw_keys(k, n)[i])``.
    Keys are ``sample_key * DRAW_STRIDE + i`` (``DRAW_STRIDE = 2**16``), so they are distinct within a sample
    and across samples (an injective map of ``(sample_key, i)``), and a prefix is stable in ``n``:
    ``draw_keys(k, 10)[:5] == draw_keys(k, 5)``. They are not the plain key ``sample_key``, so the n draws
    are a set of their own, not the single perturbed test set's version plus n-1 more.
    """
    if int(sample_key) != sample_key or sample_key < 0:
        raise ValueError(f"sample_key must be a non-negative integer, got {sample_key!r}")
    if int(n) != n or not 1 <= n <= DRAW_STRIDE:
        raise ValueError(f"n must be an integer in [1, {DRAW_STRIDE}], got {n!r}")
    base = int(sample_key) * DRAW_STRIDE
    return [base + i for i in range(int(n))]


def _check_seed(seed: int, what: str) -> int:
    if int(seed) != seed or seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _block_edges(size: int, grid: int) -> np.ndarray:
    """``grid + 1`` block boundaries along an axis of ``size`` pixels: ``floor(j * size / grid)``."""
    return (np.arange(grid + 1) * size) // grid


@dataclass(frozen=True)
class ProdetBlockwise:
    """Block-wise masking, ProDet Sec. 4.4 / Table 4 ("a ratio of 0.1 and 4x4 grids").

    Reading (the paper says no more than that): split the image into ``grid x grid`` blocks (boundaries
    ``floor(j*H/grid)`` and ``floor(j*W/grid)``, so every pixel is in exactly one block when H or W is not a
    multiple of ``grid``) and set ``max(1, round(ratio * grid**2))`` blocks, chosen uniformly without
    replacement from ``(seed, sample_key)``, to 0 (black) in every channel; rounding is half up. With the
    paper's ratio 0.1 and 4x4 grid that is 2 of the 16 blocks. The "random intensity" is which blocks.
    """

    ratio: float = 0.1
    grid: int = 4
    seed: int = 0

    @property
    def n_blocks(self) -> int:
        """How many blocks are masked: ``max(1, round_half_up(ratio * grid**2))``."""
        return max(1, int(np.floor(self.ratio * self.grid**2 + 0.5)))

    def blocks(self, sample_key: int) -> list[tuple[int, int]]:
        """The masked blocks ``(row, col)`` for this sample, in the order drawn."""
        rng = sample_rng(self.seed, sample_key)
        flat = rng.choice(self.grid**2, size=self.n_blocks, replace=False)
        return [(int(b) // self.grid, int(b) % self.grid) for b in flat]

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        ys, xs = _block_edges(image.shape[0], self.grid), _block_edges(image.shape[1], self.grid)
        out = image.copy()
        for r, c in self.blocks(sample_key):
            out[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = 0
        return out


@register_perturbation("prodet_blockwise")
def _prodet_blockwise(ratio: float = 0.1, grid: int = 4, seed: int = 0) -> Perturbation:
    """See :class:`ProdetBlockwise`."""
    if not 0 < float(ratio) <= 1:
        raise ValueError(f"prodet_blockwise.ratio must be in (0, 1], got {ratio}")
    if int(grid) != grid or grid < 1:
        raise ValueError(f"prodet_blockwise.grid must be a positive integer, got {grid!r}")
    return ProdetBlockwise(float(ratio), int(grid), _check_seed(seed, "prodet_blockwise.seed"))


def _range(value: float | tuple[float, float] | list[float], what: str) -> tuple[float, float]:
    """A scalar ``v`` as ``(v, v)``, or a ``[low, high]`` pair, checked ``0 <= low <= high``."""
    if np.ndim(value) == 0:
        lo = hi = float(value)  # type: ignore[arg-type]
    else:
        pair = list(value)  # type: ignore[arg-type]
        if len(pair) != 2:
            raise ValueError(f"{what} must be a number or a [low, high] pair, got {value!r}")
        lo, hi = float(pair[0]), float(pair[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{what} needs finite 0 <= low <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class ProdetNoise:
    """Additive Gaussian noise, ProDet Sec. 4.4 / Table 4 ("a random variance selected from the range of
    10 to 50").

    Reading: on the 0-255 scale, the variance (not the standard deviation) is drawn uniformly from
    ``[low, high]`` per call from ``(seed, sample_key)``; then i.i.d. ``N(0, variance)`` noise on every pixel
    and channel from the same generator; the result is rounded to the nearest integer, clipped to
    [0, 255] and cast to uint8. ``low == high`` fixes the variance (Fig. 5's intensity levels).
    """

    low: float = 10.0
    high: float = 50.0
    seed: int = 0

    def variance(self, sample_key: int) -> float:
        """The variance this sample gets (0-255 scale)."""
        return float(sample_rng(self.seed, sample_key).uniform(self.low, self.high))

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        rng = sample_rng(self.seed, sample_key)
        var = float(rng.uniform(self.low, self.high))
        noisy = image.astype(np.float64) + rng.normal(0.0, np.sqrt(var), image.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@register_perturbation("prodet_noise")
def _prodet_noise(
    variance: float | tuple[float, float] | list[float] = (10, 50), seed: int = 0
) -> Perturbation:
    """See :class:`ProdetNoise`; ``variance`` is ``[low, high]`` or a number (fixed)."""
    lo, hi = _range(variance, "prodet_noise.variance")
    return ProdetNoise(lo, hi, _check_seed(seed, "prodet_noise.seed"))


@dataclass(frozen=True)
class ProdetShift:
    """Translation, ProDet Sec. 4.4 / Table 4 ("the range of -50 to 50 on both x and y axes").

    Reading: integer ``dx`` then ``dy`` each drawn uniformly from ``[-max_shift, max_shift]`` (inclusive)
    from ``(seed, sample_key)``, in pixels of the image as given; content moves by ``(dx, dy)`` (positive
    = right / down): ``out[y, x] = image[y - dy, x - dx]``, and pixels shifted in are 0 (``cv2.warpAffine``,
    ``BORDER_CONSTANT``, nearest neighbour so integer shifts are exact). ``fixed = (dx, dy)`` overrides
    the draw (figures, Fig. 5).
    """

    max_shift: int = 50
    seed: int = 0
    fixed: tuple[int, int] | None = None

    def offset(self, sample_key: int) -> tuple[int, int]:
        """``(dx, dy)`` for this sample."""
        if self.fixed is not None:
            return self.fixed
        dx, dy = sample_rng(self.seed, sample_key).integers(-self.max_shift, self.max_shift + 1, size=2)
        return int(dx), int(dy)

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        dx, dy = self.offset(sample_key)
        h, w = image.shape[:2]
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)
        return cv2.warpAffine(
            image, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
        )


@register_perturbation("prodet_shift")
def _prodet_shift(max_shift: int = 50, shift: list[int] | None = None, seed: int = 0) -> Perturbation:
    """See :class:`ProdetShift`; ``shift: [dx, dy]`` fixes the offset (``max_shift`` is then unused)."""
    if int(max_shift) != max_shift or max_shift < 0:
        raise ValueError(f"prodet_shift.max_shift must be a non-negative integer, got {max_shift!r}")
    fixed = None
    if shift is not None:
        pair = list(shift)
        if len(pair) != 2 or any(int(v) != v for v in pair):
            raise ValueError(f"prodet_shift.shift must be an integer pair [dx, dy], got {shift!r}")
        fixed = (int(pair[0]), int(pair[1]))
    return ProdetShift(int(max_shift), _check_seed(seed, "prodet_shift.seed"), fixed)


# --------------------------------------------------------------------------------------------------
# DPL (ECCV 2024), Sec. 4 "Robustness Analysis" / Fig. 7: saturation, contrast, block-wise, noise, "five
# severity levels" each. The paper gives no parameters; these are the DeeperForensics-1.0 distortions
# (Jiang et al., CVPR 2020; released code EndlessSora/DeeperForensics-1.0, perturbation/distortions.py and
# add_distortion_to_video.py, ``get_distortion_parameter``), whose per-level parameters are
#   CS (colour saturation)  [0.4, 0.3, 0.2, 0.1, 0.0]   smaller = worse
#   CC (colour contrast)    [0.85, 0.725, 0.6, 0.475, 0.35]   smaller = worse
#   BW (block-wise)         [16, 32, 48, 64, 80]   larger = worse
#   GNC (Gaussian noise in colour components)   [0.001, 0.002, 0.005, 0.01, 0.05]   larger = worse
# See docs/methods/dpl.md, "Robustness perturbations". Deviations from the released code, each at
# most one grey level except where said: results are rounded to the nearest integer (the code truncates
# with ``astype(np.uint8)``), random draws come from ``(seed, sample_key)`` (the code uses the global
# ``random`` / ``np.random`` state), and the block-wise count and positions are as documented in
# :class:`DplBlockwise`.
# --------------------------------------------------------------------------------------------------

DPL_SATURATION_FACTORS = (0.4, 0.3, 0.2, 0.1, 0.0)
DPL_CONTRAST_FACTORS = (0.85, 0.725, 0.6, 0.475, 0.35)
DPL_BLOCK_COUNTS = (16, 32, 48, 64, 80)
DPL_NOISE_VARIANCES = (0.001, 0.002, 0.005, 0.01, 0.05)
DPL_BLOCK_SIZE = 8
DPL_BLOCK_VALUE = 128

# BT.601 (the matrix OpenCV's YCrCb conversion uses): Y = KR*R + KG*G + KB*B, Cb = (B - Y)/CB_DIV,
# Cr = (R - Y)/CR_DIV; exact inverse G = Y - G_CB*Cb - G_CR*Cr.
_KR, _KG, _KB = 0.299, 0.587, 0.114
_CR_DIV, _CB_DIV = 2 * (1 - _KR), 2 * (1 - _KB)  # 1.402, 1.772
_G_CB, _G_CR = _KB * _CB_DIV / _KG, _KR * _CR_DIV / _KG  # 0.344136, 0.714136


def _check_level(level: int, what: str) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 1 <= level <= 5:
        raise ValueError(f"{what} must be an integer severity level in 1..5, got {level!r}")
    return int(level)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (float64, HxW) of an HWC RGB image."""
    img = image.astype(np.float64)
    return _KR * img[..., 0] + _KG * img[..., 1] + _KB * img[..., 2]


@dataclass(frozen=True)
class DplSaturation:
    """Colour saturation change (DeeperForensics "CS"): YCbCr chroma scaled by ``factor``.

    The released code converts BGR to YCbCr, sets ``C <- 0.5 + (C - 0.5) * factor`` for Cb and Cr (on its
    [0, 1] studio-range scale) and converts back; luma is unchanged. With an exact inverse that is, per
    pixel and channel, ``out = Y + factor * (in - Y)`` with ``Y`` the BT.601 luma, which is what this
    computes (then rounded to the nearest integer and clipped). ``factor = 0`` gives grey ``R = G = B = Y``.
    The released code's round trip adds a chroma offset below 0.003 grey levels and truncates instead of
    rounding. Levels 1..5 use factors ``DPL_SATURATION_FACTORS = (0.4, 0.3, 0.2, 0.1, 0.0)``.
    """

    factor: float

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        y = luma(image)[..., None]
        return _to_uint8(y + self.factor * (image.astype(np.float64) - y))


@register_perturbation("dpl_saturation")
def _dpl_saturation(level: int, seed: int = 0) -> Perturbation:
    """See :class:`DplSaturation`; ``level`` 1..5 picks the factor. ``seed`` is accepted and unused (no
    randomness), so every ``dpl_*`` config takes the same keys."""
    lv = _check_level(level, "dpl_saturation.level")
    _check_seed(seed, "dpl_saturation.seed")
    return DplSaturation(DPL_SATURATION_FACTORS[lv - 1])


@dataclass(frozen=True)
class DplContrast:
    """Colour contrast change (DeeperForensics "CC"): pixel values scaled by ``factor``.

    ``center="zero"`` (default) is the released code: ``out = in * factor`` on every channel (values are
    scaled towards 0, i.e. contrast and brightness both drop), rounded to the nearest integer (the code
    truncates). ``center="mean"`` is the textbook reading: ``out = m + factor * (in - m)`` with ``m`` the
    mean of the whole image over all pixels and channels (brightness kept), rounded and clipped. Levels
    1..5 use factors ``DPL_CONTRAST_FACTORS = (0.85, 0.725, 0.6, 0.475, 0.35)``.
    """

    factor: float
    center: str = "zero"

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        img = image.astype(np.float64)
        m = img.mean() if self.center == "mean" else 0.0
        return _to_uint8(m + self.factor * (img - m))


@register_perturbation("dpl_contrast")
def _dpl_contrast(level: int, seed: int = 0, center: str = "zero") -> Perturbation:
    """See :class:`DplContrast`; ``level`` 1..5 picks the factor; ``seed`` is accepted and unused."""
    lv = _check_level(level, "dpl_contrast.level")
    _check_seed(seed, "dpl_contrast.seed")
    if center not in ("zero", "mean"):
        raise ValueError(f"dpl_contrast.center must be 'zero' or 'mean', got {center!r}")
    return DplContrast(DPL_CONTRAST_FACTORS[lv - 1], center)


@dataclass(frozen=True)
class DplBlockwise:
    """Local block-wise distortion (DeeperForensics "BW"): ``count`` grey 8x8 blocks at random positions.

    Every block is set to 128 in all channels (the released code's ``block``); blocks are drawn
    independently and may overlap. Number of blocks: ``max(1, min(H, W) // 256) * count``. The released
    code uses ``min(H, W) // 256 * count``, written for video frames (1080p: 4x), which gives no block at
    all on crops under 256 px; the ``max(1, .)`` keeps the level's count there and equals the code from
    256 px up. Positions: top-left corner ``(row, col)`` drawn uniformly from ``[0, H - 8] x [0, W - 8]``
    (every place a whole block fits; the code's ``randint(0, W - 1 - 8)`` never reaches the last row and
    column), column then row for each block in turn, from ``(seed, sample_key)``. Levels 1..5 use counts
    ``DPL_BLOCK_COUNTS = (16, 32, 48, 64, 80)``. Images under 8 px on a side are rejected.
    """

    count: int
    seed: int = 0

    def n_blocks(self, height: int, width: int) -> int:
        """How many blocks an ``height x width`` image gets."""
        return max(1, min(height, width) // 256) * self.count

    def blocks(self, sample_key: int, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left corners ``(row, col)`` of the blocks, in the order drawn."""
        b = DPL_BLOCK_SIZE
        if height < b or width < b:
            raise ValueError(f"dpl_blockwise needs images of at least {b}x{b}, got {height}x{width}")
        rng = sample_rng(self.seed, sample_key)
        xy = rng.integers(0, [width - b + 1, height - b + 1], size=(self.n_blocks(height, width), 2))
        return [(int(r), int(c)) for c, r in xy]

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        out = image.copy()
        b = DPL_BLOCK_SIZE
        for r, c in self.blocks(sample_key, image.shape[0], image.shape[1]):
            out[r : r + b, c : c + b] = DPL_BLOCK_VALUE
        return out


@register_perturbation("dpl_blockwise")
def _dpl_blockwise(level: int, seed: int = 0) -> Perturbation:
    """See :class:`DplBlockwise`; ``level`` 1..5 picks the block count."""
    lv = _check_level(level, "dpl_blockwise.level")
    return DplBlockwise(DPL_BLOCK_COUNTS[lv - 1], _check_seed(seed, "dpl_blockwise.seed"))


@dataclass(frozen=True)
class DplNoise:
    """White Gaussian noise in colour components (DeeperForensics "GNC").

    The released code adds i.i.d. ``N(0, variance)`` noise to each of Y, Cb, Cr on its studio-range
    [0, 1] scale (Y: 16..235 and Cb/Cr: 16..240 mapped by ``/255``) and converts back to RGB. In full-range
    units that is noise of standard deviation ``sqrt(variance) * 255 * 255/219`` on Y and
    ``sqrt(variance) * 255 * 255/224`` on Cb and Cr (BT.601, ``Cb = (B - Y)/1.772``, ``Cr = (R - Y)/1.402``),
    which this adds, converting back with the exact inverse (``R = Y + 1.402 Cr``,
    ``G = Y - 0.344136 Cb - 0.714136 Cr``, ``B = Y + 1.772 Cb``); rounded to the nearest integer and clipped
    to [0, 255] (the code truncates and uses OpenCV's rounded inverse coefficients). Noise is drawn from
    ``(seed, sample_key)``, shape ``(H, W, 3)`` in the order (Y, Cb, Cr). Levels 1..5 use variances
    ``DPL_NOISE_VARIANCES = (0.001, 0.002, 0.005, 0.01, 0.05)``.
    """

    variance: float
    seed: int = 0

    @property
    def luma_std(self) -> float:
        """Standard deviation of the noise on full-range Y (0-255 scale)."""
        return float(np.sqrt(self.variance) * 255 * 255 / 219)

    @property
    def chroma_std(self) -> float:
        """Standard deviation of the noise on full-range Cb and Cr (0-255 scale)."""
        return float(np.sqrt(self.variance) * 255 * 255 / 224)

    def __call__(self, image: np.ndarray, sample_key: int) -> np.ndarray:
        _check_image(image)
        n = sample_rng(self.seed, sample_key).standard_normal(image.shape)
        ny, ncb, ncr = n[..., 0] * self.luma_std, n[..., 1] * self.chroma_std, n[..., 2] * self.chroma_std
        delta = np.stack([ny + _CR_DIV * ncr, ny - _G_CB * ncb - _G_CR * ncr, ny + _CB_DIV * ncb], axis=-1)
        return _to_uint8(image.astype(np.float64) + delta)


@register_perturbation("dpl_noise")
def _dpl_noise(level: int, seed: int = 0) -> Perturbation:
    """See :class:`DplNoise`; ``level`` 1..5 picks the variance."""
    lv = _check_level(level, "dpl_noise.level")
    return DplNoise(DPL_NOISE_VARIANCES[lv - 1], _check_seed(seed, "dpl_noise.seed"))
