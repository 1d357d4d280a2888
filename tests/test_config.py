"""Configuration: every group option composes, precedence is explicit, bad choices fail clearly."""

from __future__ import annotations

import pytest
from helpers import CONF, TEST_SEARCHPATH, compose
from omegaconf import OmegaConf

from detect.engine.schema import validate_config


def test_default_composition():
    cfg = compose([])
    assert cfg.data.kind == "synthetic" and cfg.dataset.name == "FaceForensics++"
    assert cfg.method.name == "baseline" and cfg.logger.kind == "wandb" and cfg.logger.mode == "offline"
    assert cfg.input.size == cfg.backbone.input_size


def test_method_config_is_not_overridden_by_global_defaults():
    """DeepfakeBench's defect 6: a global config silently overrode the detector's. Here the order is
    explicit: global defaults < the method's recipe < experiment < scale < command line."""
    base = compose([])
    assert base.trainer.epochs == 5 and base.protocol.frames.train == 8  # global defaults
    cfg = compose([TEST_SEARCHPATH, "method=paper_like"])
    # the method's recipe wins over the defaults
    assert cfg.trainer.epochs == 20 and cfg.trainer.batch_size == 24
    assert cfg.protocol.frames.train == 32 and cfg.protocol.frames.test == 8  # only what it sets
    assert cfg.method.optim.lr == 0.1
    cli = compose([TEST_SEARCHPATH, "method=paper_like", "trainer.epochs=2", "protocol=cross_dataset"])
    assert cli.trainer.epochs == 2  # the command line wins over the method
    assert cli.protocol.frames.train == 32  # the method's frames survive another protocol choice
    smoke = compose([TEST_SEARCHPATH, "method=paper_like", "+scale=smoke"])
    assert smoke.trainer.epochs == 2 and smoke.backbone.name == "tiny"  # scale beats the method


def _options(group: str) -> list[str]:
    """Every option of a config group, presets in sub-folders included (``prodet/no_fb``)."""
    root = CONF / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


GROUPS = [
    "dataset",
    "backbone",
    "protocol",
    "method",
    "curriculum",
    "runtime",
    "logger",
    "augment",
    "data",
    "paths",
]


def test_the_groups_listed_are_every_group():
    experiments_and_scales = {"experiment", "scale", "hydra", "test_variants"}
    assert {p.name for p in CONF.iterdir() if p.is_dir()} == set(GROUPS) | experiments_and_scales


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(group):
    targets: dict[str, str] = {"baseline": compose([]).method._target_}
    base = OmegaConf.to_container(compose(["run_name=x"]), resolve=True)
    for option in _options(group):
        cfg = compose([f"{group}={option}", "run_name=x"])
        resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        validate_config(cfg)  # what train.py checks first: an option train.py would refuse fails here
        if group == "method":
            validate_config(compose([f"method={option}", "+scale=smoke", "run_name=x"]))
        if group == "dataset":
            d = cfg.dataset
            assert d.name and d.index.endswith(".json") and d.labels
            assert any(v.label == 0 for v in d.labels.values()) and any(
                v.label == 1 for v in d.labels.values()
            )
        if group == "method":  # a preset keeps its family's class (LTW's baseline rows: the baseline's)
            family = option.split("/")[0]
            targets.setdefault(family, compose([f"method={family}"]).method._target_)
            assert cfg.method.name and cfg.method._target_ in (targets[family], targets.get("baseline"))
            # it differs from the default only under method, in the backbone its defaults list names and in
            # the keys that read its recipe
            changed = {k for k in resolved if resolved[k] != base.get(k)}
            lanes = {"method", "backbone", "input", "trainer", "protocol", "augment", "phases"}
            assert changed <= lanes, option


