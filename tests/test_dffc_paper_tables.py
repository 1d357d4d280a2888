"""DFFC paper tables 1-4: loaded, shaped, and kept exactly as printed (ACC/AUC/TAR in %, SSIM as printed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from detect.tables.paper_numbers import available_paper_tables, load_paper_table

SOURCE = "000_cff740314bf79518.txt"
PAPERS_DIR = os.environ.get("DETECT_PAPERS_DIR")
"""The folder of the papers' extracted texts (not part of the repository; see docs/papers.md)."""
PAPER_TEXT = Path(PAPERS_DIR) / SOURCE if PAPERS_DIR else None
DETECTORS = ("Xception", "ENb4", "MAT", "Swin", "SPSL", "SRM")
VARIANTS = ("", " + DIH", " + DFFC")
DETECTOR_ROWS = tuple(f"{d}{v}" for d in DETECTORS for v in VARIANTS)
MANIPULATIONS = ("DF", "F2F", "FS", "NT", "FSh")

# table -> (rows, columns, metrics, level)
SHAPES = {
    "table1": (DETECTOR_ROWS, MANIPULATIONS, ("ACC",), "frame"),
    "table2": (DETECTOR_ROWS, ("DF", "CDF", "Wild", "DFDC-P", "DFD"), ("AUC",), "video"),
    "table3": (
        ("Xception", "Xception + DIH", "Xception + DFFC"),
        ("F2F", "FS", "NT", "FSh", "Avg"),
        ("AUC",),
        "video",
    ),
    "table4": (("Top", "Bottom"), MANIPULATIONS, ("TAR", "SSIM"), "frame"),
}

# (table, row, column, metric, printed text)
CELLS = [
    ("table1", "Xception", "DF", "ACC", "95.15"),
    ("table1", "Xception + DFFC", "NT", "ACC", "79.50"),  # trailing zero kept
    ("table1", "ENb4 + DIH", "F2F", "ACC", "90.55"),
    ("table1", "MAT + DFFC", "FSh", "ACC", "95.12"),  # below MAT + DIH (95.45)
    ("table1", "Swin", "FS", "ACC", "92.00"),
    ("table1", "SPSL + DIH", "DF", "ACC", "96.10"),
    ("table1", "SRM", "FSh", "ACC", "93.36"),
    ("table1", "SRM + DFFC", "DF", "ACC", "96.48"),
    ("table1", "SRM + DFFC", "FSh", "ACC", "94.89"),
    ("table2", "Xception", "DFD", "AUC", "90.60"),
    ("table2", "Xception + DIH", "Wild", "AUC", "59.91"),
    ("table2", "ENb4 + DFFC", "DFDC-P", "AUC", "89.33"),
    ("table2", "MAT", "DFDC-P", "AUC", "76.30"),
    ("table2", "Swin + DFFC", "CDF", "AUC", "92.26"),
    ("table2", "SPSL + DFFC", "DFD", "AUC", "92.23"),  # below SPSL + DIH (92.38)
    ("table2", "SRM + DIH", "Wild", "AUC", "57.81"),
    ("table2", "SRM + DFFC", "DF", "AUC", "99.74"),
    ("table2", "SRM + DFFC", "DFD", "AUC", "93.68"),
    ("table3", "Xception", "F2F", "AUC", "71.13"),
    ("table3", "Xception", "Avg", "AUC", "69.42"),
    ("table3", "Xception + DIH", "F2F", "AUC", "76.70"),
    ("table3", "Xception + DFFC", "NT", "AUC", "78.70"),
    ("table3", "Xception + DFFC", "FSh", "AUC", "75.14"),
    ("table3", "Xception + DFFC", "Avg", "AUC", "75.06"),
    ("table4", "Top", "DF", "TAR", "2.72"),
    ("table4", "Top", "F2F", "SSIM", "0.9920"),  # trailing zero kept
    ("table4", "Top", "FSh", "SSIM", "0.9886"),
    ("table4", "Bottom", "FS", "TAR", "11.31"),
    ("table4", "Bottom", "NT", "TAR", "5.40"),
    ("table4", "Bottom", "NT", "SSIM", "0.9674"),
    ("table4", "Bottom", "FSh", "TAR", "10.84"),
]


