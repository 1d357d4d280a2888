"""predict.py agrees with eval.py: a checkpoint trained briefly on the synthetic benchmark, its test videos
written as MP4 (scripts/synthetic_videos.py's code), the video AUC from predict.py's videos.csv equals
eval.py's video AUC on the same frames (within 0.01)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import compose, train_in_process
from sklearn.metrics import roc_auc_score

from detect.data.protocol import load_sets, prepare_data, protocol_sets
from detect.engine.scoring import evaluate_checkpoint
from detect.inference.prediction import run_predict
from detect.inference.videos import write_videos


@pytest.mark.e2e
def test_video_auc_from_videos_csv_equals_eval_py(synthetic_cache: Path, tmp_path: Path) -> None:
    paths = [f"paths.cache_dir={synthetic_cache}", f"paths.output_dir={tmp_path / 'out'}"]
    run = tmp_path / "run"
    train_in_process(synthetic_cache, tmp_path / "out", ["+scale=smoke", "trainer.epochs=1"], run)
    ckpt = run / "checkpoints" / "best.pt"

    eval_cfg = compose([*paths, f"ckpt={ckpt}", "logger=none", "trainer.progress=false"], "eval")
    evaluated = evaluate_checkpoint(eval_cfg, tmp_path / "eval")["metrics"]["FF++"]

    vcfg = compose(paths, "videos")
    prepare_data(vcfg)
    sets = protocol_sets(vcfg, roles=("test",))
    table = load_sets(sets, "synthetic")["test/FF++"]
    labels = write_videos(table, tmp_path / "videos")
    assert len(labels) == evaluated["n_videos"]

    pcfg = compose(
        [*paths, f"ckpt={ckpt}", f"input={tmp_path / 'videos'}", "faces=crops", "frames=8", "progress=false"],
        "predict",
    )
    result = run_predict(pcfg, tmp_path / "predict")
    videos = pd.read_csv(tmp_path / "predict" / "videos.csv").merge(labels, on="path", validate="1:1")
    assert len(videos) == len(labels) and len(result.failures) == 0
    assert (videos["n_faces"] == 8).all()
    auc = roc_auc_score(videos["label"], videos["score"])
    print(f"video AUC: predict.py {auc:.4f}, eval.py {evaluated['video_auc']:.4f}")
    assert abs(auc - evaluated["video_auc"]) <= 0.01, (auc, evaluated["video_auc"])


@pytest.mark.e2e
@pytest.mark.long
def test_eval_py_applies_a_converted_checkpoints_input(synthetic_cache: Path, tmp_path: Path) -> None:
    """eval.py scores a converted DeepfakeBench Xception at its recorded 256 px and mean = std = 0.5
    (not the xception backbone's 299 px default): its saved probabilities equal the detector's own."""
    import cv2
    import numpy as np
    import torch
    from source_models import DfbXception, convert, randomise

    from detect.inference.load import load_detector

    src = randomise(DfbXception(), 1, 256, 0.5, 0.5)
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "xception_best.pth")
    dst = convert("dfb_xception", tmp_path / "xception_best.pth", tmp_path / "xception.pt")
    paths = [f"paths.cache_dir={synthetic_cache}", f"paths.output_dir={tmp_path / 'out'}"]
    overrides = ["logger=none", "trainer.progress=false", "trainer.limit_eval_batches=1"]
    cfg = compose([*paths, f"ckpt={dst}", *overrides, "trainer.eval_batch_size=8"], "eval")
    metrics = evaluate_checkpoint(cfg, tmp_path / "eval")["metrics"]["FF++"]
    assert metrics["n_frames"] == 8
    saved = pd.read_csv(tmp_path / "eval" / "predictions" / "FF++.csv")
    det = load_detector(dst)
    assert det.pipeline.size == 256 and det.pipeline.spec["mean"] == [0.5, 0.5, 0.5]
    images = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in saved["path"]]
    with torch.no_grad():
        own = det.method.predict(torch.stack([det.pipeline(im, augment=False) for im in images])).numpy()
    np.testing.assert_allclose(saved["prob"].to_numpy(), own, atol=1e-5)
