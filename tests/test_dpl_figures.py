"""DPL's figures (scripts/dpl_figures.py, Figs. 7-11): Fig. 7's lines from hand-written results.json files;
Figs. 8-11 from a tiny Stage I run trained once on the FF++-shaped fixture (random CLIP indicators) and an
untrained dpl_baseline beside it. The data behind each PNG is checked, then the PNG's pixel size."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from helpers import compose, train_in_process
from omegaconf import OmegaConf

from detect.data.datasets import FrameDataset
from detect.engine.method_builder import build_method
from detect.evaluation.perturbations import build_perturbation

REPO = Path(__file__).resolve().parents[1]
DPI = 150
PER_MANIPULATION = 2


def _load_script():
    spec = importlib.util.spec_from_file_location("dpl_figures", REPO / "scripts" / "dpl_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dpl_figures"] = module
    spec.loader.exec_module(module)
    return module


F = _load_script()


def _png(path: Path, size: tuple[float, float]) -> np.ndarray:
    """The PNG at ``path``, checked to be ``size`` inches (width, height) at the figures' DPI."""
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = mpimg.imread(path)
    assert image.shape[:2] == (round(size[1] * DPI), round(size[0] * DPI)), image.shape
    assert image[..., :3].std() > 0  # something was drawn
    return image


# -- Fig. 7 from results.json -----------------------------------------------------------------------
def _auc(method: str, seed: int, kind: str, severity: int) -> float:
    """A known AUC per (method, seed, perturbation, severity)."""
    base = 0.9 if method == "dpl" else 0.8
    return base - 0.01 * (1 + F.PERTURBATIONS.index(kind)) * severity + 0.02 * seed


def _write_results(path: Path, method: str, seed: int, sets: list[str] | None = None, **extra) -> None:
    metrics = {}
    for kind in F.PERTURBATIONS:
        for s in F.SEVERITIES:
            name = F.robustness_set(kind, s)
            if sets is None or name in sets:
                metrics[name] = {"frame_auc": _auc(method, seed, kind, s), "n_frames": 10}
    results = {
        "status": "complete",
        "method": method,
        "seed": seed,
        "data": "synthetic",
        "config": {"method": {"name": method}, "seed": seed},
        "metrics": metrics,
        **extra,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(results))


@pytest.fixture()
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun" / "fig7"
    _write_results(root / "0", "dpl_baseline", 0)
    _write_results(root / "1", "dpl", 0)
    _write_results(root / "2", "dpl", 1, sets=[s for s in _all_sets() if s != "noise-5"])
    _write_results(root / "3", "dpl", 2, status="running")  # unfinished: left out
    (root / "4").mkdir()
    (root / "4" / "results.json").write_text(
        json.dumps({**json.loads((root / "1" / "results.json").read_text()), "metrics": {"FF++": {}}})
    )  # another protocol: skipped
    return root


def _all_sets() -> list[str]:
    return [F.robustness_set(k, s) for k in F.PERTURBATIONS for s in F.SEVERITIES]


def test_robustness_curves_average_each_method_over_its_runs(sweep, tmp_path):
    curves = F.robustness_curves([sweep])
    assert [c.method for c in curves] == ["dpl_baseline", "dpl"]
    base, dpl = curves
    assert len(base.runs) == 1 and len(dpl.runs) == 2 and dpl.label == "dpl (mean of 2 runs)"
    assert base.label == "dpl_baseline" and dpl.data == {"synthetic"}
    for kind in F.PERTURBATIONS:
        assert base.values[kind] == pytest.approx([_auc("dpl_baseline", 0, kind, s) for s in F.SEVERITIES])
        want = [(_auc("dpl", 0, kind, s) + _auc("dpl", 1, kind, s)) / 2 for s in F.SEVERITIES]
        if kind == "noise":  # seed 1 has no noise-5: seed 0's value alone
            want[5] = _auc("dpl", 0, kind, 5)
        assert dpl.values[kind] == pytest.approx(want)
        assert dpl.values[kind][0] == dpl.values["saturation"][0]  # severity 0 is the one clean set
    # a severity no run has is a gap, not a number
    _write_results(tmp_path / "gap" / "0", "dpl", 0, sets=[s for s in _all_sets() if s != "contrast-2"])
    (gap,) = F.robustness_curves([tmp_path / "gap"])
    assert (
        math.isnan(gap.values["contrast"][2]) and np.isfinite(gap.values["contrast"][[0, 1, 3, 4, 5]]).all()
    )
    _png(F.plot_robustness(curves, tmp_path / "fig7.png"), (3.4 * 4, 3.2))


