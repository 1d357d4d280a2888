"""Every comparison detector (each top-level ``conf/method`` option but the four papers' methods, which have
their own end-to-end tests) trains and evaluates end to end at smoke scale on the synthetic benchmark:
``python train.py method=<option> +scale=smoke``, in process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import compose, train_in_process

from detect.analysis.detector_bench import method_options
from detect.engine.scoring import evaluate_checkpoint

CONF = Path(__file__).resolve().parents[1] / "conf"
PAPERS_METHODS = {"dpl", "ltw", "prodet"}
DETECTORS = [m for m in method_options(CONF) if m not in PAPERS_METHODS]
#: Smoke scale swaps in the tiny CNN; a ViT-only detector names the tiny ViT and its blocks instead.


def test_the_smoke_list_holds_the_comparison_detectors() -> None:
    assert {"srm", "spsl", "mat"} <= set(DETECTORS) and not PAPERS_METHODS & set(DETECTORS)


@pytest.mark.e2e
@pytest.mark.long
@pytest.mark.parametrize("option", DETECTORS)
def test_detector_trains_and_evaluates_at_smoke_scale(option: str, synthetic_cache: Path, tmp_path: Path):
    trainer = train_in_process(
        synthetic_cache,
        tmp_path,
        [f"method={option}", "+scale=smoke", "runtime.num_workers=0"],
    )
    res = trainer.results
    auc = res["metrics"]["FF++"]["frame_auc"]
    print(f"{option}: FF++ frame AUC {auc:.3f} (smoke scale, seed 0)")
    assert math.isfinite(auc) and 0.0 <= auc <= 1.0
    assert (trainer.run_dir / "results.json").is_file()
    assert any(trainer.run_dir.glob("**/*.pt")), "no checkpoint written"


@pytest.mark.e2e
def test_a_clip_detector_trains_on_consecutive_synthetic_clips(tmp_path: Path):
    """make test's smoke run of the clip detectors (the full list above is long): FTCN at smoke scale on a
    small synthetic benchmark storing 2 clips of 4 consecutive frames per video (DF only, no stand-ins),
    scored per video from its clips."""
    small = [
        "+data.generator.n_source_videos=6",
        "+data.generator.methods=[DF]",
        "+data.generator.standins=[]",
        "dataset.manipulations=[DF]",
        "runtime.num_workers=0",
        "trainer.epochs=1",
    ]
    trainer = train_in_process(tmp_path / "cache", tmp_path, ["method=ftcn", "+scale=smoke", *small])
    ff = trainer.results["metrics"]["FF++"]
    assert trainer.results["config"]["data"]["generator"]["clips"] == 2  # the recipe asked for clips
    assert ff["n_clips"] == 2 * ff["n_videos"] and ff["n_frames"] == 4 * ff["n_clips"]
    assert math.isfinite(ff["video_auc"]) and (trainer.run_dir / "results.json").is_file()
    # eval.py composes no method (so no recipe asks for clips): it takes the training's synthetic clips
    ckpt = trainer.run_dir / "checkpoints" / "best.pt"
    data = [o for o in small if o.startswith(("+data.", "dataset."))]
    paths = [f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path}", "logger=none"]
    cfg = compose([*paths, *data, f"ckpt={ckpt}", "trainer.progress=false"], "eval")
    assert cfg.data.generator.clips == 0
    evaluated = evaluate_checkpoint(cfg, tmp_path / "eval")
    assert evaluated["config"]["data"]["generator"]["clips"] == 2
    assert evaluated["metrics"]["FF++"]["n_clips"] == ff["n_clips"]
    assert evaluated["metrics"]["FF++"]["video_auc"] == pytest.approx(ff["video_auc"])
