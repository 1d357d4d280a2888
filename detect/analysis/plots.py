"""The plots of ProDet's figures (scatters, curves, Grad-CAM grids, histograms), each drawn on matplotlib's
object API (Agg canvas, no pyplot) and written as one PNG."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from detect.analysis.png import save_figure
from detect.analysis.robustness import FIG5_TITLES
from detect.data.anchor_tuples import TUPLE_ANCHORS

log = logging.getLogger(__name__)


ANCHOR_LABELS = {"real": "Real", "sbi": "Blendfake (SBI)", "cbi": "Blendfake (CBI)", "deepfake": "Deepfake"}
ANCHOR_COLORS = {"real": "tab:green", "sbi": "tab:blue", "cbi": "tab:orange", "deepfake": "tab:red"}


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
    return save_figure(fig, path)


def plot_pd(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Fig. 4b: one scatter per ``(label, points [M, 2], PD [M])``, PD as a heat map, mPD in the title."""
    fig = Figure(figsize=(4.6 * len(panels), 4.2), layout="constrained")
    for ax, (label, points, pd_) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        sc = ax.scatter(points[:, 0], points[:, 1], c=pd_, s=10, cmap="viridis", edgecolors="none")
        fig.colorbar(sc, ax=ax, label="PD")
        ax.set_title(f"{label}\nmPD {float(np.mean(pd_)):.4f}", fontsize=9)
    fig.suptitle("Fig. 4b: feature regularity (perturbed distance)", fontsize=10)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)