def test_robustness_command(sweep, tmp_path):
    path = F.main(["robustness", str(sweep), "--out", str(tmp_path / "figs")])
    assert path == tmp_path / "figs" / "fig7_robustness.png"
    _png(path, (3.4 * 4, 3.2))
    (sweep / "other").mkdir()
    with pytest.raises(FileNotFoundError, match="experiment=dpl/fig7"):
        F.robustness_curves([sweep / "other"])


def test_a_phased_job_is_read_from_its_last_phase(tmp_path):
    job = tmp_path / "job"
    (job / "stage2" / "checkpoints").mkdir(parents=True)
    (job / "stage1" / "checkpoints").mkdir(parents=True)
    (job / "results.json").write_text(json.dumps({"phase": "stage2"}))
    assert F.model_dir(job) == job / "stage2"
    assert F.model_dir(job / "stage1") == job / "stage1"


# -- Figs. 8-11 from a trained run ------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(ff_fixture, tmp_path_factory) -> Path:
    """A Stage I DPL run (one step) as train.py leaves it; each training frame fed at 2 qualities."""
    out = tmp_path_factory.mktemp("dpl_figures")
    overrides = [
        "data=real",
        f"paths.data_dir={ff_fixture}",
        "dataset.manipulations=[DF,F2F]",
        "method=dpl/no_stage2",
        "+scale=smoke",
        "backbone.input_size=32",
        "method.indicators.allow_random=true",
        "method.qualities=[null,[8,12]]",
        "trainer.epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.batch_size=4",
        "protocol.frames={train: 2, val: 2, test: 2}",
    ]
    train_in_process(out / "cache", out, overrides, out / "runs" / "dpl")
    return out / "runs" / "dpl"


@pytest.fixture(scope="module")
def run(run_dir):
    return F.load_dpl_run(run_dir, "cpu")


@pytest.fixture(scope="module")
def baseline(run):
    """An untrained dpl_baseline (no branches, no indicators) on the same data."""
    cfg = compose(["method=dpl/baseline", "+scale=smoke", "backbone.input_size=32"])
    torch.manual_seed(0)
    method = build_method(cfg.method, run.config.backbone).eval()
    config = OmegaConf.merge(run.config, {"method": cfg.method})
    return dataclasses.replace(run, method=method, config=config, run_dir=run.run_dir.parent / "baseline")


@pytest.mark.e2e
def test_a_run_loads_from_its_folder_or_its_job(run, run_dir, tmp_path):
    assert run.checkpoint == run_dir / "checkpoints" / "best.pt" and not run.method.training
    assert run.label == "dpl_no_stage2 (dpl)" and bool(run.method.bins_fitted)
    job = tmp_path / "job"
    (job / "stage2").mkdir(parents=True)
    os.symlink(run_dir / "checkpoints", job / "stage2" / "checkpoints")
    (job / "results.json").write_text(json.dumps({"phase": "stage2"}))
    again = F.load_dpl_run(job, "cpu")
    assert again.run_dir == job and again.label == "dpl_no_stage2 (job)"
    assert again.checkpoint == job / "stage2" / "checkpoints" / "best.pt"
    state = again.method.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in run.method.state_dict().items())


def _inputs(run, frames, perturbation=None) -> torch.Tensor:
    data = FrameDataset(frames, run.pipeline, train=False, perturbation=build_perturbation(perturbation))
    return torch.stack([data[i]["image"] for i in range(len(data))])


