"""DPL's figures (Zhang et al., "Cross-quality DeepFake Detection via Dual Progressive Learning", ACCV 2024,
Figs. 7-11) as PNGs, one per subcommand:

- ``robustness`` (Fig. 7, Sec. 4.4): frame AUC against severity 0..5 (0: the ``clean`` set) under
  saturation, contrast, block-wise distortion and Gaussian noise, one line per method; read from the
  ``results.json`` of every run found under the folders given (``protocol=dpl_robustness``, e.g. the
  ``experiment=dpl/fig7`` sweep); runs of one method name (seeds) are averaged. No model is loaded.
- ``tsne`` (Fig. 8): t-SNE of the fused feature of the final prediction (``DPL.fused_features``; the
  pooled backbone feature for ``dpl_baseline``) on the run's in-domain test set (else its first set
  without a perturbation, else its first), real vs fake, beside ``--baseline``'s on the same frames.
- ``gradcam`` (Fig. 9): Grad-CAM (Selvaraju et al., ICCV 2017) of P(fake), the prediction of
  ``DPL.predict``, with respect to the backbone's last feature map, on a few fake test faces per
  manipulation; DPL above ``--baseline``.
- ``levels`` (Figs. 10-11): training faces per VQI level (k1) and per FII level (k2): five columns (steps
  1..5, the run's fitted bins through ``DPL.test_steps``), a few faces each, captioned with their score.

    python train.py -m experiment=dpl/fig7               # method=dpl/baseline,dpl
    python scripts/dpl_figures.py robustness outputs/multirun/<sweep> --out figures/dpl
    python scripts/dpl_figures.py tsne outputs/runs/dpl --baseline outputs/runs/dpl_baseline --out figures/dpl
    python scripts/dpl_figures.py gradcam outputs/runs/dpl --baseline outputs/runs/dpl_baseline
    python scripts/dpl_figures.py levels outputs/runs/dpl

A run folder is ``outputs/runs/<run_name>`` or one job of a sweep; a DPL job trained in two phases is
read from its last phase (``<run>/stage2``). Readings where the paper says no more: the test set's own
perturbation (if any) is applied, as in testing; Fig. 9's map is the gradient-weighted feature map of the
log-odds log P(fake)/P(real), whose gradient is P(fake)'s divided by P(fake)(1 - P(fake)) > 0, so the
normalised map is P(fake)'s without its vanishing where P(fake) saturates; Figs. 10-11 score a seeded
sample of training frames at the qualities training fed them in its first epoch (the stored frame and
the JPEG re-compressions of ``method.qualities``), with which the bins were fitted. Everything is seeded.
Runs are loaded with :mod:`detect.analysis.runs`, PNGs written with :mod:`detect.analysis.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from detect.analysis.gradcam import grad_cam
from detect.analysis.png import save_figure
from detect.analysis.runs import Run, load_run
from detect.analysis.tsne import tsne_embedding
from detect.data.datasets import FrameDataset, MultiQualityDataset
from detect.data.protocol import load_sets, protocol_sets
from detect.data.transforms import Pipeline
from detect.engine.predict_loop import map_table
from detect.evaluation.perturbations import build_perturbation
from detect.methods.dpl import DPL
from detect.methods.dpl.indicators import KINDS
from detect.quality.binning import DESCENDING, FII_EDGES, SCORE_MAX, SCORE_MIN, VQI_EDGES
from detect.tables.builder import SYNTHETIC_CAVEAT, load_runs

log = logging.getLogger(__name__)

FILENAMES = {
    "robustness": "fig7_robustness.png",
    "tsne": "fig8_tsne.png",
    "gradcam": "fig9_gradcam.png",
    "levels": "fig10_11_levels.png",
}
CLEAN = "clean"
PERTURBATIONS = ("saturation", "contrast", "blockwise", "noise")  # conf/protocol/dpl_robustness.yaml
PERTURBATION_TITLES = {
    "saturation": "Saturation",
    "contrast": "Contrast",
    "blockwise": "Block-wise",
    "noise": "Gaussian noise",
}
SEVERITIES = (0, 1, 2, 3, 4, 5)
CLASS_STYLE = {0: ("real", "tab:blue"), 1: ("fake", "tab:red")}
INDICATOR = {"vqi": ("VQI", "k1", "Fig. 10"), "fii": ("FII", "k2", "Fig. 11")}
STORED = 100  # MultiQualityDataset.draw's quality for "as stored"


# -- runs -------------------------------------------------------------------------------------------
def model_dir(run_dir: str | Path) -> Path:
    """The folder holding the model of a run: the run itself, or the last phase of a phased job (its
    ``results.json`` names the phase, e.g. DPL's ``<run>/stage2``)."""
    run_dir = Path(run_dir)
    results = run_dir / "results.json"
    if not (run_dir / "checkpoints").is_dir() and results.is_file():
        phase = json.loads(results.read_text()).get("phase")
        if phase and (run_dir / str(phase) / "checkpoints").is_dir():
            return run_dir / str(phase)
    return run_dir


def load_dpl_run(run_dir: str | Path, device: str = "auto") -> Run:
    """A trained DPL run (``method=dpl`` and its presets, ``dpl/baseline`` included) rebuilt from its
    checkpoint (``best.pt``, else ``last.pt``); ``run_dir`` stays the folder given (the label names it)."""
    run = load_run(model_dir(run_dir), device)
    if not isinstance(run.method, DPL):
        raise TypeError(
            f"{run_dir}: a {type(run.method).__name__} run; these figures need a DPL run "
            "(method=dpl, dpl/baseline or another conf/method/dpl/ preset)"
        )
    return dataclasses.replace(run, run_dir=Path(run_dir))


def pick_test_set(run: Run, name: str | None = None) -> tuple[str, pd.DataFrame, dict | None]:
    """``(name, table, perturbation config)`` of the run's test set ``name``; by default its in-domain set,
    else its first set without a perturbation (``clean`` of the robustness protocol), else its first."""
    specs = protocol_sets(run.config, roles=("test",))["test"]
    if not specs:
        raise KeyError(f"{run.run_dir}: its protocol has no test set")
    if name is None:
        plain = [n for n, s in specs.items() if s.perturbation is None]
        name = run.in_domain if run.in_domain in specs else (plain or list(specs))[0]
    if name not in specs:
        raise KeyError(f"{run.run_dir}: no test set {name!r} (has {list(specs)})")
    table = load_sets({"test": {name: specs[name]}}, str(run.config.data.kind))[f"test/{name}"]
    return name, table, specs[name].perturbation


def shown(pipeline: Pipeline, x: torch.Tensor) -> np.ndarray:
    """Network inputs [N, 3, H, W] as displayable images [N, H, W, 3] in [0, 1]."""
    mean = torch.as_tensor(pipeline.mean / 255.0).permute(2, 0, 1)
    std = torch.as_tensor(pipeline.std / 255.0).permute(2, 0, 1)
    return (x.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


# -- Fig. 7: robustness -----------------------------------------------------------------------------
def robustness_set(kind: str, severity: int) -> str:
    """The test set's name in ``results.json``: ``clean`` at severity 0, else ``<kind>-<severity>``."""
    return CLEAN if severity == 0 else f"{kind}-{severity}"


@dataclass
class Curves:
    """One method's Fig. 7 lines: ``values[kind]`` [6] over severities 0..5 (NaN where no run has it),
    the mean over ``runs`` (their ``results.json``)."""

    method: str
    runs: list[Path]
    values: dict[str, np.ndarray]
    data: set[str]

    @property
    def label(self) -> str:
        return self.method if len(self.runs) == 1 else f"{self.method} (mean of {len(self.runs)} runs)"


def metric_label(metric: str) -> str:
    """``frame_auc`` -> ``frame AUC``."""
    return " ".join(w.upper() if w in ("auc", "eer", "ap", "acc") else w for w in metric.split("_"))


def _metric(metrics: dict, test_set: str, metric: str) -> float:
    value = (metrics.get(test_set) or {}).get(metric)
    return float(value) if isinstance(value, int | float) else float("nan")


def robustness_curves(dirs: Sequence[str | Path], metric: str = "frame_auc") -> list[Curves]:
    """Fig. 7's data from every complete ``results.json`` under ``dirs`` (recursively) with the ``clean``
    set and at least one perturbed one; runs are grouped by their method name, in order of the paths."""
    runs, excluded = load_runs(dirs)
    for ex in excluded:
        log.warning("left out %s: %s", ex.path, ex.reason)
    groups: dict[str, list] = {}
    for run in runs:
        names = set(run.results["metrics"])
        if CLEAN not in names or not any(
            robustness_set(k, s) in names for k in PERTURBATIONS for s in SEVERITIES[1:]
        ):
            log.info("skipped %s: no robustness test sets (protocol=dpl_robustness)", run.path)
            continue
        groups.setdefault(str(run.results.get("method", "?")), []).append(run)
    if not groups:
        raise FileNotFoundError(
            f"no finished run with the robustness test sets under {[str(d) for d in dirs]}: train them "
            "with `python train.py -m experiment=dpl/fig7` (protocol=dpl_robustness)"
        )
    out = []
    for method, group in groups.items():
        values = np.array(
            [
                [
                    [_metric(r.results["metrics"], robustness_set(k, s), metric) for s in SEVERITIES]
                    for k in PERTURBATIONS
                ]
                for r in group
            ]
        )  # [runs, kinds, severities]
        finite = np.isfinite(values)
        n = finite.sum(0)
        mean = np.where(n > 0, np.where(finite, values, 0.0).sum(0) / np.maximum(n, 1), np.nan)
        out.append(
            Curves(
                method,
                [r.path for r in group],
                {k: mean[i] for i, k in enumerate(PERTURBATIONS)},
                {str(r.results.get("data")) for r in group},
            )
        )
    return out


def plot_robustness(curves: Sequence[Curves], path: str | Path, metric: str = "frame_auc") -> Path:
    """Fig. 7: one panel per perturbation, ``metric`` against severity, one line per method."""
    fig = Figure(figsize=(3.4 * len(PERTURBATIONS), 3.2), layout="constrained")
    axes = fig.subplots(1, len(PERTURBATIONS), squeeze=False)[0]
    for ax, kind in zip(axes, PERTURBATIONS, strict=True):
        for curve in curves:
            ax.plot(SEVERITIES, curve.values[kind], marker="o", label=curve.label)
        ax.set_title(PERTURBATION_TITLES[kind], fontsize=9)
        ax.set_xticks(SEVERITIES)
        ax.set_xlabel("severity (0: clean)")
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    caveat = f" ({SYNTHETIC_CAVEAT})" if any("synthetic" in c.data for c in curves) else ""
    fig.suptitle(f"Fig. 7: {metric_label(metric)} under unseen perturbations{caveat}", fontsize=10)
    return save_figure(fig, path)


# -- Fig. 8: t-SNE ----------------------------------------------------------------------------------
@dataclass
class Scatter:
    """One run's Fig. 8 panel: its features [M, C] of the sampled frames, their t-SNE [M, 2], labels [M]."""

    label: str
    features: np.ndarray
    points: np.ndarray
    labels: np.ndarray


def _fused(method: DPL, images: torch.Tensor) -> torch.Tensor:
    return method.fused_features(images)


def tsne_scatters(
    runs: Sequence[Run],
    test_set: str | None = None,
    max_images: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
) -> tuple[str, list[Scatter]]:
    """Fig. 8's data: up to ``max_images`` frames of the first run's test set (a seeded sample), their
    fused features in every run and each run's t-SNE; returns the set's name and one panel per run."""
    name, table, perturbation = pick_test_set(runs[0], test_set)
    if min(max_images, len(table)) < 4:
        raise ValueError(f"t-SNE needs at least 4 frames; test set {name!r} has {len(table)}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(table), size=min(max_images, len(table)), replace=False))
    frames = table.iloc[rows].reset_index(drop=True)
    out = []
    for run in runs:
        _, feats = map_table(
            _fused,
            run.method,
            frames,
            run.pipeline,
            run.runtime,
            batch_size,
            num_workers,
            perturbation,
            desc=f"features {name}",
            progress=False,
        )
        out.append(Scatter(run.label, feats, tsne_embedding(feats, seed), frames["label"].to_numpy()))
    return name, out


def plot_tsne(scatters: Sequence[Scatter], path: str | Path, test_set: str = "") -> Path:
    """Fig. 8: one t-SNE scatter per run, real vs fake."""
    fig = Figure(figsize=(4.2 * len(scatters), 4.2), layout="constrained")
    for ax, sc in zip(fig.subplots(1, len(scatters), squeeze=False)[0], scatters, strict=True):
        for y, (name, color) in CLASS_STYLE.items():
            sel = sc.labels == y
            ax.scatter(
                sc.points[sel, 0],
                sc.points[sel, 1],
                s=8,
                alpha=0.7,
                c=color,
                edgecolors="none",
                label=f"{name} ({int(sel.sum())})",
            )
        ax.set_title(sc.label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.5)
    fig.suptitle(f"Fig. 8: t-SNE of the fused features{f' ({test_set})' if test_set else ''}", fontsize=10)
    return save_figure(fig, path)


# -- Fig. 9: Grad-CAM -------------------------------------------------------------------------------
@contextmanager
def backbone_output(method: DPL, fmap: torch.Tensor) -> Iterator[None]:
    """Within the block, ``method.backbone.forward_features`` returns ``fmap`` whatever its input."""
    method.backbone.forward_features = lambda images: fmap
    try:
        yield
    finally:
        del method.backbone.forward_features


class CamView(nn.Module):
    """A DPL model seen through :func:`detect.analysis.gradcam.grad_cam`: ``feature_map`` is the backbone's
    last feature map of ``images``; ``classifier`` runs the rest of the evaluation forward (``forward_eval``
    with the test-time step counts of ``images``) from a given map and returns [N, 2] whose column 1 is the
    log-odds log P(fake)/P(real) (column 0 its negative)."""

    def __init__(self, method: DPL, images: torch.Tensor) -> None:
        super().__init__()
        self.method, self.images = method, images
        self.steps = method.test_steps(images)
        self.train(method.training)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.backbone.forward_features(images)

    def attend(self, fmap: torch.Tensor) -> tuple[torch.Tensor]:
        return (fmap,)

    def classifier(self, fmap: torch.Tensor) -> torch.Tensor:
        with backbone_output(self.method, fmap):
            logits = self.method.forward_eval(self.images, self.steps)["final"].float()
        odds = logits[:, 1] - logits[:, 0]
        return torch.stack([-odds, odds], dim=1)


def dpl_grad_cam(method: DPL, images: torch.Tensor) -> torch.Tensor:
    """Grad-CAM [N, H, W] in [0, 1] of P(fake) w.r.t. the backbone's last feature map."""
    return grad_cam(CamView(method, images), images, target=1)


def fake_faces(table: pd.DataFrame, per_manipulation: int, order: Sequence[str] = (), seed: int = 0):
    """Up to ``per_manipulation`` fake frames per manipulation (``domain``), from distinct videos first,
    chosen with ``seed``; manipulations in ``order``, then the others sorted."""
    fakes = table[table["label"] == 1]
    domains = [d for d in order if d in set(fakes["domain"])]
    domains += sorted(set(fakes["domain"]) - set(domains))
    rng = np.random.default_rng(seed)
    picked = []
    for d in domains:
        sub = fakes[fakes["domain"] == d]
        sub = sub.iloc[rng.permutation(len(sub))]
        first = sub.drop_duplicates("video")
        picked.append(pd.concat([first, sub.drop(first.index)]).head(per_manipulation))
    if not picked:
        raise ValueError("the test set has no fake frames")
    return pd.concat(picked)


@dataclass
class CamPanel:
    """One run's Fig. 9 row: displayed inputs [M, H, W, 3], Grad-CAM maps [M, H, W], P(fake) [M]."""

    label: str
    images: np.ndarray
    cams: np.ndarray
    probs: np.ndarray


def gradcam_panels(
    runs: Sequence[Run],
    per_manipulation: int = 2,
    test_set: str | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[str, pd.DataFrame, list[CamPanel]]:
    """Fig. 9's data: fake frames of the first run's test set (:func:`fake_faces`), and per run their
    inputs, Grad-CAM maps and predictions; returns the set's name, the frames' rows and the panels."""
    name, table, perturbation = pick_test_set(runs[0], test_set)
    order = list(runs[0].config.dataset.get("manipulations") or [])
    faces = fake_faces(table, per_manipulation, order, seed)
    pert = build_perturbation(perturbation)
    panels = []
    for run in runs:
        data = FrameDataset(faces, run.pipeline, train=False, perturbation=pert)
        x = torch.stack([data[i]["image"] for i in range(len(data))])
        cams, probs = [], []
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size].to(run.runtime.device)
            cams.append(dpl_grad_cam(run.method, xb))
            probs.append(run.method.predict(xb).float().cpu())
        panels.append(
            CamPanel(run.label, shown(run.pipeline, x), torch.cat(cams).numpy(), torch.cat(probs).numpy())
        )
    return name, faces, panels


def plot_gradcam(
    faces: pd.DataFrame, panels: Sequence[CamPanel], path: str | Path, test_set: str = "", alpha: float = 0.45
) -> Path:
    """Fig. 9: columns are the fake frames (grouped by manipulation); the first row the inputs, then per
    run its Grad-CAM maps over them, captioned with P(fake)."""
    m, rows = len(faces), 1 + len(panels)
    fig = Figure(figsize=(1.5 * m + 0.4, 1.6 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, m, squeeze=False)
    domains = faces["domain"].tolist()
    for c in range(m):
        for r in range(rows):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.imshow(panels[0].images[c])
                ax.set_title(domains[c], fontsize=8)
            else:
                p = panels[r - 1]
                ax.imshow(p.images[c])
                ax.imshow(p.cams[c], cmap="jet", alpha=alpha, vmin=0, vmax=1)
                ax.set_xlabel(f"P(fake) {p.probs[c]:.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel("input" if r == 0 else panels[r - 1].label, fontsize=7)
    fig.suptitle(
        f"Fig. 9: Grad-CAM of P(fake) w.r.t. the backbone's last feature map"
        f"{f' ({test_set})' if test_set else ''}",
        fontsize=10,
    )
    return save_figure(fig, path)


# -- Figs. 10-11: indicator levels ------------------------------------------------------------------
def step_intervals(method: DPL, kind: str) -> list[tuple[float, float]]:
    """The score interval [low, high) (the top one closed) of each step 1..n of indicator ``kind``: the
    run's fitted quantile edges, or the fixed intervals (``method.indicators.binning=intervals``)."""
    j = KINDS.index(kind)
    if method.indicators.binning == "quantile":
        edges = method.bin_edges[j].tolist()
    else:
        edges = list((VQI_EDGES, FII_EDGES)[j])
    bounds, n = [SCORE_MIN, *edges, SCORE_MAX], len(edges) + 1
    out = []
    for step in range(1, n + 1):
        b = n - step if DESCENDING[kind] else step - 1  # the ascending bin of this step
        out.append((float(bounds[b]), float(bounds[b + 1])))
    return out


@dataclass
class Levels:
    """Figs. 10-11's data. Per scored image (a training frame at one quality): its training-table row,
    JPEG quality (100: as stored), label, scores [M, 2] (VQI, FII) and step counts [M, 2] (k1, k2);
    ``intervals[kind]`` the score interval of each step; ``picks[kind][step - 1]`` the scored images
    shown for that step; ``images`` the displayed image [H, W, 3] of every picked one."""

    rows: np.ndarray
    qualities: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    steps: np.ndarray
    intervals: dict[str, list[tuple[float, float]]]
    picks: dict[str, list[np.ndarray]]
    images: dict[int, np.ndarray]


@torch.no_grad()
def level_examples(
    run: Run, per_level: int = 3, max_images: int = 256, seed: int = 0, batch_size: int = 64
) -> Levels:
    """Score a seeded sample of up to ``max_images`` training frames, each at the qualities of the first
    training epoch, with the run's indicators; bin them with its fitted bins; pick ``per_level`` of each
    step at random (seeded), sorted by score."""
    method = run.method
    if method.indicators is None:
        raise TypeError(f"{run.label}: no indicators (e.g. dpl_baseline); Figs. 10-11 need a DPL run")
    table = load_sets(protocol_sets(run.config, roles=("train",)), str(run.config.data.kind))["train"]
    # the whole table, so that frame i gets the JPEG qualities training drew for it
    data = MultiQualityDataset(
        table, run.pipeline, method.qualities, train=False, seed=method.seed, redraw=method.redraw
    )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data), size=min(max_images, len(data)), replace=False))
    q = len(method.qualities)
    per_batch = max(1, batch_size // q)
    scores, steps, qualities = [], [], []
    for s in range(0, len(chosen), per_batch):
        items = [data[int(i)] for i in chosen[s : s + per_batch]]
        x = torch.cat([it["images"] for it in items]).to(run.runtime.device)
        scores.append(method.indicators.scores(x).double().cpu().numpy())
        steps.append(method.test_steps(x).cpu().numpy())
        qualities += [int(v) for it in items for v in it["qualities"]]
    rows = np.repeat(chosen, q)
    levels = Levels(
        rows=rows,
        qualities=np.asarray(qualities),
        labels=data.labels[rows],
        scores=np.concatenate(scores),
        steps=np.concatenate(steps),
        intervals={kind: step_intervals(method, kind) for kind in KINDS},
        picks={},
        images={},
    )
    for j, kind in enumerate(KINDS):
        levels.picks[kind] = []
        for step in range(1, method.n_steps + 1):
            cand = np.flatnonzero(levels.steps[:, j] == step)
            pick = rng.choice(cand, size=min(per_level, len(cand)), replace=False)
            levels.picks[kind].append(pick[np.argsort(-levels.scores[pick, j], kind="stable")])
    for m in sorted({int(i) for picks in levels.picks.values() for p in picks for i in p}):
        version = data[int(levels.rows[m])]["images"][m % q]
        levels.images[m] = shown(run.pipeline, version[None])[0]
    return levels


def _quality_text(q: int) -> str:
    return "as stored" if q == STORED else f"JPEG {q}"


def plot_levels(levels: Levels, path: str | Path, label: str = "") -> Path:
    """Figs. 10-11: for VQI then FII, five columns (steps 1..n: the score interval, how many of the scored
    images fall in it) of example faces captioned with score, class and JPEG quality."""
    n = len(levels.intervals[KINDS[0]])
    per = max(1, max(len(p) for picks in levels.picks.values() for p in picks))
    fig = Figure(figsize=(1.7 * n + 0.3, len(KINDS) * (1.75 * per + 0.7)), layout="constrained")
    for j, (sub, kind) in enumerate(
        zip(fig.subfigures(len(KINDS), 1, squeeze=False)[:, 0], KINDS, strict=True)
    ):
        name, k, number = INDICATOR[kind]
        axes = sub.subplots(per, n, squeeze=False)
        for step in range(1, n + 1):
            lo, hi = levels.intervals[kind][step - 1]
            count = int((levels.steps[:, j] == step).sum())
            picks = levels.picks[kind][step - 1]
            for r in range(per):
                ax = axes[r, step - 1]
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    close = "]" if hi >= SCORE_MAX else ")"
                    ax.set_title(f"{k} = {step}: [{lo:.1f}, {hi:.1f}{close}\n{count} images", fontsize=7)
                if r >= len(picks):
                    ax.set_axis_off()
                    continue
                m = int(picks[r])
                ax.imshow(levels.images[m])
                cls = CLASS_STYLE[int(levels.labels[m])][0]
                ax.set_xlabel(
                    f"{name} {levels.scores[m, j]:.1f}\n{cls}, {_quality_text(int(levels.qualities[m]))}",
                    fontsize=6,
                )
        sub.suptitle(f"{number}: training faces per {name} level ({k} steps)", fontsize=9)
    if label:
        fig.suptitle(label, fontsize=10)
    return save_figure(fig, path)


# -- command line -----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="figure", required=True)

    def common(p: argparse.ArgumentParser, model: bool = True) -> None:
        p.add_argument("--out", help="output folder (default: <first folder>/figures)")
        p.add_argument("--seed", type=int, default=0)
        if model:
            p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
            p.add_argument("--batch-size", type=int, default=64)

    p = sub.add_parser("robustness", help="Fig. 7 from results.json files (no model)")
    p.add_argument("dirs", nargs="+", help="run or sweep folders, searched recursively for results.json")
    p.add_argument(
        "--metric", default="frame_auc", help="a metric of results.json (frame_auc, video_auc, ...)"
    )
    common(p, model=False)
    p = sub.add_parser("tsne", help="Fig. 8: t-SNE of the fused features")
    p.add_argument("run", help="a finished DPL run folder (outputs/runs/<run_name> or a sweep job)")
    p.add_argument("--baseline", help="a dpl_baseline run drawn beside it")
    p.add_argument("--test-set", help="default: the in-domain test set, else the first unperturbed one")
    p.add_argument("--max-images", type=int, default=1000, help="frames sampled from the test set")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    common(p)
    p = sub.add_parser("gradcam", help="Fig. 9: Grad-CAM of DPL and the baseline")
    p.add_argument("run", help="a finished DPL run folder")
    p.add_argument("--baseline", required=True, help="a dpl_baseline run folder")
    p.add_argument("--test-set", help="default: the in-domain test set, else the first unperturbed one")
    p.add_argument("--per-manipulation", type=int, default=2, help="fake faces per manipulation")
    common(p)
    p = sub.add_parser("levels", help="Figs. 10-11: training faces per VQI and FII level")
    p.add_argument("run", help="a finished DPL run folder (with indicators: not dpl_baseline)")
    p.add_argument("--per-level", type=int, default=3, help="faces per level")
    p.add_argument("--max-images", type=int, default=256, help="training frames scored (seeded sample)")
    common(p)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    first = args.dirs[0] if args.figure == "robustness" else args.run
    path = Path(args.out or Path(first) / "figures") / FILENAMES[args.figure]
    if args.figure == "robustness":
        path = plot_robustness(robustness_curves(args.dirs, args.metric), path, args.metric)
    else:
        dirs = [args.run] + ([args.baseline] if getattr(args, "baseline", None) else [])
        runs = [load_dpl_run(d, args.device) for d in dirs]
        if args.figure == "tsne":
            name, scatters = tsne_scatters(
                runs, args.test_set, args.max_images, args.seed, args.batch_size, args.num_workers
            )
            path = plot_tsne(scatters, path, name)
        elif args.figure == "gradcam":
            name, faces, panels = gradcam_panels(
                runs, args.per_manipulation, args.test_set, args.seed, args.batch_size
            )
            path = plot_gradcam(faces, panels, path, name)
        else:
            levels = level_examples(runs[0], args.per_level, args.max_images, args.seed, args.batch_size)
            path = plot_levels(levels, path, runs[0].label)
    log.info("wrote %s", path)
    print(path)
    return path


if __name__ == "__main__":
    main()
