"""The figures of ProDet (Cheng et al., "Can We Leave Deepfake Data Behind in Training Deepfake Detector?",
NeurIPS 2024) from trained runs, as PNGs:

- Fig. 4a (``toy``, Sec. 4.5 "Feature Organization"): the actual 2-d pooled features GAP(F ⊙ M) of a toy
  model (trained with ``method.feature_dim=2``) for held-out anchor tuples, coloured by anchor;
- Fig. 4b (``pd``, Sec. 4.5 "Feature Regularity", appendix 7.4): the same points coloured by their
  perturbed distance PD, the title giving the mPD; each image gets ``draws`` perturbed versions, each a
  random one of the three unseen perturbations of Sec. 4.4 at a random intensity;
- Fig. 5 (``robustness``, Sec. 4.4): frame AUC on the in-domain test set against the intensity of each
  perturbation (block-wise masking ratio, Gaussian-noise variance, shift in pixels);
- Fig. 8 (``gradcam``, appendix 7.6): Grad-CAM (Selvaraju et al., ICCV 2017) of the final classifier's
  fake logit with respect to the reduced feature map F, on held-out tuples (columns real, SBI, CBI,
  deepfake);
- Fig. 9 (``tsne``, appendix 7.7.1): t-SNE (van der Maaten & Hinton, JMLR 2008) of the pooled features of
  held-out tuples;
- Fig. 10 (``confidence``, appendix 7.7.2): per test set, histograms of the predicted confidence P(fake)
  and of the fake logit (the 2-way logit difference l_fake - l_real), real vs fake, read from the
  per-frame predictions the trainer saved.

Data gathering (``load_run``, ``held_out_tuples``, ``pooled_features``, ``perturbed_distances``,
``robustness_curves``, ``grad_cam``, ``tsne_embedding``, ``confidence_scores``) is apart from plotting
(``plot_*``, each writing one PNG and returning its path); ``make_figures`` chains them for
``scripts/prodet_figures.py``. Several runs (e.g. ProDet beside VHT) are drawn side by side, as in the
paper, on the same held-out tuples (built from the first run's data) and the same perturbation draws.
Plots use matplotlib's object API on the Agg canvas (no pyplot, no global backend switch); everything is
seeded.

Readings where the paper says no more: held-out tuples are the aligned real/SBI/CBI/deepfake tuples of
``AnchorTupleDataset`` without augmentation on the validation or test split (the deepfake column cycles
through the manipulations); Fig. 5's shift level ``s`` moves the image by ``(s, s)`` pixels (the paper's
random shift is "on both x and y axes"), its noise level is a fixed variance (0-255 scale) and its
block-wise level a masked ratio of a 4x4 grid; level 0 is the clean test set. Fig. 10's logit is
``log p - log(1 - p)`` of the saved P(fake), which equals l_fake - l_real of a 2-way softmax exactly
until p rounds to 1 in float32 (|logit| above about 16.6): those are counted as saturated, and
``recompute_logits`` takes them from the model instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as nnf
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from detect.data.anchor_tuples import TUPLE_ANCHORS, AnchorTupleDataset
from detect.data.protocol import load_sets, prepare_data, protocol_sets
from detect.data.transforms import Pipeline, build_pipeline
from detect.engine.checkpoint import BEST, LAST, load_checkpoint
from detect.engine.method_builder import build_method
from detect.engine.method_contract import Method
from detect.engine.predict_loop import map_table, predict_table
from detect.engine.runtime import Runtime, setup_runtime
from detect.evaluation.metrics import frame_metrics
from detect.evaluation.perturbations import Perturbation, build_perturbation, draw_keys
from detect.evaluation.predictions import read_predictions
from detect.evaluation.regularity import perturbed_distance
from detect.utils.io import atomic_write

log = logging.getLogger(__name__)

FIGURES = ("toy", "pd", "robustness", "gradcam", "tsne", "confidence")
FILENAMES = {
    "toy": "fig4a_toy.png",
    "pd": "fig4b_pd.png",
    "robustness": "fig5_robustness.png",
    "gradcam": "fig8_gradcam.png",
    "tsne": "fig9_tsne.png",
    "confidence": "fig10_confidence.png",
}
ANCHOR_LABELS = {"real": "Real", "sbi": "Blendfake (SBI)", "cbi": "Blendfake (CBI)", "deepfake": "Deepfake"}
ANCHOR_COLORS = {"real": "tab:green", "sbi": "tab:blue", "cbi": "tab:orange", "deepfake": "tab:red"}
# Sec. 4.4: the three unseen perturbations at the random intensities of Table 4 (the registry's defaults:
# block-wise ratio 0.1 of a 4x4 grid, noise variance U(10, 50), shift U{-50..50} on both axes).
PD_PERTURBATIONS = ("prodet_blockwise", "prodet_noise", "prodet_shift")
# Fig. 5's intensity levels per perturbation (0: clean).
FIG5_LEVELS: dict[str, tuple[float, ...]] = {
    "blockwise": (0.0, 0.1, 0.2, 0.3),
    "noise": (0, 10, 20, 30, 40, 50),
    "shift": (0, 10, 20, 30, 40, 50),
}
FIG5_TITLES = {
    "blockwise": "Block-wise (masked ratio)",
    "noise": "Noise (variance)",
    "shift": "Shift (pixels)",
}
DPI = 150


# -- runs -------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A trained run rebuilt from its checkpoint (eval mode, on ``runtime.device``)."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig
    method: Method
    pipeline: Pipeline
    runtime: Runtime

    @property
    def label(self) -> str:
        return f"{self.config.method.get('name', type(self.method).__name__)} ({self.run_dir.name})"

    @property
    def in_domain(self) -> str:
        """The name the in-domain test set has in ``results.json`` and ``predictions/``."""
        return str(self.config.dataset.get("short", self.config.dataset.name))

    def tables(self, roles: tuple[str, ...] = ("val", "test")) -> dict[str, pd.DataFrame]:
        """The run's protocol tables (``val``, ``test/<name>``) for ``roles``."""
        return load_sets(protocol_sets(self.config, roles=roles), str(self.config.data.kind))