@pytest.mark.e2e
def test_the_default_test_set_and_its_perturbation(baseline):
    noise = {"name": "dpl_noise", "level": 5, "seed": 0}
    tests = {"in_domain": None, "noisy": {"split": "test", "perturbation": noise}, "plain": {"split": "test"}}
    both = dataclasses.replace(
        baseline, config=OmegaConf.merge(baseline.config, {"protocol": {"test": tests}})
    )
    name, table, pert = F.pick_test_set(both)
    assert (name, pert) == ("plain", None) and len(table) == 6  # the first set without a perturbation
    assert F.pick_test_set(both, "noisy")[2] == noise
    tests["plain"] = None
    noisy = dataclasses.replace(
        baseline, config=OmegaConf.merge(baseline.config, {"protocol": {"test": tests}})
    )
    name, faces, panels = F.gradcam_panels([noisy], 1)
    assert name == "noisy" and faces["domain"].tolist() == ["DF", "F2F"]  # the only set: perturbed
    want = F.shown(noisy.pipeline, _inputs(noisy, faces, noise))  # the perturbation is applied
    assert np.allclose(panels[0].images, want) and not np.allclose(
        want, F.shown(noisy.pipeline, _inputs(noisy, faces))
    )


@pytest.mark.e2e
def test_tsne_embeds_the_fused_features_of_both_runs(run, baseline, tmp_path):
    name, scatters = F.tsne_scatters([run, baseline], max_images=100, seed=0)
    assert name == "FF++" and [s.label for s in scatters] == [run.label, "dpl_baseline (baseline)"]
    _, table, _ = F.pick_test_set(run)
    x = _inputs(run, table)
    c = run.method.backbone.num_features
    with torch.no_grad():
        want = [run.method.fused_features(x), baseline.method.backbone.forward_features(x).mean(dim=(2, 3))]
    for sc, feats in zip(scatters, want, strict=True):
        assert sc.features.shape == (len(table), c) == feats.shape  # the whole (small) test set
        assert np.allclose(sc.features, feats.numpy(), atol=1e-5)  # in the table's order
        assert np.array_equal(sc.labels, table["label"].to_numpy()) and set(sc.labels) == {0, 1}
        assert sc.points.shape == (len(table), 2) and np.isfinite(sc.points).all()
    assert not np.allclose(scatters[0].features, scatters[1].features)
    assert np.array_equal(F.tsne_embedding(scatters[0].features, 0), scatters[0].points)  # seeded
    _, fewer = F.tsne_scatters([baseline], max_images=4, seed=1)
    assert len(fewer[0].labels) == len(fewer[0].points) == 4
    with pytest.raises(KeyError, match="no test set 'nope'"):
        F.pick_test_set(run, "nope")
    _png(F.plot_tsne(scatters, tmp_path / "tsne.png", name), (4.2 * 2, 4.2))


