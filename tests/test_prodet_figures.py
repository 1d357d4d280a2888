"""ProDet's figures (Figs. 4a, 4b, 5, 8, 9, 10) from a tiny 2-d toy run on the synthetic benchmark: each PNG
is written and readable, and the data behind it is right."""

from __future__ import annotations

import dataclasses
import json
import runpy
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from helpers import train_in_process
from omegaconf import OmegaConf

from detect.analysis import confidence, gradcam, held_out, perturbed_distance, plots, robustness, runs, tsne
from detect.data.anchor_tuples import TUPLE_ANCHORS
from detect.engine.method_builder import build_method
from detect.engine.predict_loop import map_table

REPO = Path(__file__).resolve().parents[1]
N_TUPLES = 6
LEVELS = {"blockwise": (0.0, 0.3), "noise": (0, 50), "shift": (0, 20)}

pytestmark = pytest.mark.e2e  # ~40 s, plus the synthetic benchmark's generation (~60 s) when not cached


@pytest.fixture(scope="module")
def toy_dir(synthetic_cache, tmp_path_factory) -> Path:
    """A one-epoch ProDet toy run (2-d features) as train.py leaves it: checkpoints, predictions, results."""
    out = tmp_path_factory.mktemp("figures")
    overrides = [
        "method=prodet",
        "+scale=smoke",
        "method.feature_dim=2",
        "method.hidden_dim=8",
        "trainer.epochs=1",
        "trainer.limit_train_batches=2",
    ]
    train_in_process(synthetic_cache, out, overrides, out / "runs" / "toy")
    return out / "runs" / "toy"


@pytest.fixture(scope="module")
def run(toy_dir) -> runs.Run:
    return runs.load_run(toy_dir, "cpu")


@pytest.fixture(scope="module")
def tuples(run) -> held_out.AnchorTuples:
    return held_out.held_out_tuples(run, N_TUPLES, split="test", seed=0)


@pytest.fixture(scope="module")
def feats(run, tuples) -> np.ndarray:
    return held_out.pooled_features(run, tuples)


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, image.shape
    return image


def test_run_loads_the_selected_checkpoint(run, toy_dir):
    assert run.checkpoint == toy_dir / "checkpoints" / "best.pt"
    assert not run.method.training and run.in_domain == "FF++"
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        runs.find_checkpoint(toy_dir / "missing")


def test_toy_figure_plots_every_tuple_per_anchor(run, tuples, feats, tmp_path):
    assert len(tuples) == N_TUPLES * 4 and tuples.n_tuples == N_TUPLES
    assert feats.shape == (N_TUPLES * 4, 2)
    for k in range(len(TUPLE_ANCHORS)):
        assert (tuples.anchors == k).sum() == N_TUPLES
    again = held_out.held_out_tuples(run, N_TUPLES, split="test", seed=0)  # seeded: the same tuples
    assert all(np.array_equal(a, b) for a, b in zip(tuples.raw, again.raw, strict=True))
    held_out.require_2d(run, feats)
    _png(plots.plot_toy([(run.label, feats, tuples.anchors)], tmp_path / "toy.png"))


def test_toy_figure_rejects_features_that_are_not_2d(run, tuples):
    cfg = OmegaConf.merge(run.config.method, {"feature_dim": 8})
    wide = dataclasses.replace(run, method=build_method(cfg, run.config.backbone).eval())
    feats = held_out.pooled_features(wide, tuples)
    assert feats.shape[1] == 8
    with pytest.raises(ValueError, match=r"8-d.*method\.feature_dim=2"):
        held_out.require_2d(wide, feats)


def test_pd_figure(run, tuples, feats, tmp_path):
    pd_ = perturbed_distance.perturbed_distances(run, tuples, feats, draws=2, seed=0)
    assert pd_.shape == (len(tuples),) and np.all(np.isfinite(pd_)) and np.all(pd_ >= 0)
    assert np.array_equal(pd_, perturbed_distance.perturbed_distances(run, tuples, feats, draws=2, seed=0))
    # a random perturbation per (image, draw), drawn deterministically
    pert = perturbed_distance.random_perturbation(0)
    img = tuples.raw[0]
    assert np.array_equal(pert(img, 5), pert(img, 5)) and not np.array_equal(pert(img, 5), img)
    _png(plots.plot_pd([(run.label, feats, pd_)], tmp_path / "pd.png"))


def test_robustness_curve_starts_at_the_clean_auc(run, toy_dir, tmp_path):
    assert robustness.level_perturbation("noise", 0) is None
    assert robustness.level_perturbation("shift", 10)["shift"] == [10, 10]
    curves = robustness.robustness_curves(run, LEVELS)
    clean = json.loads((toy_dir / "results.json").read_text())["metrics"]["FF++"]["frame_auc"]
    for kind, levels in LEVELS.items():
        assert curves[kind].shape == (len(levels),)
        assert curves[kind][0] == pytest.approx(clean, abs=1e-6), kind
        assert np.all((curves[kind] >= 0) & (curves[kind] <= 1))
    _png(plots.plot_robustness([(run.label, curves)], LEVELS, tmp_path / "robustness.png", "FF++"))


