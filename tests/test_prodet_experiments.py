"""ProDet's paper-table experiments (conf/experiment/prodet/table1..7): each composes at both scales and
on both data switches, sweeps methods that exist, and declares a table spec whose rows and columns are
the paper table's."""

from __future__ import annotations

import pytest
from helpers import CONF, compose

from detect.tables.builder import TableSpec
from detect.tables.paper_numbers import load_paper_table

TABLES = sorted(p.stem for p in (CONF / "experiment" / "prodet").glob("table*.yaml"))


def test_one_experiment_per_paper_table():
    assert [f"table{i}" for i in range(1, 8)] == TABLES


@pytest.mark.parametrize("table", TABLES)
def test_experiment_composes_at_both_scales_and_on_both_data(table):
    for scale in ("smoke", "paper"):
        for data in ("synthetic", "real"):
            run = compose([f"experiment=prodet/{table}", f"scale={scale}", f"data={data}", "method=prodet"])
            assert run.data.kind == data
            if scale == "smoke":
                assert run.backbone.name == "tiny" and run.trainer.epochs <= 2
            else:  # the paper's settings; ImageNet weights need a decision (a local file or false)
                assert run.backbone.pretrained is None and run.backbone.name == "effb4"
                assert run.trainer.epochs == 20 and run.backbone.input_size == 256


@pytest.mark.parametrize("table", TABLES)
def test_table_spec_matches_the_paper_table(table):
    cfg = compose([f"experiment=prodet/{table}"], hydra_keys=True)
    spec = TableSpec.from_mapping(dict(cfg.table_spec))
    paper = load_paper_table(spec.paper, spec.table)
    methods = str(cfg.hydra.sweeper.params.method).split(",")
    names, runs = set(), {}
    for m in methods:  # every swept method composes within the experiment
        run = runs[m] = compose([f"experiment=prodet/{table}", f"method={m}"])
        assert run.backbone.name == "tiny"
        names.add(run.method.name)
    assert set(spec.row_map) == names  # every run has its paper row
    assert set(spec.row_map.values()) <= set(paper.rows)
    columns = [spec.column_map.get(t, t) for t in spec.test_sets]
    assert set(columns) <= set(paper.columns)
    run = runs.get("prodet") or compose([f"experiment=prodet/{table}", "method=prodet"])
    tests = {("FF++" if k == "in_domain" else k) for k, v in run.protocol.test.items() if v is not None}
    assert set(spec.test_sets) == tests


def test_table3_sbi_row_is_the_plain_sbi_detector():
    """Table 3's "SBI" row repeats Table 1's SBI numbers exactly, so it runs Table 1's SBI detector."""
    t1, t3 = (load_paper_table("prodet", t) for t in ("table1", "table3"))
    for col in ("FF++", "CDFv1", "CDFv2", "DFDCP"):
        assert t3.value("SBI", col) == t1.value("SBI", col)
    cfg = compose(["experiment=prodet/table3"], hydra_keys=True)
    assert cfg.table_spec.row_map["sbi_dfb"] == "SBI" and "prodet_anchors_s" not in cfg.table_spec.row_map
    assert str(cfg.hydra.sweeper.params.method).split(",")[0] == "sbi/dfb"
    t1 = compose(["experiment=prodet/table1"], hydra_keys=True)
    assert (
        "sbi/dfb" in str(t1.hydra.sweeper.params.method).split(",")
        and t1.table_spec.row_map["sbi_dfb"] == "SBI"
    )
    run = compose(["experiment=prodet/table3", "method=sbi/dfb"]).method
    assert run._target_ == "detect.methods.self_blended.SBI" and run.name == "sbi_dfb"
    assert "oriented_weight" not in run and "bridge" not in run  # no ProDet heads or bridging
