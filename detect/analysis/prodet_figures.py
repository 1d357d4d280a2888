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

Data gathering (``runs.load_run``, ``held_out.held_out_tuples``/``pooled_features``,
``perturbed_distance``, ``robustness``, ``gradcam``, ``tsne``, ``confidence``: modules of
``detect.analysis``) is apart from plotting (``plots``: each ``plot_*`` writes one PNG and returns its path);
``make_figures`` here chains them for ``scripts/prodet_figures.py``. Several runs (e.g. ProDet beside VHT)
are drawn side by side, as in the paper, on the same held-out tuples (built from the first run's data) and
the same perturbation draws.
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
from collections.abc import Mapping, Sequence
from pathlib import Path

from detect.analysis.confidence import confidence_scores, recompute_logits
from detect.analysis.gradcam import gradcam_maps
from detect.analysis.held_out import held_out_tuples, pooled_features, require_2d
from detect.analysis.perturbed_distance import perturbed_distances
from detect.analysis.plots import plot_confidence, plot_gradcam, plot_pd, plot_robustness, plot_toy
from detect.analysis.robustness import FIG5_LEVELS, robustness_curves
from detect.analysis.runs import load_run
from detect.analysis.tsne import tsne_embedding

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


def saved_label(run_dir: str | Path) -> str:
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
                label = runs[i].label if runs else saved_label(d)
                panels.append((label, scores))
            paths[fig] = plot_confidence(panels, path)
        log.info("wrote %s", paths[fig])
    return paths