def test_every_experiment_and_scale_composes():
    """Each experiment composes (at scale=paper; smoke is their default) and resolves, each of the DFFC
    experiments' detector presets composes; the four papers' tests compose every experiment at both scales
    and both data switches (tests/test_{dffc,dpl,ltw,prodet}_experiments.py)."""
    experiments = [o for o in _options("experiment") if "/detector/" not in o and "/pacing/" not in o]
    assert len(experiments) == 28
    for option in experiments:
        cfg = compose([f"experiment={option}", "scale=paper"])
        OmegaConf.to_container(cfg, resolve=True)
        validate_config(cfg)
        assert cfg.table_spec.metrics and cfg.backbone.pretrained is None
    for detector in _options("experiment/dffc/detector"):
        cfg = compose(["experiment=dffc/table2", f"experiment/dffc/detector={detector}", "scale=paper"])
        assert OmegaConf.to_container(cfg, resolve=True)["method"]["name"]
    for scale in _options("scale"):
        OmegaConf.to_container(compose([f"+scale={scale}"]), resolve=True)


def test_global_package_only_in_experiments_and_scales():
    """A method (or curriculum, protocol ...) writes only its own package: `@package _global_` is for
    experiments and scales, which set keys across groups on purpose."""
    offenders = [
        str(p.relative_to(CONF))
        for p in CONF.rglob("*.yaml")
        if "@package _global_" in p.read_text()
        and p.relative_to(CONF).parts[0] not in ("experiment", "scale")
    ]
    assert offenders == []
    methods = list((CONF / "method").rglob("*.yaml"))
    assert len(methods) > 40 and not [p for p in methods if "@package" in p.read_text()]


def test_srm_keeps_the_backbone_and_input_size_the_command_line_gives():
    """A method names its paper backbone and its paper size for that backbone; a backbone or size given on
    the command line wins (SRM on Xception trains at DeepfakeBench's 256, not at Xception's 299)."""
    paper = compose(["method=srm"])
    assert (paper.backbone.name, paper.backbone.input_size, paper.input.size) == ("xception", 256, 256)
    small = compose(["method=srm", "backbone=small"])
    assert (small.backbone.name, small.backbone.input_size, small.input.size, small.input.crop) == (
        "small",
        96,
        96,
        None,
    )
    assert small.trainer.epochs == 10 and small.method.name == "srm"  # the rest of SRM's recipe stays
    sized = compose(["method=srm", "backbone.input_size=320"])
    assert sized.backbone.input_size == 320 and sized.input.size == 320
    assert compose(["method=srm", "input.size=128"]).input.size == 128
    plain = compose(["method=srm", "backbone=xception"])  # the paper's backbone, chosen by hand: its recipe
    assert plain.backbone.input_size == 256
    dpl = compose(["method=dpl", "backbone=small"])  # DPL's 224-of-256 crop is for its own backbones
    assert (dpl.input.size, dpl.input.crop) == (96, None)
    assert (compose(["method=dpl"]).input.size, compose(["method=dpl"]).input.crop) == (256, 224)


def test_prodet_on_effb4_composes_to_its_paper_recipe():
    """`method=prodet backbone=effb4`: ProDet's recipe (Cheng et al., NeurIPS 2024, Sec. 4.1 and appendix 7.2)
    on EfficientNet-B4 at 256 px."""
    cfg = compose(["method=prodet", "backbone=effb4"])
    assert cfg == compose(["method=prodet"])  # EfficientNet-B4 is the backbone ProDet names
    assert (cfg.backbone.name, cfg.backbone.input_size, cfg.input.size, cfg.input.crop) == (
        "effb4",
        256,
        256,
        None,
    )
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.sampling) == (20, 24, "natural")
    assert OmegaConf.to_container(cfg.protocol.frames, resolve=True) == {"train": 32, "val": 32, "test": 32}
    assert cfg.method.optim.lr == 2.0e-4 and cfg.method.optim.weight_decay == 5.0e-4
    assert [a._target_.split(".")[-1] for a in cfg.augment.train] == [
        "Rotate",
        "MedianBlur",
        "RandomBrightnessContrast",
        "ImageCompression",
    ]
    assert cfg.method.transition_weight == 10.0 and cfg.method.warmup_epochs == 2
    # a preset inherits the recipe and changes only what it names
    official = compose(["method=prodet/official"])
    assert official.protocol.frames.train == 8 and official.protocol.frames.test == 32
    assert official.trainer.epochs == 20 and official.augment.train[0]._target_ == "albumentations.RGBShift"


