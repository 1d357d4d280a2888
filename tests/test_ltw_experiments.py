"""LTW's experiments (conf/experiment/ltw/): each composes at both scales and on both data switches with
methods that exist, and LTW's Table 2 renders from a sweep's results.json files (rows assembled from one
run per GID benchmark) beside the paper's numbers; aggregates (GCD-OthersAVG) are means over test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CONF, compose
from omegaconf import OmegaConf

from detect.data.protocol import protocol_sets
from detect.tables.builder import Run, TableSpec, build_table, render_markdown, with_aggregates
from detect.tables.paper_numbers import load_paper_table

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment" / "ltw").glob("*.yaml"))


def _jobs(cfg) -> list[list[str]]:
    """The override lists of the sweep ``cfg`` (composed with its ``hydra`` keys) runs, one per job."""
    jobs = [[]]
    for key, values in cfg.hydra.sweeper.params.items():
        jobs = [j + [f"{key}={v}"] for j in jobs for v in str(values).split(",")]
    return jobs


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name):
    assert {"table2", "table3", "table4", "table5", "table6", "fig5"} <= set(EXPERIMENTS)
    cfg = compose([f"experiment=ltw/{name}"], hydra_keys=True)
    first = _jobs(cfg)[0]
    for scale in ("smoke", "paper"):
        for data in ("synthetic", "real"):
            run = compose([f"experiment=ltw/{name}", f"scale={scale}", f"data={data}", *first])
            assert run.data.kind == data and run.method._target_
            if scale == "paper":
                assert run.backbone.pretrained is None
    spec = TableSpec.from_mapping(dict(cfg.table_spec))
    if spec.paper:
        paper = load_paper_table(spec.paper, spec.table)
        assert set(spec.row_map.values()) <= set(paper.rows)
        assert {spec.column_map.get(t, t) for t in spec.test_sets} <= set(paper.columns)


def test_table2_renders_from_a_sweep(tmp_path: Path):
    sweep = compose(["experiment=ltw/table2"], hydra_keys=True)
    spec = TableSpec.from_mapping(dict(sweep.table_spec))
    runs = []
    for i, job in enumerate(_jobs(sweep)):
        cfg = compose(["experiment=ltw/table2", *job])
        test = next(iter(protocol_sets(cfg, roles=("test",))["test"]))
        metrics = {test: {"acc": 0.5 + i / 100, "logloss": 0.7, "auc": 0.6, "eer": 0.4}}
        metrics[test] = {f"frame_{k}": v for k, v in metrics[test].items()}
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
        runs.append(Run(path, res))
    table = build_table(runs, spec)
    assert table.rows == ["alltrain", "basemodel", "focal", "forensic_transfer", "ltw", "mldg", "multitask"]
    md = render_markdown(table, load_paper_table("ltw", "table2"))
    assert "GID-DF23 frame_acc" in md and "GID-F2F40 frame_eer" in md
    assert "| ltw | Ours |" in md and "0.856" in md  # the paper's ACC of LTW on GID-DF23 beside ours
    # every row of the paper's table is run here (ForensicTransfer's printed ACC beside ours)
    assert "| forensic_transfer | ForensicTransfer |" in md and "| — |" not in md
    assert "| multitask | Multi-task |" in md
    # each row is assembled from its four benchmark runs: no cell is empty
    assert all(cell.n == 1 for cell in table.cells.values())


def test_aggregates_average_the_named_test_sets(tmp_path: Path):
    run = Run(tmp_path, {"metrics": {"A": {"frame_auc": 0.6, "n": 3}, "B": {"frame_auc": 0.8, "n": 5}}})
    out = with_aggregates(run, {"AVG": ["A", "B"], "MISSING": ["A", "C"]})
    assert out.results["metrics"]["AVG"]["frame_auc"] == pytest.approx(0.7)
    assert "MISSING" not in out.results["metrics"]


def test_basemodel_never_trains_and_no_meta_is_two_phases():
    base = compose(["method=ltw/basemodel", "+scale=smoke"])
    assert base.trainer.max_steps == 0  # the scale's epochs do not make it train
    no_meta = compose(["method=ltw/no_meta", "+scale=smoke"])
    first, second = no_meta.phases
    assert first.name == "ltw" and not first.set
    assert second.set["init_from"] == "phase:ltw"
    assert second.set["method.meta_weight"] == 0.0 and second.set["method.weight_grad"] is False


@pytest.mark.e2e
@pytest.mark.long
def test_table2_smoke_sweep_renders(synthetic_cache, tmp_path: Path):
    """A reduced smoke-scale sweep of experiment=ltw/table2 (two rows × two benchmarks) through train.py -m,
    rendered by make_tables.py with the runs' own table_spec beside the paper's numbers."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DETECT_CACHE_DIR": str(synthetic_cache), "DETECT_OUTPUT_DIR": str(tmp_path)}
    overrides = [
        "experiment=ltw/table2",
        "method=ltw/mldg,ltw",  # the command line narrows the experiment's sweep
        "protocol.held_out=DF,F2F",
        "protocol.compression=c23",
        "run_name=t2",
        "logger=none",
        "trainer.progress=false",
        "trainer.epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_eval_batches=1",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *overrides], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = subprocess.run(
        [sys.executable, "scripts/make_tables.py", str(tmp_path / "multirun" / "t2")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert table.returncode == 0, table.stderr[-3000:]
    out = table.stdout
    assert "| ltw |" in out and "| mldg |" in out and "GID-F2F23 frame_logloss" in out
    assert "| ltw | Ours |" in out and "| mldg | MLDG |" in out  # the paper's rows beside ours