def test_all_four_tables_listed() -> None:
    assert available_paper_tables()["dffc"] == sorted(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_table_loads_with_its_shape(name: str) -> None:
    rows, columns, metrics, level = SHAPES[name]
    t = load_paper_table("dffc", name)
    assert (t.paper, t.table) == ("dffc", name)
    assert t.source["file"] == SOURCE and t.source["table"] == name.removeprefix("table")
    assert t.row_names == rows and t.columns == columns and t.metrics == metrics
    assert len(t.row_names) == len(rows) and len(t.columns) == len(columns)
    assert t.level == level and t.unit == "percent" and t.notes and t.caption
    assert len(t.to_frame()) == len(rows) * len(columns) * len(metrics)
    assert t.to_frame()["value"].notna().all()


def test_row_and_column_counts() -> None:
    counts = {n: (len(r), len(c), len(m)) for n, (r, c, m, _) in SHAPES.items()}
    assert counts == {"table1": (18, 5, 1), "table2": (18, 5, 1), "table3": (3, 5, 1), "table4": (2, 5, 2)}


@pytest.mark.parametrize(("name", "row", "column", "metric", "text"), CELLS)
def test_printed_cell(name: str, row: str, column: str, metric: str, text: str) -> None:
    t = load_paper_table("dffc", name)
    assert t.text(row, column, metric) == text
    assert t.value(row, column, metric) == pytest.approx(float(text))


def test_every_table_has_checked_cells_in_its_last_row_and_last_column() -> None:
    for name, (rows, columns, metrics, _) in SHAPES.items():
        checked = [(r, c, m) for t, r, c, m, _ in CELLS if t == name]
        assert len(checked) >= 4, name
        assert any(r == rows[-1] for r, _, _ in checked), name
        assert any(c == columns[-1] for _, c, _ in checked), name
        assert {m for _, _, m in checked} == set(metrics), name


def test_one_metric_tables_need_no_metric_name() -> None:
    assert load_paper_table("dffc", "table1").text("SRM + DFFC", "FSh") == "94.89"
    with pytest.raises(KeyError):
        load_paper_table("dffc", "table4").value("Bottom", "NT")


def test_table3_avg_is_the_rounded_mean_of_its_four_columns() -> None:
    t = load_paper_table("dffc", "table3")
    for row in t.row_names:
        mean = sum(t.value(row, c) for c in t.columns[:-1]) / 4
        assert abs(mean - t.value(row, "Avg")) < 0.005 + 1e-9, row


def test_table3_repeats_no_table2_cell() -> None:
    """Table 3 tests Xception (trained on DF HQ as in Table 2) on the four other manipulations."""
    t2, t3 = load_paper_table("dffc", "table2"), load_paper_table("dffc", "table3")
    assert set(t3.row_names) <= set(t2.row_names)
    assert not set(t3.columns) & set(t2.columns)


def test_table4_top_dfh_fakes_have_lower_tar_and_higher_ssim() -> None:
    """Sec. 3.3: fakes with top DFH "involve low TAR and high SSIM" (true in every printed column)."""
    t = load_paper_table("dffc", "table4")
    for c in t.columns:
        assert t.value("Top", c, "TAR") < t.value("Bottom", c, "TAR"), c
        assert t.value("Top", c, "SSIM") > t.value("Bottom", c, "SSIM"), c
        assert 0 < t.value("Bottom", c, "SSIM") < 1, c


# ------------------------------------------------------------ every cell against the extracted text

NUMBER = re.compile(r"\d+\.\d+")
HEADERS = {"table1": "Methods", "table2": "Methods", "table3": "Method", "table4": "Metric DFH-idx"}
METRIC_LINES = {"TAR(%)": "TAR", "SSIM": "SSIM"}  # Table 4's metric blocks


def _printed_rows(name: str, n_columns: int) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """(printed column names, [(stored row name, metric block or "", printed cells)]) for ``Table N.``.

    The extracted text is space-separated with blank lines inside the tables; a table's body ends at the
    first non-blank line that is neither a row (a name and ``n_columns`` numbers) nor a metric block.
    """
    lines = PAPER_TEXT.read_text(encoding="utf-8").splitlines()
    number = name.removeprefix("table")
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"Table {number}. "))
    header = next(i for i in range(start, len(lines)) if lines[i].startswith(HEADERS[name] + " "))
    columns = lines[header].removeprefix(HEADERS[name] + " ").split()
    rows, detector, metric = [], "", ""
    for ln in lines[header + 1 :]:
        if not ln.strip():
            continue
        if ln.strip() in METRIC_LINES:
            metric = METRIC_LINES[ln.strip()]
            continue
        tokens = ln.split()
        cells = tokens[-n_columns:]
        if len(tokens) <= n_columns or not all(NUMBER.fullmatch(c) for c in cells):
            break
        printed = re.sub(r" \[\d+\]$", "", " ".join(tokens[:-n_columns]))  # "Xception [23]" -> "Xception"
        variant = re.fullmatch(r"\+ ?(DIH|DFFC)", printed)
        if variant:  # "+ DIH" / "+DFFC": the detector printed on the line above
            rows.append((f"{detector} + {variant.group(1)}", metric, cells))
        else:
            detector = printed
            rows.append((printed, metric, cells))
    return columns, rows


@pytest.mark.skipif(
    PAPER_TEXT is None,
    reason=f"DETECT_PAPERS_DIR is unset: set it to the folder holding the papers' extracted texts ({SOURCE})"
    " to check these tables against the printed text",
)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_cell_matches_the_paper_text(name: str) -> None:
    t = load_paper_table("dffc", name)
    columns, printed = _printed_rows(name, len(t.columns))
    assert tuple(columns) == t.columns
    assert len(printed) == len(t.row_names) * len(t.metrics)
    for metric in t.metrics:
        block = [(r, cells) for r, m, cells in printed if m == (metric if len(t.metrics) > 1 else "")]
        assert [r for r, _ in block] == list(t.row_names), metric
        for row, cells in block:
            texts = [t.text(row, c, metric) for c in t.columns]
            assert cells == texts, (row, metric)