def _reference_cam(method, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of P(fake) = predict(x): the backbone's output captured and its gradient retained."""
    seen, forward = {}, method.backbone.forward_features

    def hooked(images):
        out = forward(images)
        out.retain_grad()
        seen["F"] = out
        return out

    method.backbone.forward_features = hooked
    try:
        with torch.enable_grad():
            prob = torch.softmax(method.forward_eval(x, method.test_steps(x))["final"].float(), -1)[:, 1]
            prob.sum().backward()
    finally:
        del method.backbone.forward_features
        method.zero_grad(set_to_none=True)
    assert torch.allclose(prob.detach(), method.predict(x), atol=1e-6)
    fmap = seen["F"]
    cam = torch.relu((fmap.grad.mean(dim=(2, 3), keepdim=True) * fmap).sum(1, keepdim=True)).detach()
    # the grad-cam package's scaling: [0, 1] by the map's own minimum and maximum, then resized
    cam = cam - cam.flatten(1).amin(1)[:, None, None, None]
    cam = cam / (1e-7 + cam.flatten(1).amax(1)[:, None, None, None])
    cam = nnf.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.flatten(1).amin(1)[:, None, None]  # and once more after resizing
    return cam / (1e-7 + cam.flatten(1).amax(1)[:, None, None])


@pytest.mark.e2e
def test_gradcam_of_fake_faces_per_manipulation(run, baseline, tmp_path):
    name, faces, panels = F.gradcam_panels([run, baseline], PER_MANIPULATION)
    assert name == "FF++" and faces["domain"].tolist() == ["DF", "DF", "F2F", "F2F"]
    assert (faces["label"] == 1).all() and faces.index.is_unique
    size = run.pipeline.size
    x = _inputs(run, faces)
    for panel, r in zip(panels, (run, baseline), strict=True):
        assert panel.images.shape == (4, size, size, 3) and panel.cams.shape == (4, size, size)
        assert panel.cams.min() >= 0 and panel.cams.max() <= 1
        assert np.allclose(panel.probs, r.method.predict(x).numpy(), atol=1e-6)
    # against an independent Grad-CAM of P(fake), at 64 px (a 2x2 feature map: a map that varies)
    x64 = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    nonzero = 0
    for r in (run, baseline):
        ours = F.dpl_grad_cam(r.method, x64)
        assert ours.shape == (6, 64, 64) and not r.method.training
        assert torch.allclose(ours, _reference_cam(r.method, x64), atol=1e-4)
        nonzero += int((ours.flatten(1).amax(1) > 0).sum())
    assert nonzero > 0
    assert "forward_features" not in vars(run.method.backbone)  # the substitution was undone
    _png(F.plot_gradcam(faces, panels, tmp_path / "cam.png", name), (1.5 * 4 + 0.4, 1.6 * 3 + 0.5))


@pytest.mark.e2e
def test_levels_use_the_fitted_bins_on_the_training_frames(run, tmp_path):
    levels = F.level_examples(run, per_level=2, max_images=1000, seed=0)
    q = len(run.method.qualities)
    n_train = 24  # 4 training videos x (real, DF, F2F) x 2 frames
    m = n_train * q
    assert levels.scores.shape == levels.steps.shape == (m, 2) and len(levels.rows) == m
    assert np.array_equal(np.bincount(levels.rows), np.full(n_train, q))
    assert (levels.qualities[::q] == F.STORED).all() and (
        (levels.qualities[1::q] >= 8) & (levels.qualities[1::q] <= 12)
    ).all()
    assert set(levels.labels) == {0, 1}
    for j, kind in enumerate(F.KINDS):
        steps = levels.steps[:, j]
        assert set(steps) <= set(range(1, 6))
        for step, (lo, hi) in enumerate(levels.intervals[kind], start=1):
            s = levels.scores[steps == step, j]
            assert ((s >= lo) & ((s < hi) | (hi == 100))).all(), (kind, step, lo, hi)
        # all the frames training scored, so the equal-count bins it fitted on them hold m/5 each
        counts = np.bincount(steps, minlength=6)[1:]
        assert counts.sum() == m and np.all(np.abs(counts - m / 5) <= 1.5), counts
        for step, pick in enumerate(levels.picks[kind], start=1):
            assert len(pick) == min(2, counts[step - 1]) and (steps[pick] == step).all()
            assert np.all(np.diff(levels.scores[pick, j]) <= 0)  # highest score first
    picked = {int(i) for p in levels.picks.values() for pick in p for i in pick}
    assert set(levels.images) == picked
    assert all(
        img.shape == (32, 32, 3) and 0 <= img.min() <= img.max() <= 1 for img in levels.images.values()
    )
    fewer = F.level_examples(run, per_level=1, max_images=5, seed=1)
    assert len(fewer.rows) == 5 * q
    _png(F.plot_levels(levels, tmp_path / "levels.png", run.label), (1.7 * 5 + 0.3, 2 * (1.75 * 2 + 0.7)))


@pytest.mark.e2e
def test_levels_need_indicators(baseline):
    with pytest.raises(TypeError, match="no indicators"):
        F.level_examples(baseline)


@pytest.mark.e2e
def test_model_commands(run_dir, tmp_path):
    common = ["--out", str(tmp_path), "--device", "cpu"]
    tsne = F.main(["tsne", str(run_dir), "--num-workers", "0", *common])
    cam = F.main(["gradcam", str(run_dir), "--baseline", str(run_dir), "--per-manipulation", "1", *common])
    levels = F.main(["levels", str(run_dir), "--per-level", "1", "--max-images", "4", *common])
    assert [tsne, cam, levels] == [tmp_path / F.FILENAMES[k] for k in ("tsne", "gradcam", "levels")]
    _png(tsne, (4.2, 4.2))
    _png(cam, (1.5 * 2 + 0.4, 1.6 * 3 + 0.5))
    _png(levels, (1.7 * 5 + 0.3, 2 * (1.75 + 0.7)))
    with pytest.raises(SystemExit):
        F.main(["gradcam", str(run_dir)])  # --baseline is required
