"""DFFC's experiments (conf/experiment/dffc/, conf/protocol/dffc_*): each composes at both scales and on both
data switches; every swept job composes and its row maps onto the paper's table (Tables 1-4); detector presets
pair each method with the paper's backbone; rows are assembled from one run per manipulation (Tables 1 and 4);
the builder's ``metric_rows`` turns Table 4's ``tar_top``/``tar_bottom``/``ssim_*`` into rows Top and Bottom;
SRM and SPSL rows in ProDet's Table 1 and DPL's Tables 1, 2 and 4; and (e2e) a reduced Table 4 sweep through
``train.py -m`` rendered by make_tables.py beside the paper's numbers."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONF, compose
from omegaconf import OmegaConf

from detect.data.protocol import protocol_sets
from detect.tables.builder import METRIC_ROW_KEY, Run, TableSpec, build_table, render_markdown
from detect.tables.paper_numbers import load_paper_table

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment" / "dffc").glob("*.yaml"))
PAPER_TABLES = ("table1", "table2", "table3", "table4")
DETECTOR = "experiment/dffc/detector"
# detector preset -> (method._target_, the paper-scale backbone, method.name: the row's first key)
DETECTORS = {
    "xception": ("detect.methods.baseline.Baseline", "xception", "xception"),
    "effb4": ("detect.methods.baseline.Baseline", "effb4", "effb4"),
    "swin": ("detect.methods.baseline.Baseline", "swinv2_t", "swin"),
    "mat": ("detect.methods.mat.MAT", "effb4", "mat"),
    "spsl": ("detect.methods.spsl.SPSL", "xception", "spsl"),
    "srm": ("detect.methods.srm.SRM", "xception", "srm"),
}
MANIPULATIONS = ("DF", "F2F", "FS", "NT", "FSh")


def _sweep(name: str) -> dict[str, list[str]]:
    cfg = compose([f"experiment=dffc/{name}"], hydra_keys=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


def _jobs(name: str) -> list[list[str]]:
    """The sweep's grid, in Hydra's order."""
    sweep = _sweep(name)
    return [
        [f"{k}={v}" for k, v in zip(sweep, values, strict=True)]
        for values in itertools.product(*sweep.values())
    ]


def _pairwise(jobs: list[list[str]]) -> list[list[str]]:
    """Jobs of the grid that together hold every pair of swept values (each detector with each curriculum,
    each protocol with each detector and each curriculum), chosen greedily, most new pairs first: a job's
    config merges independent group choices (detector preset, curriculum, protocol), so a pair is what can
    clash; Table 1's 90 jobs become 30."""
    pairs = [set(itertools.combinations(job, 2)) or {tuple(job)} for job in jobs]
    todo = set().union(*pairs)
    kept = []
    while todo:
        best = max(range(len(jobs)), key=lambda i: len(pairs[i] & todo))
        kept.append(jobs[best])
        todo -= pairs[best]
    return kept


