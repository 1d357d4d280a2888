"""Configuration: every group option composes, precedence is explicit, bad choices fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONF, compose
from omegaconf import OmegaConf

TEST_CONF = Path(__file__).parent / "conf"
SEARCH = f"hydra.searchpath=[file://{TEST_CONF}]"


def test_default_composition():
    cfg = compose([])
    assert cfg.data.kind == "synthetic" and cfg.dataset.name == "FaceForensics++"
    assert cfg.method.name == "baseline" and cfg.logger.kind == "wandb" and cfg.logger.mode == "offline"
    assert cfg.input.size == cfg.backbone.input_size


def test_method_config_is_not_overridden_by_global_defaults():
    """DeepfakeBench's defect 6: a global config silently overrode the detector's. Here the order is
    explicit: global defaults < the method's own settings < experiment < scale < command line."""
    base = compose([])
    assert base.trainer.epochs == 5 and base.protocol.frames.train == 8  # global defaults
    cfg = compose([SEARCH, "method=paper_like"])
    assert cfg.trainer.epochs == 20 and cfg.trainer.batch_size == 24  # the method wins over the defaults
    assert cfg.protocol.frames.train == 32 and cfg.protocol.frames.test == 8  # only what it sets
    assert cfg.method.optim.lr == 0.1
    cli = compose([SEARCH, "method=paper_like", "trainer.epochs=2", "protocol=cross_dataset"])
    assert cli.trainer.epochs == 2  # the command line wins over the method
    assert cli.protocol.frames.train == 32  # the method's frames survive another protocol choice
    smoke = compose([SEARCH, "method=paper_like", "+scale=smoke"])
    assert smoke.trainer.epochs == 2 and smoke.backbone.name == "tiny"  # scale beats the method


@pytest.mark.parametrize(
    "group", ["dataset", "backbone", "protocol", "method", "runtime", "logger", "augment", "data"]
)
def test_every_option_composes(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        cfg = compose([f"{group}={path.stem}"])
        OmegaConf.to_container(cfg, resolve=False)
        if group == "dataset":
            d = cfg.dataset
            assert d.name and d.index.endswith(".json") and d.labels
            assert any(v.label == 0 for v in d.labels.values()) and any(
                v.label == 1 for v in d.labels.values()
            )


def test_ff_overrides_and_real_data_paths(tmp_path):
    cfg = compose(
        [
            "data=real",
            f"paths.data_dir={tmp_path}",
            "dataset.compression=c40",
            "dataset.manipulations=[DF,F2F]",
        ]
    )
    assert cfg.dataset.index == f"{tmp_path}/dataset_json/FaceForensics++.json"
    assert cfg.dataset.compression == "c40" and list(cfg.dataset.manipulations) == ["DF", "F2F"]


def test_scale_paper_requires_weights_decision(tmp_path):
    from detect.engine.run_config import check_pretrained

    cfg = compose(["+scale=paper"])
    with pytest.raises(ValueError, match=r"backbone\.pretrained=/path/to/.*or backbone\.pretrained=false"):
        check_pretrained(cfg)
    check_pretrained(compose(["+scale=paper", "backbone.pretrained=false"]))


def test_real_data_missing_names_what_is_missing(tmp_path):
    from detect.data.protocol import load_sets, protocol_sets

    cfg = compose(["data=real", f"paths.data_dir={tmp_path}", "protocol=cross_dataset"])
    with pytest.raises(FileNotFoundError) as err:
        load_sets(protocol_sets(cfg))
    msg = str(err.value)
    for what in (
        "FaceForensics++.json",
        "Celeb-DF-v2.json",
        "DFDC.json",
        "WildDeepfake.json",
        "data=synthetic",
    ):
        assert what in msg
