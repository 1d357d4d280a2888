"""ProDet (Cheng et al., NeurIPS 2024) paper tables 1-7: loaded, shaped, and kept exactly as printed."""

from __future__ import annotations

import pytest

from detect.tables.paper_numbers import available_paper_tables, load_paper_table

SOURCE = "003_678e9afbff7c0ad4.txt"

# table -> (rows, columns, metrics, level)
SHAPES = {
    "table1": (19, ("FF++", "CDFv1", "CDFv2", "DFDCP", "DFDC", "C-Avg."), ("AUC",), "frame"),
    "table2": (8, ("FF++", "CDFv1", "CDFv2", "DFDCP", "C-Avg."), ("AUC", "EER"), "frame"),
    "table3": (6, ("FF++", "CDFv1", "CDFv2", "DFDCP", "C-Avg."), ("AUC",), "frame"),
    "table4": (2, ("Block-wise", "Noise", "Shift", "Avg."), ("mPD", "AUC"), "frame"),
    "table5": (4, ("FF++", "CDFv1", "CDFv2", "DFDCP", "C-Avg."), ("AUC",), "frame"),
    "table6": (6, ("Celeb-DF-v2", "DFDC", "Avg."), ("AUC",), "video"),
    "table7": (
        4,
        ("DFD", "DF1.0", "FAVC", "WDF", "DiffSwap", "UniFace", "E4S", "BlendFace", "MobileSwap"),
        ("AUC", "video AUC"),
        "frame",
    ),
}

# (table, row, column, metric or None, printed text)
CELLS = [
    ("table1", "Xception", "FF++", None, "0.9637"),
    ("table1", "SBI", "CDFv1", None, "0.8311"),
    ("table1", "ProDet (Ours)", "FF++", None, "0.9591"),  # extracted joined as "0.95910.9094"
    ("table1", "ProDet (Ours)", "CDFv1", None, "0.9094"),
    ("table1", "ProDet (Ours)", "DFDC", None, "0.7240"),
    ("table1", "ProDet (Ours)", "C-Avg.", None, "0.8225"),
    ("table2", "BF-only", "FF++", "AUC", "0.8096"),
    ("table2", "w/o FB", "CDFv2", "EER", "0.2537"),
    ("table2", "w/o L_o", "DFDCP", "AUC", "0.7901"),
    ("table2", "w/o L_t", "CDFv1", "AUC", "0.8890"),
    ("table2", "TB (Ours)", "C-Avg.", "EER", "0.2151"),
    ("table3", "SBI", "C-Avg.", None, "0.8040"),
    ("table3", "SBI + SBI-FB + CBI + CBI-FB", "C-Avg.", None, "0.8254"),
    ("table3", "SBI + SBI-FB + CBI + CBI-FB + DF", "FF++", None, "0.9539"),
    ("table3", "SBI + SBI-FB + CBI + CBI-FB + DF + DF-FB", "CDFv1", None, "0.9094"),
    ("table4", "VHT", "Block-wise", "mPD", "1.8124"),
    ("table4", "Ours", "Noise", "mPD", "1.0355"),
    ("table4", "Ours", "Shift", "AUC", "0.9015"),
    ("table4", "Ours", "Avg.", "AUC", "0.8713"),
    ("table5", "Unorganized (VHT)", "C-Avg.", None, "0.7930"),  # printed, not the mean (0.7811)
    ("table5", "R2D2B", "CDFv1", None, "0.7935"),
    ("table5", "R2B2D (Ours)", "DFDCP", None, "0.8116"),
    ("table6", "LipForensics", "Avg.", None, "0.780"),
    ("table6", "Choi et al.", "Celeb-DF-v2", None, "0.890"),
    ("table6", "Ours", "Avg.", None, "0.848"),
    ("table7", "DF-only", "DFD", "AUC", "0.8144"),
    ("table7", "DF-only", "DFD", "video AUC", "0.8621"),
    ("table7", "BF-only", "WDF", "video AUC", "0.7965"),
    ("table7", "Ours", "DFD", "video AUC", "0.9073"),
    ("table7", "Ours", "MobileSwap", "AUC", "0.9285"),
]