def _compose_all(jobs: list[list[str]], name: str) -> list:
    """``(job, cfg)`` for each job (one Hydra context for all: ~0.2 s a job)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return [(j, hcompose(config_name="train", overrides=[f"experiment=dffc/{name}", *j])) for j in jobs]


def _spec(name: str) -> TableSpec:
    return TableSpec.from_mapping(OmegaConf.to_container(compose([f"experiment=dffc/{name}"]).table_spec))


def _labels(spec: TableSpec, cfg) -> list[str]:
    """The row label(s) a run of ``cfg`` gets (one per metric_rows entry)."""
    names = list(spec.metric_rows) or [None]
    labels = []
    for row in names:
        keys = [row if k == METRIC_ROW_KEY else str(OmegaConf.select(cfg, k)) for k in spec.rows]
        labels.append(" / ".join(keys))
    return labels


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_at_both_scales_and_on_both_data(name):
    assert {"table1", "table2", "table3", "table4", "fig3"} <= set(EXPERIMENTS)
    first = _jobs(name)[0]
    for scale in ("smoke", "paper"):
        for data in ("synthetic", "real"):
            run = compose([f"experiment=dffc/{name}", f"scale={scale}", f"data={data}", *first])
            assert run.data.kind == data and run.curriculum.name and run.curriculum.data_kind == data
            if scale == "smoke":  # epoch 1 warms up, epoch 2 trains the pools (conf/experiment/dffc/pacing)
                assert run.backbone.name == "tiny" and run.trainer.epochs <= 2
                assert list(run.curriculum.milestones) == [1, 2]
            else:  # DFFC's recipe (Sec. 3.1) for every detector; ImageNet weights need a decision
                assert run.backbone.pretrained is None and run.trainer.epochs == 20
                assert run.curriculum.optim.lr == 0.1 and run.curriculum.milestones == [2, 5, 8, 12, 15]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_swept_job_composes_and_maps_onto_the_paper(name):
    spec = _spec(name)
    sweep = _sweep(name)
    labels, tested, trained = set(), set(), set()
    grid = _jobs(name)
    jobs = _pairwise(grid)
    assert len(jobs) == {"table1": 30, "table2": 18}.get(name, len(grid))
    for job, cfg in _compose_all(jobs, name):
        chosen = dict(j.split("=", 1) for j in job)
        if "curriculum" in chosen:
            assert cfg.curriculum.name == chosen["curriculum"]
        if DETECTOR in chosen:
            assert cfg.method._target_ == DETECTORS[chosen[DETECTOR]][0]
            assert cfg.method.name == DETECTORS[chosen[DETECTOR]][2]
        assert cfg.backbone.name == "tiny"  # the default scale is smoke
        labels.update(_labels(spec, cfg))
        tested.update(protocol_sets(cfg, roles=("test",))["test"])
        trained.update(cfg.protocol.train.manipulations)
    if name in ("table1", "table2"):
        assert set(sweep[DETECTOR]) == set(DETECTORS) and sweep["curriculum"] == ["vanilla", "dih", "dffc"]
    wanted = set(spec.test_sets) - set(spec.aggregates)
    if spec.metric_rows:  # Table 4: the hardness sets come from the training sets' manipulations
        assert wanted == {f"hardness-{m}" for m in trained}
    else:
        assert wanted <= tested and all(set(p) <= tested for p in spec.aggregates.values())
    if name not in PAPER_TABLES:
        assert spec.paper is None  # Fig. 3 prints no numbers: our table only
        return
    paper = load_paper_table(spec.paper, spec.table)
    assert spec.paper == "dffc" and spec.table == name
    assert labels == set(spec.row_map)  # every run's row has a paper row, and no mapping is idle
    assert set(spec.row_map.values()) == set(paper.rows)  # and every paper row is run
    assert [spec.column_map.get(t, t) for t in spec.test_sets] == list(paper.columns)
    assert {spec.metric_map[m] for m in spec.metrics} == set(paper.metrics)


def test_detector_presets_pair_each_method_with_the_papers_backbone():
    for preset, (target, backbone, row) in DETECTORS.items():
        paper = compose(["experiment=dffc/table2", f"{DETECTOR}={preset}", "scale=paper"])
        assert (paper.method._target_, paper.backbone.name, paper.method.name) == (target, backbone, row)
        smoke = compose(["experiment=dffc/table2", f"{DETECTOR}={preset}"])
        assert smoke.backbone.name == "tiny" and smoke.method.name == row
        # the curriculum replaces each detector's recipe: SGD from 0.1, natural sampling, 20 epochs
        assert paper.curriculum.optim._target_ == "torch.optim.SGD" and paper.trainer.sampling == "natural"


def test_protocols_train_test_and_name_the_papers_columns():
    for m in MANIPULATIONS:
        for comp in ("c40", "c23"):  # Table 1 (LQ), Table 4 (HQ)
            cfg = compose(
                ["protocol=dffc_within", f"protocol.manipulation={m}", f"protocol.compression={comp}"]
            )
            sets = protocol_sets(cfg)
            for role in ("train", "val"):
                assert sets[role].dataset.manipulations == [m] and sets[role].dataset.compression == comp
            assert list(sets["test"]) == [m]  # named as the paper's column
            assert (
                sets["test"][m].dataset.manipulations == [m] and sets["test"][m].dataset.compression == comp
            )
    assert compose(["protocol=dffc_within"]).protocol.compression == "c40"
    cross = compose(["protocol=dffc_cross"]).protocol
    assert cross.train.manipulations == ["DF"] and cross.train.compression == "c23"
    assert list(cross.test) == [*MANIPULATIONS, "CDF", "Wild", "DFDC-P", "DFD"]
    cross_sets = {s: cross.test[s].dataset for s in ("CDF", "Wild", "DFDC-P", "DFD")}
    assert cross_sets == {"CDF": "cdfv2", "Wild": "wdf", "DFDC-P": "dfdcp", "DFD": "dfd"}
    assert cross.datasets.cdfv2.name == "Celeb-DF-v2" and cross.datasets.dfdcp.short == "DFDC-P"


def _results(cfg, metrics: dict, tmp_path: Path, i: int) -> Run:
    res = {
        "status": "complete",
        "seed": 0,
        "data": "synthetic",
        "metrics": metrics,
        "config": OmegaConf.to_container(cfg, resolve=False),
    }
    path = tmp_path / str(i) / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(res))
    return Run(path, res)


def test_table1_rows_are_assembled_from_one_run_per_manipulation(tmp_path: Path):
    spec = _spec("table1")
    runs = []
    jobs = [j for j in _jobs("table1") if f"{DETECTOR}=xception" in j and "curriculum=vanilla" not in j]
    for i, (_, cfg) in enumerate(_compose_all(jobs, "table1")):
        test = next(iter(protocol_sets(cfg, roles=("test",))["test"]))
        runs.append(_results(cfg, {test: {"frame_acc": 0.5 + i / 1000, "frame_auc": 0.6}}, tmp_path, i))
    assert len(runs) == 10
    table = build_table(runs, spec)
    assert table.rows == ["xception / dffc", "xception / dih"]
    assert all(cell.n == 1 for cell in table.cells.values())  # five runs fill each row's five columns
    md = render_markdown(table, load_paper_table("dffc", "table1"))
    assert "| xception / dffc | Xception + DFFC | 96.43 | 90.88 | 94.64 | 79.50 | 95.36 |" in md
    assert "| — | SRM + DFFC | 96.48 |" in md  # rows not run here are printed from the paper


def test_metric_rows_split_table4_into_top_and_bottom(tmp_path: Path):
    spec = _spec("table4")
    runs = []
    for i, (_, cfg) in enumerate(_compose_all(_jobs("table4"), "table4")):
        m = cfg.protocol.train.manipulations[0]
        hardness = {
            "tar_top": 1.0 + i,
            "tar_bottom": 10.0 + i,
            "ssim_top": 0.99,
            "ssim_bottom": 0.9,
            "n_top": 4,
        }
        runs.append(_results(cfg, {m: {"frame_auc": 0.7}, f"hardness-{m}": hardness}, tmp_path, i))
    table = build_table(runs, spec)
    assert table.rows == ["xception / dffc / Bottom", "xception / dffc / Top"]
    assert table.columns[:2] == [("hardness-DF", "tar"), ("hardness-DF", "ssim")]
    top, bottom = "xception / dffc / Top", "xception / dffc / Bottom"
    assert table.cells[(top, ("hardness-F2F", "tar"))].mean == 2.0  # the F2F run (the second job)
    assert table.cells[(bottom, ("hardness-FSh", "tar"))].mean == 14.0
    assert table.cells[(bottom, ("hardness-NT", "ssim"))].mean == 0.9
    md = render_markdown(table, load_paper_table("dffc", "table4"))
    assert "| xception / dffc / Top | 1.0000 | 0.9900 | 2.0000 |" in md
    assert "| xception / dffc / Top | Top | 2.72 | 0.9874 | 1.13 | 0.9920 |" in md
    assert "| xception / dffc / Bottom | Bottom | 6.84 | 0.9012 |" in md
    assert "DF TAR | DF SSIM" in md
    with pytest.raises(ValueError, match="add it to rows"):
        TableSpec(rows=["method.name"], metrics=["tar"], metric_rows={"Top": {"tar_top": "tar"}})
    # without metric_rows nothing changes: a run is one row
    plain_spec = TableSpec(
        rows=["curriculum.name"], metrics=["tar_top"], test_sets=["hardness-DF"], ignore_keys=spec.ignore_keys
    )
    plain = build_table(runs, plain_spec)
    assert plain.rows == ["dffc"] and plain.cells[("dffc", ("hardness-DF", "tar_top"))].mean == 1.0


@pytest.mark.parametrize("experiment", ["prodet/table1", "dpl/table1", "dpl/table2", "dpl/table4"])
def test_srm_and_spsl_rows_map_in_prodet_and_dpl_tables(experiment):
    cfg = compose([f"experiment={experiment}"], hydra_keys=True)
    assert {"srm", "spsl"} <= set(str(cfg.hydra.sweeper.params.method).split(","))
    spec = TableSpec.from_mapping(OmegaConf.to_container(cfg.table_spec))
    paper = load_paper_table(spec.paper, spec.table)
    for method, row in (("srm", "SRM"), ("spsl", "SPSL")):
        run = compose([f"experiment={experiment}", f"method={method}"])
        assert run.method.name == method and spec.row_map[method] == row and row in paper.rows


@pytest.mark.e2e
@pytest.mark.long
def test_table4_smoke_sweep_renders_beside_the_paper(synthetic_cache: Path, tmp_path: Path):
    """A reduced smoke-scale sweep of experiment=dffc/table4 (Xception + DFFC on DF and on F2F, tiny backbone,
    2 epochs with milestones [1, 2] so the second epoch trains a hard pool + augmented easy pool, classical
    quality prior) through train.py -m, rendered by make_tables.py with the runs' own table_spec."""
    repo = CONF.parent
    env = {**os.environ, "DETECT_CACHE_DIR": str(synthetic_cache), "DETECT_OUTPUT_DIR": str(tmp_path)}
    overrides = [
        "experiment=dffc/table4",
        "protocol.manipulation=DF,F2F",  # the command line narrows the experiment's sweep
        "run_name=t4",
        "logger=none",
        "trainer.progress=false",
        "trainer.epochs=2",
        "curriculum.milestones=[1,2]",
        "curriculum.quality.kind=classical",
        "curriculum.analysis_n=8",
        "protocol.frames={train: 4, val: 2, test: 2}",
        "trainer.limit_eval_batches=1",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *overrides], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        res = json.loads((tmp_path / "multirun" / "t4" / job / "results.json").read_text())
        m = res["config"]["protocol"]["train"]["manipulations"][0]
        hardness = res["metrics"][f"hardness-{m}"]
        assert 0.0 <= hardness["tar_top"] <= 100.0 and 0.0 < hardness["ssim_bottom"] <= 1.0
        info = res["method_info"]
        assert info["kind"] == "dffc" and info["quality_prior"]["kind"] == "classical" and info["pool_k"] > 0
    table = subprocess.run(
        [sys.executable, "scripts/make_tables.py", str(tmp_path / "multirun" / "t4")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert table.returncode == 0, table.stderr[-3000:]
    out = table.stdout
    num = r"\d+\.\d{4}"
    # ours: DF and F2F filled (TAR %, SSIM), the three manipulations not run are empty
    assert re.search(rf"\| xception / dffc / Top \| {num} \| {num} \| {num} \| {num} \| — \|", out), out
    assert re.search(rf"\| xception / dffc / Bottom \| {num} \| {num} \| {num} \| {num} \| — \|", out), out
    # the paper's, beside ours
    assert "| xception / dffc / Top | Top | 2.72 | 0.9874 | 1.13 | 0.9920 |" in out
    assert "| xception / dffc / Bottom | Bottom | 6.84 | 0.9012 | 8.26 | 0.9489 |" in out


def test_fig3_plot_draws_one_bar_per_strategy_and_test_set(tmp_path: Path):
    """scripts/dffc_fig3.py on a fig3 sweep's results (2 seeds each): one bar per (strategy, test set), at
    the mean of the seeds, with the seeds' std as error bar; a PNG is written."""
    import importlib.util

    import matplotlib.image as mpimg

    spec_ = importlib.util.spec_from_file_location("dffc_fig3", CONF.parent / "scripts" / "dffc_fig3.py")
    fig3 = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(fig3)
    jobs = _jobs("fig3")
    assert len(jobs) == 5
    i = 0
    for j, (_, cfg) in enumerate(_compose_all(jobs, "fig3")):
        for seed in (0, 1):
            cfg.seed = seed
            sets = {ts: {"video_auc": 0.5 + 0.05 * j + 0.01 * seed} for ts in cfg.protocol.test}
            _results(cfg, sets, tmp_path, i)
            res = json.loads((tmp_path / str(i) / "results.json").read_text())
            res["seed"] = seed
            (tmp_path / str(i) / "results.json").write_text(json.dumps(res))
            i += 1
    table = fig3.fig3_table([tmp_path])
    assert len(table.rows) == 5 and [c[0] for c in table.columns] == ["DF", "CDF", "Wild", "DFDC-P", "DFD"]
    cell = table.cells[("xception / dffc", ("CDF", "video_auc"))]
    assert cell.n == 2 and cell.mean == pytest.approx(0.5 + 0.05 * 4 + 0.005)
    out = fig3.plot_fig3(table, tmp_path / "fig3.png")
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[1] > 400