def _reference_cam(method, images: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM through the whole model, as the grad-cam package defines it: F captured by a hook on the 1x1
    reducer, its gradient retained; ReLU(Σ_c w_c F_c) scaled to [0, 1] by its own minimum and maximum at
    F's resolution, resized to the image (bilinear) and scaled to [0, 1] again."""
    seen = {}

    def hook(module, inputs, output):
        output.retain_grad()
        seen["F"] = output

    handle = method.reduce.register_forward_hook(hook)
    with torch.enable_grad():
        method.logits(images)[:, target].sum().backward()
    handle.remove()
    method.zero_grad(set_to_none=True)
    feature = seen["F"]
    cam = torch.relu((feature.grad.mean(dim=(2, 3), keepdim=True) * feature).sum(1, keepdim=True)).detach()
    low = cam.flatten(1).amin(1)[:, None, None, None]
    cam = cam - low
    cam = cam / (1e-7 + cam.flatten(1).amax(1)[:, None, None, None])
    cam = nnf.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.flatten(1).amin(1)[:, None, None]  # and once more after resizing
    return cam / (1e-7 + cam.flatten(1).amax(1)[:, None, None])


def test_gradcam_maps(run, tuples, tmp_path):
    images, cams = gradcam.gradcam_maps(run, tuples, n_tuples=2)
    size = run.pipeline.size
    assert images.shape == (2, 4, size, size, 3) and cams.shape == (2, 4, size, size)
    assert cams.min() >= 0 and cams.max() <= 1 and images.min() >= 0 and images.max() <= 1
    x = tuples.inputs(run.pipeline, range(8))
    assert np.allclose(gradcam.grad_cam(run.method, x).numpy().reshape(cams.shape), cams)
    nonzero = 0
    for target in (0, 1):
        ours = gradcam.grad_cam(run.method, x, target)
        assert torch.allclose(ours, _reference_cam(run.method, x, target), atol=1e-4)
        peaks = ours.flatten(1).amax(1)
        assert torch.all((peaks == 0) | torch.isclose(peaks, torch.ones(()), atol=1e-5)), peaks
        nonzero += int((peaks > 0).sum())
    assert nonzero > 0  # the comparison covered a non-trivial map
    assert all(p.grad is None for p in run.method.parameters())  # Grad-CAM left no gradients behind
    assert not run.method.training
    _png(plots.plot_gradcam([(run.label, images, cams), ("again", images, cams)], tmp_path / "cam.png"))


def test_tsne_figure(run, tuples, feats, tmp_path):
    emb = tsne.tsne_embedding(feats, seed=0)
    assert emb.shape == (len(tuples), 2) and np.all(np.isfinite(emb))
    assert np.array_equal(emb, tsne.tsne_embedding(feats, seed=0))
    _png(plots.plot_toy([(run.label, emb, tuples.anchors)], tmp_path / "tsne.png", "t-SNE"))


def test_confidence_figure_reads_the_saved_predictions(run, toy_dir, tmp_path):
    scores = confidence.confidence_scores(toy_dir)
    assert list(scores) == ["FF++"]
    df = scores["FF++"]
    table = run.tables(("test",))["test/FF++"]
    assert len(df) == len(table) and set(df["label"]) == {0, 1}
    # the logit read from P(fake) is the model's l_fake - l_real
    idx, diff = map_table(confidence.logit_difference, run.method, table, run.pipeline, run.runtime, 128, 0)
    assert np.array_equal(idx, df["index"].to_numpy())
    assert not df["saturated"].any()
    assert np.allclose(df["logit"].to_numpy(), diff, atol=1e-5)
    assert confidence.logit_from_prob(np.array([1.0]))[0] == pytest.approx(16.6, abs=0.1)
    _png(plots.plot_confidence([(run.label, scores), ("other", {})], tmp_path / "confidence.png"))


def test_script_writes_the_figures_it_is_asked_for(toy_dir, tmp_path):
    script = runpy.run_path(str(REPO / "scripts" / "prodet_figures.py"), run_name="prodet_figures")
    argv = ["--run", str(toy_dir), "--compare", str(toy_dir), "--out", str(tmp_path)]
    paths = script["main"]([*argv, "--figures", "toy,confidence", "--n-tuples", "3", "--device", "cpu"])
    assert set(paths) == {"toy", "confidence"}
    assert (
        paths["toy"] == tmp_path / "fig4a_toy.png"
        and paths["confidence"] == tmp_path / "fig10_confidence.png"
    )
    for path in paths.values():
        _png(path)
    with pytest.raises(ValueError, match="unknown figures"):
        script["main"]([*argv, "--figures", "toy,fig11"])