def find_checkpoint(run_dir: str | Path) -> Path:
    """``run_dir/checkpoints/best.pt`` (the validation-selected model the run was tested with), else
    ``last.pt`` (a run without a validation split, or whose validation metric was never defined)."""
    folder = Path(run_dir) / "checkpoints"
    for name in (BEST, LAST):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{run_dir} has no checkpoints/{BEST} or checkpoints/{LAST}: pass the folder of a finished run, "
        "outputs/runs/<run_name> (python train.py ... run_name=<run_name>)"
    )


def load_run(run_dir: str | Path, device: str = "auto", precision: str = "fp32") -> Run:
    """Rebuild a run's method from its checkpoint (strict) with the run's saved config; the synthetic
    benchmark is regenerated into the run's cache folder if it has gone."""
    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    state = load_checkpoint(ckpt, "cpu")
    cfg = OmegaConf.create(state["config"])
    if cfg.data.kind == "synthetic" and not (cfg.data.get("root") and Path(cfg.data.root).is_dir()):
        prepare_data(cfg)
    runtime_cfg = OmegaConf.merge(
        cfg.runtime, {"device": device, "distributed": False, "precision": precision, "threads": None}
    )
    runtime = setup_runtime(runtime_cfg)
    method = build_method(cfg.method, cfg.backbone)
    method.load_state_dict(state["method"], strict=True)
    method.to(runtime.device).eval()
    return Run(run_dir, ckpt, cfg, method, build_pipeline(cfg.input, None), runtime)


