"""Paper-numbers files and the results.json table builder (grouping, mean ± std, labels, caveats, output)."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import pytest

from detect.tables.builder import (
    SYNTHETIC_CAVEAT,
    TableSpec,
    build_table,
    latest_run_dir,
    load_runs,
    make_tables,
    render_latex,
    render_markdown,
)
from detect.tables.paper_numbers import PaperTableError, load_paper_table

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_tables.py"

# ---------------------------------------------------------------- paper numbers


def test_ltw_table2_kept_as_printed() -> None:
    t = load_paper_table("ltw", "table2")
    assert t.metrics == ("ACC", "LOSS", "AUC", "EER") and t.level == "frame"
    assert t.row_names[0] == "Basemodel" and t.row_names[-1] == "Ours"
    assert t.text("Alltrain-Basemodel", "GID-DF23", "EER") == "0.170"
    assert t.value("Alltrain-Basemodel", "GID-DF23", "EER") == pytest.approx(0.17)
    assert t.text("Alltrain-Basemodel", "GID-DF40", "EER") == "0.32"
    assert t.value("ForensicTransfer", "GID-DF23", "AUC") is None
    assert t.text("ForensicTransfer", "GID-DF23", "AUC") == "-"
    assert t.value("Ours", "GID-DF23", "AUC") == pytest.approx(0.927)
    assert t.source["file"] == "002_e896d2657c978f6c.txt" and t.source["table"] == "2"
    assert len(t.to_frame()) == 7 * 4 * 4


def _write_paper(root: Path, body: str, paper: str = "demo", table: str = "t1") -> Path:
    path = root / paper / f"{table}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


AVG_TABLE = """
paper: demo
table: t1
caption: A table whose printed average is not the mean of its columns.
source: {file: demo.txt, table: 1, page: 7}
metric: AUC
unit: percent
columns: [A, B, Avg]
rows:
  Ours: {A: 80.0, B: 90.0, Avg: 86.0}
  Other: {A: 70.5, B: null, Avg: "-"}
