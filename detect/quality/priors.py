"""DFFC's static face-quality prior, quality(i) in [0, 1] (q(i) = 1 − quality(i) in Eq. 3), computed once
per (image, compression level) and cached (docs/methods/dffc.md, "Quality prior").

:func:`quality_scores` is the one entry point. ``cfg.kind`` picks the scorer:

* ``ifqa``: the paper's prior, IFQA (Jo et al., "IFQA: Interpretable Face Quality Assessment", WACV 2023;
  :mod:`detect.quality.ifqa`): the mean of its sigmoid map on the image resized to 256 px in [−1, 1].
  ``cfg.checkpoint`` = the authors' ``IFQA_Metric.pth`` (required: nothing is downloaded).
  ``cfg.divide_by`` (1, default, or 3): 3 divides the score by 3, as an early version of the authors'
  test script did (it summed the one-channel map and divided by 3·256·256); quality then lies in
  [0, 1/3], which for DFFC's ranking by d + α_f·q amounts to α_f / 3. The cache holds the undivided
  score, so switching it recomputes nothing.
* ``clip_iqa``: CLIP-IQA as in DPL's VQI (:mod:`detect.quality.clip_indicators`, prompts
  :data:`~detect.quality.clip_indicators.VQI_PROMPTS`, RN50 with the attention pool's positional embedding
  dropped); quality = score / 100. ``cfg.checkpoint`` = a local open_clip RN50 file (``cfg.model``,
  default ``RN50``; ``cfg.quick_gelu`` for OpenAI's own weights), or ``cfg.allow_random: true`` for the
  tiny random CLIP (synthetic data and tests only: its scores mean nothing). ``cfg.image_size``: the
  side images are resized to (default: the model's own, 224 for RN50).
* ``classical``: :mod:`detect.quality.classical`, a sharpness × JPEG-blockiness score without weights.

Every kind goes through :class:`detect.quality.score_cache.ScoreCache` under ``cache_dir``, with scorer
name ``dffc-quality-<kind>`` and a version hash of what the score depends on (checkpoint path, size and
mtime; model and prompts; the classical constants; the preprocessing). The level is each row's
``compression``; a level ending in ``jpeg<q>`` (e.g. ``c23+jpeg75``) is scored after a JPEG round trip at
quality q. Models are loaded only when some score is missing. ``cfg.batch_size`` (default 32) sets the
scoring batch.

The result (:class:`QualityResult`) carries ``scores`` (np.ndarray, one per table row, in row order) and
``images_per_s`` (of the images scored in this call, image reading included; None when all were
cached); ``np.asarray(result)`` is the scores. The speed is also logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from detect.data.images import read_rgb
from detect.data.jpeg import jpeg_compress
from detect.quality import classical as classical_mod
from detect.quality import ifqa as ifqa_mod
from detect.quality.classical import classical_quality_batch
from detect.quality.clip_indicators import (
    VQI_PROMPTS,
    drop_attnpool_positional_embedding,
    load_clip,
    score_images,
)
from detect.quality.score_cache import ScoreCache, ScoreKey, keys_for_table

log = logging.getLogger(__name__)

KINDS = ("ifqa", "clip_iqa", "classical")
CHECKPOINT_KEY = "curriculum.quality.checkpoint"
PRIOR_VERSION = 1  # bump when the scoring pipeline changes: every cached prior is then recomputed
_JPEG_LEVEL = re.compile(r"(?:^|\+)jpeg(\d{1,3})$")


class QualityWeightsUnavailable(FileNotFoundError):
    """The configured quality prior needs weights that are not on this machine (nothing is downloaded)."""


@dataclass
class QualityResult:
    """``scores``: quality in [0, 1] per table row; ``images_per_s``: the scoring speed of this call's
    newly scored images (None if every score was cached); ``n_scored`` / ``n_cached``: how many rows'
    (image, level) were computed now / found in the cache."""

    scores: np.ndarray
    images_per_s: float | None
    kind: str
    scorer: str
    version: str
    n_scored: int
    n_cached: int
    info: dict[str, Any] = field(default_factory=dict)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.scores if dtype is None else self.scores.astype(dtype)

    def __len__(self) -> int:
        return len(self.scores)


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping) or hasattr(cfg, "get"):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None else value


def _hash(desc: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _file_id(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _unavailable(kind: str, what: str) -> QualityWeightsUnavailable:
    offline = {
        "classical": "classical (no weights)",
        "clip_iqa": "clip_iqa (a local CLIP RN50 checkpoint; allow_random: true only on synthetic data)",
    }
    others = " or ".join(v for k, v in offline.items() if k != kind)
    return QualityWeightsUnavailable(
        f"the {kind} quality prior needs {what}; weights cannot be downloaded here, so set "
        f"{CHECKPOINT_KEY} to a local file, or use an offline prior: curriculum.quality.kind={others}"
    )


def _checkpoint(cfg: Any, kind: str, what: str) -> str | None:
    ckpt = _get(cfg, "checkpoint")
    if ckpt is None or str(ckpt) == "":
        return None
    path = os.path.abspath(os.path.expanduser(os.fspath(ckpt)))
    if not os.path.isfile(path):
        raise _unavailable(kind, f"{what}, and {CHECKPOINT_KEY}={path} does not exist")
    return path


def _load(key: ScoreKey) -> np.ndarray:
    img = read_rgb(key.path)
    m = _JPEG_LEVEL.search(key.level)
    return jpeg_compress(img, int(m.group(1))) if m else img


class _Prior:
    """One kind's scorer: ``name``, ``version``, ``raw(images) -> scores`` (lazy model), ``to_quality``."""

    name: str
    version: str
    info: dict[str, Any]

    def raw(self, images: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def to_quality(self, raw: np.ndarray) -> np.ndarray:
        return raw


class _ClassicalPrior(_Prior):
    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.name = "dffc-quality-classical"
        self.version = _hash({"prior": PRIOR_VERSION, "classical": classical_mod.PARAMS})
        self.info = {"params": dict(classical_mod.PARAMS)}

    def raw(self, images: list[np.ndarray]) -> np.ndarray:
        return classical_quality_batch(images)


class _IFQAPrior(_Prior):
    def __init__(self, cfg: Any, device: torch.device) -> None:
        path = _checkpoint(cfg, "ifqa", "the authors' IFQA_Metric.pth (Jo et al., WACV 2023)")
        if path is None:
            raise _unavailable("ifqa", f"the authors' IFQA_Metric.pth, but {CHECKPOINT_KEY} is not set")
        self.divide_by = int(_get(cfg, "divide_by", 1))
        if self.divide_by not in (1, 3):
            raise ValueError(
                f"curriculum.quality.divide_by={self.divide_by}: use 1 (the mean of IFQA's map) or 3 "
                "(the early test script)"
            )
        self.path, self.device = path, device
        self.model: ifqa_mod.IFQA | None = None
        self.name = "dffc-quality-ifqa"
        self.version = _hash(
            {"prior": PRIOR_VERSION, "checkpoint": _file_id(path), "input": "cv2-linear-256, x/127.5-1"}
        )
        self.info = {"checkpoint": path, "divide_by": self.divide_by}

    def raw(self, images: list[np.ndarray]) -> np.ndarray:
        if self.model is None:
            self.model = ifqa_mod.load_ifqa(self.path, self.device)
        x = ifqa_mod.preprocess(images)
        return ifqa_mod.ifqa_score(self.model, x).double().cpu().numpy()

    def to_quality(self, raw: np.ndarray) -> np.ndarray:
        return raw / self.divide_by


class _ClipIQAPrior(_Prior):
    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.model_name = str(_get(cfg, "model", "RN50"))
        self.path = _checkpoint(cfg, "clip_iqa", f"a local open_clip {self.model_name} checkpoint")
        self.allow_random = bool(_get(cfg, "allow_random", False))
        if self.path is None and not self.allow_random:
            raise _unavailable(
                "clip_iqa",
                f"a local open_clip {self.model_name} checkpoint, but {CHECKPOINT_KEY} is not set (or "
                "allow_random: true for the tiny random CLIP on synthetic data)",
            )
        self.quick_gelu = bool(_get(cfg, "quick_gelu", False))
        self.seed = int(_get(cfg, "seed", 0))
        self.image_size = _get(cfg, "image_size")
        self.device = device
        self.loaded: tuple[Any, Any, int] | None = None
        self.name = "dffc-quality-clip_iqa"
        desc = {
            "prior": PRIOR_VERSION,
            "model": self.model_name if self.path else "tiny-rn-random",
            "checkpoint": _file_id(self.path) if self.path else {"random_seed": self.seed},
            "quick_gelu": self.quick_gelu,
            "prompts": list(VQI_PROMPTS),
            "image_size": self.image_size,
            "attnpool_positional_embedding": "dropped",
        }
        self.version = _hash(desc)
        self.info = {"model": desc["model"], "checkpoint": self.path, "random_init": self.path is None}

    def raw(self, images: list[np.ndarray]) -> np.ndarray:
        if self.loaded is None:
            model, norm, tok = load_clip(
                self.model_name, self.path, self.allow_random, self.seed, quick_gelu=self.quick_gelu
            )
            drop_attnpool_positional_embedding(model)
            size = int(self.image_size) if self.image_size is not None else int(norm["image_size"])
            self.loaded = (model.to(self.device), tok, size)
        model, tok, size = self.loaded
        scores, _ = score_images(model, tok, images, VQI_PROMPTS, size=size, batch_size=len(images))
        return scores

    def to_quality(self, raw: np.ndarray) -> np.ndarray:
        return raw / 100.0


_PRIORS = {"ifqa": _IFQAPrior, "clip_iqa": _ClipIQAPrior, "classical": _ClassicalPrior}


def quality_scores(
    table: pd.DataFrame,
    cfg: Any,
    cache_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
) -> QualityResult:
    """Quality in [0, 1] for every row of ``table`` (columns ``path``, ``compression``) from the prior
    ``cfg.kind`` (module docstring), computed once per (image, level) through the score cache in
    ``cache_dir``. Raises :class:`QualityWeightsUnavailable` (naming ``curriculum.quality.checkpoint``)
    when the kind needs a checkpoint that is not there."""
    kind = str(_get(cfg, "kind", ""))
    if kind not in _PRIORS:
        raise ValueError(
            f"curriculum.quality.kind={kind!r}: use one of {', '.join(KINDS)} (auto/none are resolved by the "
            "caller)"
        )
    for col in ("path", "compression"):
        if col not in table.columns:
            raise KeyError(f"the quality prior needs a sample table with a {col!r} column")
    prior = _PRIORS[kind](cfg, torch.device(device))
    keys = keys_for_table(table, prior.name, None, prior.version)
    spent = {"n": 0, "s": 0.0}

    def scorer(batch: list[ScoreKey]) -> np.ndarray:
        t0 = time.perf_counter()
        out = prior.raw([_load(k) for k in batch])
        spent["n"] += len(batch)
        spent["s"] += time.perf_counter() - t0
        return out

    raw = ScoreCache(Path(cache_dir)).get_or_compute(
        keys, scorer, batch_size=int(_get(cfg, "batch_size", 32)), key_inputs=True
    )
    scores = np.clip(prior.to_quality(np.asarray(raw, dtype=np.float64)), 0.0, 1.0)
    ips = spent["n"] / spent["s"] if spent["n"] and spent["s"] > 0 else None
    n_unique = len(set(keys))
    if spent["n"]:
        log.info(
            "quality prior %s: scored %d images at %.1f images/s (%d cached)",
            kind,
            spent["n"],
            ips or 0.0,
            n_unique - spent["n"],
        )
    return QualityResult(
        scores=scores,
        images_per_s=ips,
        kind=kind,
        scorer=prior.name,
        version=prior.version,
        n_scored=spent["n"],
        n_cached=n_unique - spent["n"],
        info=prior.info,
    )