# -- held-out anchor tuples -------------------------------------------------------------------------
@dataclass
class AnchorTuples:
    """Held-out aligned tuples, flattened tuple-major: ``raw[j]`` is an HWC uint8 image (before resizing),
    ``anchors[j]`` its anchor (index into ``TUPLE_ANCHORS``), ``tuples[j]`` its tuple's dataset index."""

    raw: list[np.ndarray]
    anchors: np.ndarray
    tuples: np.ndarray

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def n_tuples(self) -> int:
        return len(np.unique(self.tuples))

    def inputs(self, pipeline: Pipeline, rows: Sequence[int] | None = None) -> torch.Tensor:
        """The network inputs [n, 3, H, W] of ``rows`` (all by default), no augmentation."""
        rows = range(len(self.raw)) if rows is None else rows
        return torch.stack([pipeline(self.raw[j], augment=False) for j in rows])


def held_out_tuples(run: Run, n_tuples: int, split: str = "test", seed: int = 0) -> AnchorTuples:
    """``n_tuples`` real/SBI/CBI/deepfake tuples of the run's validation (``split="val"``) or in-domain test
    split (``"test"``), chosen at random with ``seed``; blends are seeded by ``(seed, tuple)``."""
    if n_tuples < 1:
        raise ValueError(f"n_tuples must be >= 1, got {n_tuples}")
    if split not in ("val", "test"):
        raise ValueError(f"held-out tuples come from the 'val' or 'test' split, got {split!r}")
    key = "val" if split == "val" else f"test/{run.in_domain}"
    tables = run.tables(("val",) if split == "val" else ("test",))
    if key not in tables:
        raise KeyError(f"{run.run_dir}: its protocol has no {key} set (has {sorted(tables)})")
    method = run.method
    dataset = AnchorTupleDataset(
        tables[key],
        run.pipeline,
        anchors=TUPLE_ANCHORS,
        blend=getattr(method, "blend_cfg", None),
        cache_dir=run.config.paths.cache_dir,
        train=False,
        seed=seed,
        landmark_points=int(getattr(method, "landmark_points", 68)),
    )
    n = min(int(n_tuples), len(dataset))
    if n < n_tuples:
        log.warning("%s has %d tuples, fewer than the %d asked", key, len(dataset), n_tuples)
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    raw, anchors, tuples = [], [], []
    for i in chosen:
        images, _ = dataset.raw_tuple(int(i))
        raw += images
        anchors += dataset.anchor_ids.tolist()
        tuples += [int(i)] * len(images)
    return AnchorTuples(raw, np.asarray(anchors, np.int64), np.asarray(tuples, np.int64))


# -- features and perturbed distance ----------------------------------------------------------------
@torch.no_grad()
def _map_images(
    run: Run,
    fn: Callable[[Method, torch.Tensor], torch.Tensor],
    make: Callable[[int], torch.Tensor],
    n: int,
    batch_size: int,
) -> np.ndarray:
    """``fn(method, images)`` over ``n`` images made by ``make(j)``, in batches, as float32 numpy."""
    out = []
    for start in range(0, n, batch_size):
        x = torch.stack([make(j) for j in range(start, min(n, start + batch_size))]).to(run.runtime.device)
        with run.runtime.autocast():
            out.append(fn(run.method, x).float().cpu().numpy())
    return np.concatenate(out)


def _pooled(method: Method, images: torch.Tensor) -> torch.Tensor:
    if not callable(getattr(method, "features", None)):
        raise TypeError(f"{type(method).__name__} has no features(): these figures need a ProDet run")
    return method.features(images)


def pooled_features(run: Run, tuples: AnchorTuples, batch_size: int = 64) -> np.ndarray:
    """The pooled final feature GAP(F ⊙ M) of every tuple image [M, C] (``ProDet.features``)."""
    return _map_images(
        run, _pooled, lambda j: run.pipeline(tuples.raw[j], augment=False), len(tuples), batch_size
    )


