"""DPL's step counts from its CLIP indicators (Sec. 3.1–3.2; docs/methods/dpl.md, "Indicators").

:class:`StepIndicators` holds the frozen CLIP model(s) outside the detector's parameters (they are not
trained and not checkpointed), scores normalised detector inputs (VQI: "Good photo." / "Bad photo.";
FII: "genuine face." / "manipulated face.", the paper's strings, or ``fii_prompts``, e.g. the code's
without full stops; Eq. 1) and bins the scores into step counts k1 (VQI) and k2 (FII): by equal-count
quantiles of the training set's scores (paper) or by the fixed intervals (code).

Training images are scored once through :class:`detect.quality.score_cache.ScoreCache`, keyed by the
image file and its compression level (the stored compression, or ``<compression>+jpeg<q>`` for a
multi-quality version compressed again at quality q); perturbed test images are scored online in batches.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.modified_resnet import ModifiedResNet

from detect.quality.binning import DESCENDING, QuantileBinner, bin_by_intervals
from detect.quality.clip_indicators import (
    FII_PROMPTS,
    VQI_PROMPTS,
    clip_iqa_score,
    drop_attnpool_positional_embedding,
    load_clip,
    text_embeddings,
)
from detect.quality.score_cache import ScoreCache, ScoreKey

KINDS = ("vqi", "fii")


class StepIndicators:
    """VQI and FII on one CLIP model (paper) or two (``fii_model``: the code's ViT-B/32), with binning.

    ``mean``/``std``: the detector input's normalisation, undone before CLIP's own. With no checkpoint,
    ``allow_random`` builds the tiny randomly initialised CLIP of :mod:`detect.quality.clip_indicators` (the
    synthetic benchmark and tests only); quantile binning is then forced so every step count occurs.
    """

    def __init__(
        self,
        model: str = "RN50",
        checkpoint: str | None = None,
        fii_model: str | None = None,
        fii_checkpoint: str | None = None,
        binning: str = "quantile",
        n_steps: int = 5,
        allow_random: bool = False,
        quick_gelu: bool = False,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        seed: int = 0,
        fii_prompts: Sequence[str] = FII_PROMPTS,
    ) -> None:
        if binning not in ("quantile", "intervals"):
            raise ValueError(f"method.indicators.binning={binning!r}; use 'quantile' (paper) or 'intervals'")
        vqi = load_clip(model, checkpoint, allow_random, seed, quick_gelu=quick_gelu)
        if isinstance(getattr(vqi[0], "visual", None), ModifiedResNet):
            drop_attnpool_positional_embedding(vqi[0])
        if fii_model is None or (vqi[1]["random_init"] and fii_checkpoint is None):
            fii = vqi
        else:
            fii = load_clip(fii_model, fii_checkpoint, allow_random, seed + 1, quick_gelu=quick_gelu)
        self.models = {"vqi": vqi, "fii": fii}
        self.fii_prompts = tuple(str(p) for p in fii_prompts)
        if len(self.fii_prompts) != 2:
            raise ValueError(
                f"method.indicators.fii_prompts needs two prompts (genuine first, manipulated second), "
                f"got {list(fii_prompts)}"
            )
        self.random_init = bool(vqi[1]["random_init"])
        if self.random_init and binning != "quantile":
            binning = "quantile"  # the fixed intervals would put a random CLIP's scores in one bin
        self.binning, self.n_steps = binning, int(n_steps)
        if binning == "intervals" and self.n_steps != 5:
            raise ValueError("the fixed intervals define 5 steps; use binning=quantile for another count")
        self.binners: dict[str, QuantileBinner] = {}
        self.in_mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.in_std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._text: dict[str, torch.Tensor] = {}
        self.counts = {"scored": 0, "cached": 0, "seconds": 0.0}

    # -- scores -------------------------------------------------------------------------------------
    def version(self) -> str:
        """What a cached score depends on besides the image: models, checkpoints, prompts, input transform."""
        desc = {
            k: {kk: m[1][kk] for kk in ("model_name", "checkpoint", "image_size")}
            for k, m in self.models.items()
        }
        desc["prompts"] = [VQI_PROMPTS, self.fii_prompts]
        desc["input"] = [self.in_mean.flatten().tolist(), self.in_std.flatten().tolist()]
        return hashlib.sha1(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def _to(self, device: torch.device) -> None:
        for model, _, _ in self.models.values():
            if next(model.parameters()).device != device:
                model.to(device)
                self._text.clear()

    def _clip_input(self, images: torch.Tensor, size: int) -> torch.Tensor:
        x = images.float() * self.in_std.to(images.device) + self.in_mean.to(images.device)
        x = x.clamp(0.0, 1.0)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(OPENAI_DATASET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_DATASET_STD, device=x.device).view(1, 3, 1, 1)
        return (x.clamp(0.0, 1.0) - mean) / std

    @torch.no_grad()
    def embed(self, images: torch.Tensor, kind: str = "vqi") -> torch.Tensor:
        """The CLIP image embedding of normalised detector inputs [N, 3, H, W] (Table 9's CLIP feature)."""
        self._to(images.device)
        model, norm, _ = self.models[kind]
        return model.encode_image(self._clip_input(images, norm["image_size"])).float()

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 2] (VQI, FII) scores in [0, 100] (Eq. 1) of normalised detector inputs [N, 3, H, W]."""
        self._to(images.device)
        out = []
        embedded: dict[int, torch.Tensor] = {}
        for kind, prompts in zip(KINDS, (VQI_PROMPTS, self.fii_prompts), strict=True):
            model, _, tokenizer = self.models[kind]
            if kind not in self._text:
                self._text[kind] = text_embeddings(model, tokenizer, prompts)
            if id(model) not in embedded:
                embedded[id(model)] = self.embed(images, kind)
            out.append(clip_iqa_score(embedded[id(model)], self._text[kind]))
        return torch.stack(out, dim=1)

    # -- steps --------------------------------------------------------------------------------------
    def fit(self, train_scores: np.ndarray) -> None:
        """Quantile binning: fit each indicator's edges on the training scores [M, 2] (intervals: no-op)."""
        if self.binning == "quantile":
            for j, kind in enumerate(KINDS):
                self.binners[kind] = QuantileBinner().fit(
                    train_scores[:, j], self.n_steps, descending=DESCENDING[kind]
                )

    def steps(self, scores: np.ndarray | torch.Tensor) -> np.ndarray:
        """Step counts [N, 2] (k1 from VQI, k2 from FII), each in 1..n_steps."""
        s = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
        if self.binning == "intervals":
            return np.stack([bin_by_intervals(s[:, j], kind) for j, kind in enumerate(KINDS)], axis=1)
        if set(self.binners) != set(KINDS):
            raise RuntimeError("quantile binning is not fitted: score the training set first")
        return np.stack([self.binners[kind](s[:, j]) for j, kind in enumerate(KINDS)], axis=1)

    def state(self) -> dict:
        """The fitted bins (saved in the checkpoint's extra state)."""
        return {k: b.to_dict() for k, b in self.binners.items()}

    def load_state(self, state: Mapping) -> None:
        self.binners = {k: QuantileBinner.from_dict(v) for k, v in state.items()}

    def describe(self) -> dict[str, Any]:
        """What results.json records about the indicators."""
        return {
            "vqi_model": self.models["vqi"][1]["model_name"],
            "vqi_checkpoint": self.models["vqi"][1]["checkpoint"],
            "fii_model": self.models["fii"][1]["model_name"],
            "fii_checkpoint": self.models["fii"][1]["checkpoint"],
            "fii_prompts": list(self.fii_prompts),
            "random_init": self.random_init,
            "binning": self.binning,
            "bins": self.state(),
            "scored_images": self.counts["scored"],
            "cached_images": self.counts["cached"],
            "scoring_images_per_s": (
                self.counts["scored"] / self.counts["seconds"] if self.counts["scored"] else None
            ),
        }

    # -- the training set ---------------------------------------------------------------------------
    def score_items(
        self,
        cache: ScoreCache,
        items: Sequence[tuple[str, str, int | None]],
        load: Callable[[str, int | None], torch.Tensor],
        device: torch.device,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Scores [M, 2] of (path, compression, JPEG quality or None) items, through ``cache``: only
        missing ones are computed (``load(path, quality)`` gives the normalised detector input)."""
        version = self.version()
        quality = {}
        keys: dict[str, list[ScoreKey]] = {k: [] for k in KINDS}
        for path, compression, q in items:
            level = str(compression) if q is None else f"{compression}+jpeg{int(q)}"
            for kind in KINDS:
                key = ScoreKey.for_file(path, f"dpl-{kind}", level, version)
                keys[kind].append(key)
                quality[key] = q
        stash: dict[tuple[str, str], float] = {}
        spent = {"n": 0, "s": 0.0}

        def scorer(kind: str) -> Callable[[list[ScoreKey]], np.ndarray]:
            def run(batch: list[ScoreKey]) -> np.ndarray:
                if kind == "fii" and all((k.path, k.level) in stash for k in batch):
                    return np.array([stash[(k.path, k.level)] for k in batch])
                t0 = time.perf_counter()
                x = torch.stack([load(k.path, quality[k]) for k in batch]).to(device)
                s = self.scores(x).double().cpu().numpy()
                spent["n"] += len(batch)
                spent["s"] += time.perf_counter() - t0
                for k, f in zip(batch, s[:, 1], strict=True):
                    stash[(k.path, k.level)] = float(f)
                return s[:, KINDS.index(kind)]

            return run

        out = np.stack(
            [
                cache.get_or_compute(
                    keys[kind], scorer(kind), batch_size=batch_size, loader=None, key_inputs=True
                )
                for kind in KINDS
            ],
            axis=1,
        )
        self.counts["scored"] += spent["n"]
        self.counts["cached"] += len(items) - spent["n"]
        self.counts["seconds"] += spent["s"]
        return out