def test_the_command_line_wins_over_a_methods_recipe():
    cfg = compose(["method=prodet", "trainer.epochs=3", "trainer.batch_size=4", "protocol.frames.train=2"])
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.protocol.frames.train) == (3, 4, 2)
    assert cfg.protocol.frames.val == 32  # the rest of the recipe stays
    assert compose(["method=prodet", "augment=none"]).augment.train == []
    assert compose(["method=ltw/basemodel", "trainer.max_steps=5"]).trainer.max_steps == 5
    assert compose(["method=dpl", "phases=null"]).phases is None
    # a curriculum's recipe is read before the method's; the command line still wins
    assert compose(["method=srm", "curriculum=dffc"]).trainer.epochs == 20
    assert compose(["method=srm", "curriculum=dffc", "trainer.epochs=3"]).trainer.epochs == 3
    assert compose(["method=baseline", "curriculum=dffc"]).trainer.sampling == "natural"


def test_protocol_families_take_their_held_out_domain_and_compression():
    from detect.data.protocol import protocol_sets

    for held_out, others in (("DF", ["F2F", "FS", "NT"]), ("NT", ["DF", "F2F", "FS"])):
        for comp in ("c23", "c40"):
            cfg = compose(["protocol=gid", f"protocol.held_out={held_out}", f"protocol.compression={comp}"])
            sets = protocol_sets(cfg)
            assert sets["train"].dataset.manipulations == others == sets["val"].dataset.manipulations
            assert sets["train"].dataset.compression == comp
            name = f"GID-{held_out}{comp[1:]}"  # the paper's benchmark name
            assert list(sets["test"]) == [name]
            assert sets["test"][name].dataset.manipulations == [held_out]
            assert sets["test"][name].dataset.compression == comp
    cfg = compose(["protocol=dpl_cross_manipulation", "protocol.manipulation=FS"])
    sets = protocol_sets(cfg)
    assert sets["train"].dataset.manipulations == ["FS"]
    assert len({s.group for s in sets["test"].values()}) == 8


def test_two_test_sets_with_one_name_are_refused():
    from detect.data.protocol import protocol_sets

    cfg = compose(["protocol=gid", "+protocol.test.GID-DF23={split: test}"])
    with pytest.raises(ValueError, match="as another test set"):
        protocol_sets(cfg)


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


@pytest.mark.e2e
def test_prodet_trains_the_epochs_the_command_line_gives_with_its_recipe(synthetic_cache, tmp_path):
    """`method=prodet trainer.epochs=3` trains 3 epochs, and the rest of ProDet's recipe (its augmentation,
    natural sampling) reaches the trainer through the interpolations (tiny backbone, one batch an epoch)."""
    from helpers import train_in_process

    trainer = train_in_process(
        synthetic_cache,
        tmp_path,
        [
            "method=prodet",
            "+scale=smoke",
            "trainer.epochs=3",
            "trainer.batch_size=4",
            "trainer.limit_train_batches=1",
            "trainer.limit_eval_batches=1",
            "protocol.frames={train: 2, val: 1, test: 1}",
            "method.feature_dim=16",
            "method.hidden_dim=8",
        ],
    )
    assert trainer.results["status"] == "complete"
    assert [r["epoch"] for r in trainer.results["val_history"]] == [1, 2, 3]
    augment = [a["_target_"].split(".")[-1] for a in trainer.train_pipeline.spec["augment"]]
    assert augment == ["Rotate", "MedianBlur", "RandomBrightnessContrast", "ImageCompression"]
    assert trainer.cfg.trainer.sampling == "natural" and trainer.cfg.trainer.epochs == 3
