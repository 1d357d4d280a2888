"""Methods declare what their training data must hold; training checks it before any work, evaluation
asks for none of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import compose, write_ff_fixture
from omegaconf import OmegaConf, open_dict

from detect.data.sample_table import COLUMNS
from detect.engine.data_needs import NEEDS, check_data_needs, method_needs, missing_needs


def _table(tmp_path: Path, with_files: bool = True) -> pd.DataFrame:
    """Two source videos x 2 frames: reals, DF and F2F fakes made from them, landmark and mask files."""
    rows = []
    for src in ("000", "001"):
        for label, domain in ((0, "real"), (1, "DF"), (1, "F2F")):
            for frame in (0, 1):
                stem = tmp_path / f"{domain}_{src}_{frame}"
                lm, mask = stem.with_suffix(".npy"), stem.with_suffix(".mask.png")
                if with_files:
                    np.save(lm, np.zeros((81, 2), np.float32))
                    mask.write_bytes(b"x")
                rows.append(
                    dict(
                        path=str(stem.with_suffix(".png")),
                        label=label,
                        label_name=f"FF-{domain}",
                        dataset="FaceForensics++",
                        domain=domain,
                        compression="c23",
                        split="train",
                        video=f"{domain}/{src}",
                        video_id=src,
                        source_video=f"real/{src}",
                        frame=frame,
                        landmark_path=str(lm),
                        mask_path=str(mask) if label else None,
                    )
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_a_complete_table_meets_the_needs_it_can_hold(tmp_path):
    table = _table(tmp_path)
    met = {"landmarks", "masks", "manipulation_labels", "aligned_groups", "clips"}
    assert missing_needs(met, table) == {}
    missing = missing_needs(NEEDS, table)
    assert set(missing) == {"identity_labels", "multi_quality"}
    assert "no 'identity' column" in missing["identity_labels"]
    assert "levels found: ['c23']" in missing["multi_quality"]


def test_each_need_names_what_is_missing(tmp_path):
    table = _table(tmp_path, with_files=False)
    missing = missing_needs({"landmarks", "masks"}, table)
    assert missing["landmarks"].startswith("4 of 4 real frames have no file in 'landmark_path'")
    assert missing["masks"].startswith("8 of 8 fake frames have no file in 'mask_path'")
    one_domain = _table(tmp_path)[lambda t: t["domain"] != "F2F"]
    assert (
        "1 manipulation name(s) ['DF']"
        in missing_needs({"manipulation_labels"}, one_domain)["manipulation_labels"]
    )
    unpaired = _table(tmp_path).assign(source_video=lambda t: t["video"])
    assert (
        "no training fake was made from a training real"
        in missing_needs({"aligned_groups"}, unpaired)["aligned_groups"]
    )
    stills = _table(tmp_path)[lambda t: t["frame"] == 0]
    assert "6 of 6 training videos have a single frame" in missing_needs({"clips"}, stills)["clips"]
    two_levels = pd.concat([_table(tmp_path), _table(tmp_path).assign(compression="c40")])
    assert missing_needs({"multi_quality"}, two_levels) == {}
    with pytest.raises(ValueError, match="unknown data needs \\['normals'\\]"):
        missing_needs({"normals"}, table)


def test_methods_declare_their_needs_from_their_config():
    assert method_needs(compose(["method=prodet"]).method) == {"landmarks", "aligned_groups"}
    assert method_needs(compose(["method=prodet/sbi"]).method) == {"landmarks"}
    assert method_needs(compose(["method=prodet/df_only"]).method) == {"aligned_groups"}
    assert method_needs(compose(["method=ltw"]).method) == {"manipulation_labels", "aligned_groups"}
    for name in ("baseline", "srm", "spsl", "mat", "dpl"):
        assert method_needs(compose([f"method={name}"]).method) == frozenset(), name


def test_the_message_names_the_method_the_need_and_the_dataset(tmp_path):
    cfg = compose(["method=prodet"])
    with pytest.raises(ValueError) as err:
        check_data_needs(cfg.method, _table(tmp_path, with_files=False), "FaceForensics++")
    text = str(err.value)
    assert text.startswith("method 'prodet' needs landmarks from its training data, which dataset ")
    assert "'FaceForensics++' does not provide" in text
    assert "landmarks (a landmark file for every real training frame): 4 of 4 real frames" in text


@pytest.fixture(scope="module")
def ff_without_landmarks(tmp_path_factory) -> Path:
    root = write_ff_fixture(tmp_path_factory.mktemp("ff_no_landmarks"))
    for folder in list(root.rglob("landmarks")):
        shutil.rmtree(folder)
    return root


def _real_overrides(data: Path, out: Path) -> list[str]:
    return [
        "data=real",
        f"paths.data_dir={data}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={out / 'cache'}",
        "logger=none",
        "runtime.num_workers=0",
        "trainer.progress=false",
        "dataset.manipulations=[DF,F2F]",
    ]


def test_training_stops_before_building_the_method_and_evaluation_needs_no_landmarks(
    ff_without_landmarks, tmp_path, monkeypatch
):
    import detect.engine.trainer as trainer_module
    from detect.engine.checkpoint import save_checkpoint
    from detect.engine.method_builder import build_method
    from detect.engine.scoring import evaluate_checkpoint
    from detect.engine.trainer import Trainer

    overrides = [*_real_overrides(ff_without_landmarks, tmp_path), "method=prodet", "+scale=smoke"]
    overrides += ["backbone.input_size=32", "method.feature_dim=8", "method.hidden_dim=8"]
    cfg = compose(overrides)

    def no_build(*args, **kwargs):
        raise AssertionError("the method was built before its data needs were checked")

    monkeypatch.setattr(trainer_module, "build_method", no_build)
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="method 'prodet' needs landmarks from its training data") as err:
        trainer.setup()
    assert "dataset 'FaceForensics++' does not provide" in str(err.value)
    assert "real frames have no file in 'landmark_path'" in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
    monkeypatch.undo()

    # a ProDet checkpoint (its weights untrained: evaluation only reads them) scores the same table
    method = build_method(cfg.method, cfg.backbone)
    ckpt = tmp_path / "prodet.pt"
    save_checkpoint(
        ckpt, {"method": method.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True), "epoch": 1}
    )
    eval_cfg = compose(
        [*_real_overrides(ff_without_landmarks, tmp_path), f"ckpt={ckpt}", "trainer.limit_eval_batches=1"],
        config_name="eval",
    )
    with open_dict(eval_cfg):
        eval_cfg.runtime.device = "cpu"
    results = evaluate_checkpoint(eval_cfg, tmp_path / "eval")
    assert results["method"] == "prodet" and results["metrics"]["FF++"]["n_frames"] > 0