def require_2d(run: Run, features: np.ndarray) -> None:
    """Figs. 4a/4b plot the actual features: they must be 2-d (a toy model)."""
    if features.ndim != 2 or features.shape[1] != 2:
        raise ValueError(
            f"{run.label}: the pooled features are {features.shape[-1]}-d, but Figs. 4a/4b plot the actual "
            "2-d features of a toy model; train one with method.feature_dim=2 (e.g. `python train.py "
            "method=prodet method.feature_dim=2 run_name=prodet_toy`) or draw this run with the tsne figure"
        )


def random_perturbation(seed: int = 0) -> Perturbation:
    """Sec. 4.4's "random perturbation at a random intensity": per sample key, one of block-wise masking,
    Gaussian noise or shift, chosen from ``(seed, key)``, each drawing its intensity from ``(seed, key)``."""
    kinds = [build_perturbation({"name": name, "seed": seed}) for name in PD_PERTURBATIONS]

    def fn(image: np.ndarray, key: int) -> np.ndarray:
        pick = int(np.random.default_rng(np.random.SeedSequence([seed, int(key), 1])).integers(len(kinds)))
        return kinds[pick](image, key)

    return fn


def perturbed_distances(
    run: Run,
    tuples: AnchorTuples,
    clean: np.ndarray,
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """PD of every tuple image (appendix 7.4, Eq. 9; ``detect.evaluation.regularity``): ``draws`` perturbed
    versions of image ``j`` use keys ``draw_keys(j, draws)``; ``clean`` are its features [M, C] (F_std is
    taken over them: the plotted distribution). mPD is the mean of the result."""
    pert = random_perturbation(seed)
    perturbed = []
    for i in range(draws):

        def make(j: int, i: int = i) -> torch.Tensor:
            return run.pipeline(pert(tuples.raw[j], draw_keys(j, draws)[i]), augment=False)

        perturbed.append(_map_images(run, _pooled, make, len(tuples), batch_size))
    pd_ = perturbed_distance(torch.from_numpy(clean), torch.from_numpy(np.stack(perturbed, 1)))
    return pd_.numpy()


# -- robustness (Fig. 5) ----------------------------------------------------------------------------
def level_perturbation(kind: str, level: float, seed: int = 0) -> dict | None:
    """The perturbation config of Fig. 5's ``kind`` at ``level`` (None at level 0: the clean set)."""
    if kind not in FIG5_LEVELS:
        raise ValueError(f"unknown Fig. 5 perturbation {kind!r}; choose from {sorted(FIG5_LEVELS)}")
    if level == 0:
        return None
    if kind == "blockwise":
        return {"name": "prodet_blockwise", "ratio": float(level), "grid": 4, "seed": seed}
    if kind == "noise":
        return {"name": "prodet_noise", "variance": float(level), "seed": seed}
    return {"name": "prodet_shift", "shift": [int(level), int(level)], "seed": seed}


def robustness_curves(
    run: Run,
    levels: Mapping[str, Sequence[float]] = FIG5_LEVELS,
    test_set: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Frame AUC of ``test_set`` (the in-domain test set by default) per kind and level: ``{kind: [AUC per
    level]}``. Level 0 is the clean set, predicted once, so it equals the run's own test AUC."""
    name = test_set or run.in_domain
    tables = run.tables(("test",))
    if f"test/{name}" not in tables:
        raise KeyError(f"{run.run_dir}: no test set {name!r} (has {[k[5:] for k in tables]})")
    table = tables[f"test/{name}"]
    cache: dict = {}

    def auc(perturbation: dict | None) -> float:
        key = json.dumps(perturbation, sort_keys=True)
        if key not in cache:
            desc = "clean" if perturbation is None else perturbation["name"]
            preds = predict_table(
                run.method,
                table,
                run.pipeline,
                run.runtime,
                batch_size,
                num_workers,
                perturbation,
                desc=desc,
                progress=False,
            )
            cache[key] = frame_metrics(preds["label"].to_numpy(), preds["prob"].to_numpy())["auc"]
        return cache[key]

    return {
        kind: np.array([auc(level_perturbation(kind, lv, seed)) for lv in lvls])
        for kind, lvls in levels.items()
    }


# -- Grad-CAM (Fig. 8) ------------------------------------------------------------------------------
def grad_cam(method: Method, images: torch.Tensor, target: int = 1) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) of the final classifier's logit ``target`` (1: fake) with
    respect to ProDet's reduced feature map F: channel weights are the spatially averaged gradients, the
    map is ReLU(Σ_c w_c F_c), bilinearly upsampled to the image size and divided by its maximum.
    Returns [N, H, W] in [0, 1] (all zeros where the map is)."""
    for part in ("feature_map", "attend", "classifier"):
        if not hasattr(method, part):
            raise TypeError(f"Grad-CAM needs ProDet's {part}; {type(method).__name__} has none")
    was_training = method.training
    method.eval()
    with torch.enable_grad():
        feature = method.feature_map(images).detach().float().requires_grad_(True)
        logits = method.classifier(method.attend(feature)[0])
        (grad,) = torch.autograd.grad(logits[:, target].sum(), feature)
    method.train(was_training)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * feature.detach()).sum(dim=1, keepdim=True))
    cam = nnf.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).clamp(0, 1).detach().cpu()


def gradcam_maps(run: Run, tuples: AnchorTuples, n_tuples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_tuples`` tuples as displayed images [T, A, H, W, 3] (float in [0, 1], what the network
    sees) and their Grad-CAM maps [T, A, H, W]."""
    per = len(TUPLE_ANCHORS)
    rows = list(range(min(n_tuples * per, len(tuples))))
    x = tuples.inputs(run.pipeline, rows)
    cams = torch.cat(
        [grad_cam(run.method, x[s : s + 32].to(run.runtime.device)) for s in range(0, len(x), 32)]
    )
    mean = torch.as_tensor(run.pipeline.mean / 255.0).permute(2, 0, 1)
    std = torch.as_tensor(run.pipeline.std / 255.0).permute(2, 0, 1)
    shown = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    t = len(rows) // per
    return shown.reshape(t, per, *shown.shape[1:]), cams.numpy().reshape(t, per, *cams.shape[1:])


# -- t-SNE (Fig. 9) ---------------------------------------------------------------------------------
def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-d t-SNE (scikit-learn's Barnes-Hut, PCA initialisation, ``random_state=seed``) of [M, C]
    features; the perplexity defaults to min(30, (M - 1) / 3)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    m = len(features)
    if m < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {m}: raise --n-tuples")
    perp = perplexity if perplexity is not None else min(30.0, (m - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    # one OpenMP thread: the same embedding, and Barnes-Hut's threads crawl on a busy machine
    with threadpool_limits(1, user_api="openmp"):
        return tsne.fit_transform(np.asarray(features, np.float64))


# -- confidence (Fig. 10) ---------------------------------------------------------------------------
def logit_from_prob(prob: np.ndarray) -> np.ndarray:
    """l_fake - l_real of a 2-way softmax from its P(fake): ``log p - log(1 - p)`` in float64, with p
    clipped to float32's open unit interval (±16.6 and ±87 where the saved p saturated)."""
    eps = float(np.finfo(np.float32).eps) / 2
    p = np.clip(np.asarray(prob, np.float64), float(np.finfo(np.float32).tiny), 1 - eps)
    return np.log(p) - np.log1p(-p)


def _saturated(prob: np.ndarray) -> np.ndarray:
    return (prob >= 1.0) | (prob <= 0.0)


def confidence_scores(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Per test set of a run, its saved per-frame predictions (``predictions/<set>.csv``, in the order
    of ``results.json``) with a ``logit`` column (:func:`logit_from_prob`) and ``saturated`` flags."""
    run_dir = Path(run_dir)
    files = {p.stem: p for p in sorted((run_dir / "predictions").glob("*.csv"))}
    if not files:
        raise FileNotFoundError(
            f"{run_dir}/predictions/ holds no per-frame predictions: finish the run (train.py tests it) "
            f"or score it with `python eval.py ckpt={run_dir}/checkpoints/best.pt`"
        )
    order = list(files)
    results = run_dir / "results.json"
    if results.is_file():
        named = [n for n in json.loads(results.read_text()).get("metrics", {}) if n in files]
        order = named + [n for n in order if n not in named]
    out = {}
    for name in order:
        df = read_predictions(files[name])
        df["logit"] = logit_from_prob(df["prob"].to_numpy())
        df["saturated"] = _saturated(df["prob"].to_numpy())
        out[name] = df
    return out


def _logit_difference(method: Method, images: torch.Tensor) -> torch.Tensor:
    logits = method.logits(images)
    return logits[:, 1] - logits[:, 0]


def recompute_logits(
    run: Run, scores: dict[str, pd.DataFrame], batch_size: int = 64, num_workers: int = 0
) -> dict[str, pd.DataFrame]:
    """``scores`` with ``logit`` replaced by the model's l_fake - l_real where the saved P(fake) saturated
    (the test sets re-read from the run's protocol; ``index`` is the row in its table)."""
    if not callable(getattr(run.method, "logits", None)):
        raise TypeError(f"{type(run.method).__name__} has no logits(): cannot recompute them")
    tables = run.tables(("test",))
    out = {}
    for name, df in scores.items():
        df = df.copy()
        if df["saturated"].any() and f"test/{name}" in tables:
            pos = np.unique(df.loc[df["saturated"], "index"].to_numpy())
            table = tables[f"test/{name}"].iloc[pos].reset_index(drop=True)
            idx, diff = map_table(
                _logit_difference,
                run.method,
                table,
                run.pipeline,
                run.runtime,
                batch_size,
                num_workers,
                desc=f"logits {name}",
                progress=False,
            )
            fix = dict(zip(pos[idx].tolist(), diff.astype(np.float64).tolist(), strict=True))
            sel = df["saturated"].to_numpy()
            df.loc[sel, "logit"] = [fix[int(i)] for i in df.loc[sel, "index"]]
            df["saturated"] = False
        out[name] = df
    return out


# -- plotting ---------------------------------------------------------------------------------------
def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))
    return path


def _anchor_legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="best", markerscale=1.5)


def plot_toy(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "Fig. 4a: feature organization (2-d toy models)",
) -> Path:
    """Fig. 4a/9: one scatter per ``(label, points [M, 2], anchors [M])``, coloured by anchor."""
    fig = Figure(figsize=(4.2 * len(panels), 4.2), layout="constrained")
    for ax, (label, points, anchors) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        for k, name in enumerate(TUPLE_ANCHORS):
            sel = anchors == k
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=10,
                alpha=0.7,
                c=ANCHOR_COLORS[name],
                label=f"{ANCHOR_LABELS[name]} ({int(sel.sum())})",
                edgecolors="none",
            )
        ax.set_title(label, fontsize=9)
        _anchor_legend(ax)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_pd(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Fig. 4b: one scatter per ``(label, points [M, 2], PD [M])``, PD as a heat map, mPD in the title."""
    fig = Figure(figsize=(4.6 * len(panels), 4.2), layout="constrained")
    for ax, (label, points, pd_) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        sc = ax.scatter(points[:, 0], points[:, 1], c=pd_, s=10, cmap="viridis", edgecolors="none")
        fig.colorbar(sc, ax=ax, label="PD")
        ax.set_title(f"{label}\nmPD {float(np.mean(pd_)):.4f}", fontsize=9)
    fig.suptitle("Fig. 4b: feature regularity (perturbed distance)", fontsize=10)
    return _save(fig, path)


def plot_robustness(
    curves: Sequence[tuple[str, Mapping[str, np.ndarray]]],
    levels: Mapping[str, Sequence[float]],
    path: str | Path,
    test_set: str = "",
) -> Path:
    """Fig. 5: one panel per perturbation, frame AUC against intensity, one curve per run."""
    kinds = list(levels)
    fig = Figure(figsize=(4 * len(kinds), 3.6), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        for label, curve in curves:
            ax.plot(list(levels[kind]), curve[kind], marker="o", label=label)
        ax.set_title(FIG5_TITLES.get(kind, kind), fontsize=9)
        ax.set_xlabel("intensity")
        ax.set_ylabel("frame AUC")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Fig. 5: robustness to unseen perturbations{f' ({test_set})' if test_set else ''}", fontsize=10
    )
    return _save(fig, path)


def plot_gradcam(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, alpha: float = 0.45
) -> Path:
    """Fig. 8: per ``(label, images [T, A, H, W, 3], cams [T, A, H, W])`` a block of rows (tuples) and
    columns (anchors), the Grad-CAM map over each image; runs side by side."""
    t = max(p[1].shape[0] for p in panels)
    a = len(TUPLE_ANCHORS)
    fig = Figure(figsize=(1.7 * a * len(panels) + 0.3, 1.7 * t + 0.6), layout="constrained")
    subs = fig.subfigures(1, len(panels), squeeze=False)[0]
    for sub, (label, images, cams) in zip(subs, panels, strict=True):
        axes = sub.subplots(t, a, squeeze=False)
        for r in range(t):
            for c in range(a):
                ax = axes[r, c]
                ax.set_axis_off()
                if r >= images.shape[0]:
                    continue
                ax.imshow(images[r, c])
                ax.imshow(cams[r, c], cmap="jet", alpha=alpha, vmin=0, vmax=1)
                if r == 0:
                    ax.set_title(ANCHOR_LABELS[TUPLE_ANCHORS[c]], fontsize=8)
        sub.suptitle(label, fontsize=9)
    fig.suptitle("Fig. 8: Grad-CAM of the fake logit w.r.t. F", fontsize=10)
    return _save(fig, path)


def plot_confidence(
    panels: Sequence[tuple[str, Mapping[str, pd.DataFrame]]], path: str | Path, bins: int = 30
) -> Path:
    """Fig. 10: rows are test sets, per run two columns (P(fake), fake logit), real vs fake histograms
    whose bars are the fraction of the class's frames in each bin."""
    sets = list(dict.fromkeys(name for _, scores in panels for name in scores))
    fig = Figure(figsize=(3.3 * 2 * len(panels), 2.6 * len(sets) + 0.4), layout="constrained")
    axes = fig.subplots(len(sets), 2 * len(panels), squeeze=False)
    for r, name in enumerate(sets):
        for c, (label, scores) in enumerate(panels):
            for j, (col, what) in enumerate(
                (("prob", "confidence P(fake)"), ("logit", "logit l_fake - l_real"))
            ):
                ax = axes[r, 2 * c + j]
                if name not in scores:
                    ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
                    ax.set_axis_off()
                    continue
                df = scores[name]
                values = df[col].to_numpy(np.float64)
                edges = np.linspace(0, 1, bins + 1) if col == "prob" else np.histogram_bin_edges(values, bins)
                for y, cls, color in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
                    v = values[df["label"].to_numpy() == y]
                    if len(v):
                        ax.hist(
                            v,
                            bins=edges,
                            weights=np.full(len(v), 1 / len(v)),
                            alpha=0.55,
                            color=color,
                            label=f"{cls} ({len(v)})",
                        )
                extra = ""
                if col == "logit" and df["saturated"].any():
                    extra = f", {int(df['saturated'].sum())} saturated"
                ax.set_title(f"{label}: {name}\n{what}{extra}", fontsize=8)
                ax.set_ylabel("fraction")
                ax.locator_params(axis="x", nbins=5)
                ax.legend(fontsize=7)
    fig.suptitle("Fig. 10: predicted confidence and logits per test set", fontsize=10)
    return _save(fig, path)


def _saved_label(run_dir: str | Path) -> str:
    """``method (run folder)`` from ``results.json`` without loading the model."""
    results = Path(run_dir) / "results.json"
    method = json.loads(results.read_text()).get("method", "?") if results.is_file() else "?"
    return f"{method} ({Path(run_dir).name})"


# -- all together -----------------------------------------------------------------------------------
def make_figures(
    run_dirs: Sequence[str | Path],
    figures: Sequence[str] = FIGURES,
    out_dir: str | Path = "figures",
    n_tuples: int = 64,
    split: str = "test",
    draws: int = 10,
    cam_tuples: int = 4,
    levels: Mapping[str, Sequence[float]] = FIG5_LEVELS,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = 0,
    recompute: bool = False,
) -> dict[str, Path]:
    """Draw ``figures`` for the runs (side by side, the first run's held-out tuples for all) into
    ``out_dir`` (``FILENAMES``); returns ``{figure: path}``."""
    unknown = [f for f in figures if f not in FIGURES]
    if unknown or not figures:
        raise ValueError(f"unknown figures {unknown}; choose from {', '.join(FIGURES)}")
    if not run_dirs:
        raise ValueError("no run given")
    out_dir = Path(out_dir)
    need_model = recompute or any(f != "confidence" for f in figures)
    runs = [load_run(d, device) for d in run_dirs] if need_model else []
    tuples = None
    if {"toy", "pd", "gradcam", "tsne"} & set(figures):
        tuples = held_out_tuples(runs[0], n_tuples, split, seed)
    feats = {}
    if {"toy", "pd", "tsne"} & set(figures):
        feats = {i: pooled_features(run, tuples, batch_size) for i, run in enumerate(runs)}
    if {"toy", "pd"} & set(figures):
        for i, run in enumerate(runs):
            require_2d(run, feats[i])
    paths: dict[str, Path] = {}
    for fig in figures:
        path = out_dir / FILENAMES[fig]
        if fig == "toy":
            paths[fig] = plot_toy([(r.label, feats[i], tuples.anchors) for i, r in enumerate(runs)], path)
        elif fig == "pd":
            panels = [
                (r.label, feats[i], perturbed_distances(r, tuples, feats[i], draws, seed, batch_size))
                for i, r in enumerate(runs)
            ]
            paths[fig] = plot_pd(panels, path)
        elif fig == "robustness":
            curves = [
                (r.label, robustness_curves(r, levels, None, batch_size, num_workers, seed)) for r in runs
            ]
            paths[fig] = plot_robustness(curves, levels, path, runs[0].in_domain)
        elif fig == "gradcam":
            panels = [(r.label, *gradcam_maps(r, tuples, cam_tuples)) for r in runs]
            paths[fig] = plot_gradcam(panels, path)
        elif fig == "tsne":
            panels = [(r.label, tsne_embedding(feats[i], seed), tuples.anchors) for i, r in enumerate(runs)]
            paths[fig] = plot_toy(panels, path, "Fig. 9: t-SNE of the pooled features")
        elif fig == "confidence":
            panels = []
            for i, d in enumerate(run_dirs):
                scores = confidence_scores(d)
                if recompute:
                    scores = recompute_logits(runs[i], scores, batch_size, num_workers)
                elif any(df["saturated"].any() for df in scores.values()):
                    log.warning(
                        "%s: some saved P(fake) saturated in float32; their logits are clipped "
                        "(recompute them from the model with --recompute-logits)",
                        d,
                    )
                label = runs[i].label if runs else _saved_label(d)
                panels.append((label, scores))
            paths[fig] = plot_confidence(panels, path)
        log.info("wrote %s", paths[fig])
    return paths