"""


def test_printed_average_is_not_recomputed(tmp_path: Path) -> None:
    _write_paper(tmp_path, AVG_TABLE)
    t = load_paper_table("demo", "t1", root=tmp_path)
    assert t.value("Ours", "Avg") == 86.0 != (80.0 + 90.0) / 2
    assert t.text("Ours", "A") == "80.0" and t.unit == "percent"
    assert t.value("Other", "B") is None and t.text("Other", "Avg") == "-"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            ("Ours: {A: 80.0, B: 90.0, Avg: 86.0}", "Ours: {A: 80.0, B: 90.0}"),
            r"t1\.yaml: rows\.Ours: .*missing \['Avg'\]",
        ),
        (("Ours: {A: 80.0,", "Ours: {A: high,"), r"rows\.Ours\.A: expected a number"),
        (("Ours: {A: 80.0,", "Ours: {C: 1, A: 80.0,"), r"unknown \['C'\]"),
        (("caption: A table", "captions: A table"), r"missing keys \['caption'\]"),
        (("paper: demo", "paper: other"), r"paper: is 'other'"),
        (("metric: AUC", "metric: AUC\nmetrics: [AUC]"), "exactly one of"),
        (("unit: percent", "unit: permille"), "unit"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path: Path, edit: tuple[str, str], match: str) -> None:
    assert edit[0] in AVG_TABLE
    _write_paper(tmp_path, AVG_TABLE.replace(*edit))
    with pytest.raises(PaperTableError, match=match):
        load_paper_table("demo", "t1", root=tmp_path)


def test_missing_paper_table_lists_available(tmp_path: Path) -> None:
    _write_paper(tmp_path, AVG_TABLE)
    with pytest.raises(FileNotFoundError, match="'demo': \\['t1'\\]"):
        load_paper_table("demo", "t9", root=tmp_path)


# ---------------------------------------------------------------- results.json trees


def _result(
    method: str,
    seed: int,
    aucs: dict[str, float],
    data: str = "real",
    status: str = "complete",
    lr: float = 1e-3,
) -> dict:
    config = {
        "seed": seed,
        "method": {"_name_": method, "lr": lr},
        "backbone": {"name": "efficientnet_b0"},
        "paths": {"run_dir": f"/runs/{method}/{seed}"},
    }
    metrics = {
        ts: {
            "frame_auc": auc,
            "frame_eer": 1 - auc,
            "frame_ap": auc,
            "frame_acc": auc,
            "frame_logloss": 0.5,
            "video_auc": auc,
            "video_eer": 1 - auc,
            "n_frames": 10,
            "n_videos": 2,
        }
        for ts, auc in aucs.items()
    }
    return {
        "config": config,
        "git_commit": "abc123",
        "seed": seed,
        "data": data,
        "method": method,
        "backbone": "efficientnet_b0",
        "best_epoch": 3,
        "select_metric": "val/frame_auc",
        "metrics": metrics,
        "timings": {},
        "status": status,
    }


def _tree(root: Path, results: list[dict]) -> Path:
    for i, res in enumerate(results):
        path = root / str(i) / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res))
    return root


def _standard(root: Path, data: str = "real") -> Path:
    return _tree(
        root,
        [
            _result("ltw", 0, {"gid_df23": 0.90, "gid_f2f23": 0.70}, data),
            _result("ltw", 1, {"gid_df23": 0.80, "gid_f2f23": 0.80}, data),
            _result("ltw", 2, {"gid_df23": 0.85, "gid_f2f23": 0.75}, data),
            _result("baseline", 0, {"gid_df23": 0.60, "gid_f2f23": 0.50}, data),
            _result("baseline", 1, {"gid_df23": 0.70, "gid_f2f23": 0.50}, data),
            _result("baseline", 2, {"gid_df23": 0.65, "gid_f2f23": 0.50}, data),
            _result("ltw", 3, {"gid_df23": 0.10}, data, status="running"),
        ],
    )


SPEC = TableSpec(rows=["method._name_"], metrics=["frame_auc"])


def test_grouping_mean_std_and_exclusions(tmp_path: Path) -> None:
    runs, excluded = load_runs([_standard(tmp_path)])
    assert len(runs) == 6 and len(excluded) == 1 and "running" in excluded[0].reason
    table = build_table(runs, SPEC, excluded)
    assert table.rows == ["baseline", "ltw"]
    cell = table.cells[("ltw", ("gid_df23", "frame_auc"))]
    assert cell.n == 3 and sorted(cell.seeds) == [0, 1, 2]
    assert cell.mean == pytest.approx(0.85) and cell.std == pytest.approx(0.05)  # ddof=1
    md = render_markdown(table)
    assert "| method._name_ | gid_df23 | gid_f2f23 |" in md
    assert "| ltw | 0.850 ± 0.050 | 0.750 ± 0.050 |" in md
    assert "| baseline | 0.650 ± 0.050 | 0.500 ± 0.000 |" in md
    assert "n=3 seed(s) per cell" in md
    assert "Excluded 1 run(s)" in md and "status 'running'" in md
    assert "Data: real" in md and SYNTHETIC_CAVEAT not in md


def test_varying_n_is_shown_per_cell_and_duplicates_noted(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        [
            _result("ltw", 0, {"a": 0.9}),
            _result("ltw", 1, {"a": 0.7}),
            _result("base", 0, {"a": 0.6}),
            _result("base", 0, {"a": 0.4}),  # same seed again: the newer file wins
        ],
    )
    newer = root / "3" / "results.json"
    os.utime(newer, ns=(newer.stat().st_atime_ns, newer.stat().st_mtime_ns + 10**9))
    runs, excluded = load_runs([root])
    table = build_table(runs, SPEC, excluded)
    md = render_markdown(table)
    assert "| base | 0.400 (n=1) |" in md and "| ltw | 0.800 ± 0.141 (n=2) |" in md
    assert "2 runs with seed 0" in md


def test_runs_differing_beyond_seed_are_not_merged(tmp_path: Path) -> None:
    root = _tree(tmp_path, [_result("ltw", 0, {"a": 0.9}), _result("ltw", 1, {"a": 0.7}, lr=1e-4)])
    runs, _ = load_runs([root])
    with pytest.raises(ValueError, match=r"method\.lr"):
        build_table(runs, SPEC)
    by_lr = build_table(runs, TableSpec(rows=["method._name_", "method.lr"]))
    assert by_lr.rows == ["ltw / 0.0001", "ltw / 0.001"]
    only = build_table(runs, TableSpec(rows=["method._name_"], where={"method.lr": "0.001"}))
    assert only.cells[("ltw", ("a", "frame_auc"))].n == 1
    with pytest.raises(KeyError, match="'method.nope' not found"):
        build_table(runs, TableSpec(rows=["method.nope"]))


def test_synthetic_caveat_and_paper_numbers(tmp_path: Path) -> None:
    spec = TableSpec(
        rows=["method._name_"],
        metrics=["frame_auc", "frame_eer"],
        test_sets=["gid_df23"],
        paper="ltw",
        table="table2",
        row_map={"ltw": "Ours", "baseline": "Alltrain-Basemodel"},
        column_map={"gid_df23": "GID-DF23"},
    )
    with pytest.warns(UserWarning, match="excluded .*status 'running'"):
        texts = make_tables([_standard(tmp_path, "synthetic")], spec, formats=["md", "latex"])
    md = texts["md"]
    assert f"**Data: {SYNTHETIC_CAVEAT}.**" in md
    assert "NOT comparable" in md
    assert "| row | paper row | AUC | EER |" in md
    assert "| ltw | Ours | 0.927 | 0.145 |" in md  # frame_auc -> AUC, frame_eer -> EER (level frame)
    assert "| baseline | Alltrain-Basemodel | 0.911 | 0.170 |" in md  # as printed, trailing zero kept
    assert SYNTHETIC_CAVEAT.replace("—", "--") in texts["latex"]


def test_mixed_data_rows_are_marked(tmp_path: Path) -> None:
    root = _tree(tmp_path, [_result("ltw", 0, {"a": 0.9}), _result("ltw", 0, {"a": 0.6}, data="synthetic")])
    runs, _ = load_runs([root])
    table = build_table(runs, SPEC)
    assert table.rows == ["ltw [real]", "ltw [synthetic]"]
    assert "Data: mixed" in render_markdown(table)


def test_latex_output(tmp_path: Path) -> None:
    runs, excluded = load_runs([_standard(tmp_path)])
    spec = TableSpec(rows=["method._name_"], metrics=["frame_auc", "video_auc"], title="GID 50% test")
    tex = render_latex(build_table(runs, spec, excluded))
    assert r"\begin{tabular}{lcccc}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{2}{c}{gid\_df23}" in tex and r"\cmidrule(lr){2-3}" in tex
    assert r"method.\_name\_ & frame\_auc & video\_auc & frame\_auc & video\_auc \\" in tex
    assert r"ltw & 0.850 $\pm$ 0.050 & 0.850 $\pm$ 0.050" in tex
    assert r"GID 50\% test" in tex and "Data: real" in tex
    assert "% Excluded 1 run(s)" in tex


def test_cli_latest_multirun_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _tree(tmp_path / "outputs" / "multirun" / "2026-01-01" / "09-00-00", [_result("old", 0, {"a": 0.1})])
    _standard(tmp_path / "outputs" / "multirun" / "2026-01-02" / "08-00-00")
    _tree(tmp_path / "outputs" / "multirun" / "2026-01-01" / "23-00-00", [_result("old", 0, {"a": 0.1})])
    monkeypatch.chdir(tmp_path)
    assert latest_run_dir("outputs/multirun") == Path("outputs/multirun/2026-01-02/08-00-00")
    main = runpy.run_path(str(SCRIPT), run_name="make_tables")["main"]
    with pytest.warns(UserWarning, match="excluded"):
        rc = main(
            ["--rows", "method._name_", "--metrics", "frame_auc", "--format", "both", "--output", "out/t"]
        )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| ltw | 0.850 ± 0.050 |" in out and "| old |" not in out
    assert (tmp_path / "out" / "t.md").read_text().startswith("**Data: real")
    assert r"\begin{tabular}" in (tmp_path / "out" / "t.tex").read_text()

    (tmp_path / "spec.yaml").write_text("rows: [method._name_]\nmetrics: [video_auc]\ndigits: 2\n")
    with pytest.warns(UserWarning, match="excluded"):
        main(
            [
                "outputs/multirun/2026-01-02",
                "--spec",
                "spec.yaml",
                "--where",
                "method._name_=ltw",
                "--test-sets",
                "gid_df23",
            ]
        )
    out = capsys.readouterr().out
    assert "| method._name_ | gid_df23 |" in out and "| ltw | 0.85 ± 0.05 |" in out and "baseline" not in out


def test_rows_run_with_a_random_stand_in_network_are_marked(tmp_path: Path) -> None:
    """IID's face recogniser or DPL's CLIP run as seeded random stand-ins (no local weights): the row is
    marked in both renderings, with a footnote naming the network; rows without one are not."""
    iid = _result("iid", 0, {"a": 0.7})
    iid["method_info"] = {"identity_network": {"random_init": True, "seed": 0}, "freeze_id_network": True}
    dpl = _result("dpl", 0, {"a": 0.8})
    dpl["method_info"] = {"indicators": {"random_init": False}}
    runs, _ = load_runs([_tree(tmp_path, [iid, dpl])])
    table = build_table(runs, SPEC)
    assert table.stand_ins == {"iid": ["identity_network"]}
    md, tex = render_markdown(table), render_latex(table)
    assert "| iid † | 0.700 |" in md and "| dpl | 0.800 |" in md
    assert "† iid: ran with a seeded random stand-in for identity_network" in md
    assert r"iid $^\dagger$ &" in tex and "% † iid: ran with a seeded random stand-in" in tex