# (table, row, column, metric or None): the paper prints "-"
MISSING = [
    ("table6", "AltFreezing", "DFDC", None),
    ("table6", "AltFreezing", "Avg.", None),
    ("table6", "Choi et al.", "DFDC", None),
    ("table6", "Choi et al.", "Avg.", None),
    *[("table7", row, "DiffSwap", "video AUC") for row in ("DF-only", "BF-only", "VHT", "Ours")],
]


def test_all_seven_tables_listed() -> None:
    assert available_paper_tables()["prodet"] == sorted(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_table_loads_with_its_shape(name: str) -> None:
    n_rows, columns, metrics, level = SHAPES[name]
    t = load_paper_table("prodet", name)
    assert (t.paper, t.table) == ("prodet", name)
    assert t.source["file"] == SOURCE and t.source["table"] == name.removeprefix("table")
    assert len(t.row_names) == n_rows and t.columns == columns and t.metrics == metrics
    assert t.level == level and t.unit == "fraction" and t.notes
    assert len(t.to_frame()) == n_rows * len(columns) * len(metrics)


@pytest.mark.parametrize(("name", "row", "column", "metric", "text"), CELLS)
def test_printed_cells(name: str, row: str, column: str, metric: str | None, text: str) -> None:
    t = load_paper_table("prodet", name)
    assert t.text(row, column, metric) == text
    assert t.value(row, column, metric) == pytest.approx(float(text))


@pytest.mark.parametrize(("name", "row", "column", "metric"), MISSING)
def test_dash_is_null(name: str, row: str, column: str, metric: str | None) -> None:
    t = load_paper_table("prodet", name)
    assert t.value(row, column, metric) is None and t.text(row, column, metric) == "-"


def test_trailing_zeros_kept() -> None:
    t1 = load_paper_table("prodet", "table1")
    assert t1.text("Meso4", "DFDC") == "0.5560" and t1.value("Meso4", "DFDC") == pytest.approx(0.556)
    assert t1.text("SPSL", "FF++") == "0.9610"
    assert load_paper_table("prodet", "table2").text("VHT", "CDFv2", "AUC") == "0.7710"
    assert load_paper_table("prodet", "table6").text("Ours", "DFDC") == "0.770"
    assert load_paper_table("prodet", "table7").text("DF-only", "FAVC", "video AUC") == "0.9150"


def test_row_order_as_printed() -> None:
    t1 = load_paper_table("prodet", "table1")
    assert t1.row_names[0] == "Xception" and t1.row_names[-2:] == ("UCF", "ProDet (Ours)")
    assert load_paper_table("prodet", "table2").row_names == (
        "BF-only", "VHT", "w/o L_o", "w/o FB", "w/o L_t", "M-C", "M-L", "TB (Ours)",
    )  # fmt: skip
    assert load_paper_table("prodet", "table3").row_names[:2] == ("SBI", "SBI + SBI-FB")
    assert load_paper_table("prodet", "table7").row_names == ("DF-only", "BF-only", "VHT", "Ours")


def test_full_method_agrees_across_tables() -> None:
    """ProDet's own row is printed in Tables 1, 2, 3 and 5 with the same FF++/CDF/DFDCP numbers."""
    full = {
        ("table1", "ProDet (Ours)", None),
        ("table2", "TB (Ours)", "AUC"),
        ("table3", "SBI + SBI-FB + CBI + CBI-FB + DF + DF-FB", None),
        ("table5", "R2B2D (Ours)", None),
    }
    for column in ("FF++", "CDFv1", "CDFv2", "DFDCP"):
        texts = {load_paper_table("prodet", name).text(row, column, metric) for name, row, metric in full}
        assert len(texts) == 1, (column, texts)
