"""The numbers a paper prints, stored as data: ``detect/tables/papers/<paper>/<table>.yaml``.

Values are kept exactly as printed: the text (``0.170``, ``0.32``) beside its float, and printed
averages are never recomputed (some do not equal the mean of their columns). File layout::

    paper: ltw                      # must match the folder name
    table: table2                   # must match the file name
    title: Domain General Face Forgery Detection by Learning to Weight (AAAI 2021)
    caption: Performance on the GID-DF23/40 and GID-F2F23/40 benchmarks. ...
    source: {file: 002_e896d2657c978f6c.txt, table: 2, page: null}
    level: frame                    # optional: frame | video (which of our metrics it matches)
    unit: fraction                  # optional: fraction (default) | percent
    metrics: [ACC, LOSS, AUC, EER]  # or `metric: AUC` for a one-metric table
    columns: [GID-DF23, GID-DF40]
    rows:
      MLDG:
        GID-DF23: {ACC: 0.842, LOSS: 0.760, AUC: 0.918, EER: 0.152}   # one metric: a bare value
        GID-DF40: {ACC: 0.671, LOSS: null, AUC: 0.730, EER: 0.329}     # null: the paper prints "-"
    notes: free text (optional)

Every row lists every column and every metric; a number the paper leaves out is ``null``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

PAPERS_DIR = Path(__file__).parent / "papers"
_REQUIRED = ("paper", "table", "caption", "source", "columns", "rows")
_OPTIONAL = ("title", "level", "unit", "metric", "metrics", "notes")
_MISSING_TEXT = ("-", "–", "—")


@dataclass(frozen=True)
class Printed:
    """One printed cell: ``text`` as in the paper and its ``value`` (None where the paper prints "-")."""

    value: float | None
    text: str


class PaperTableError(ValueError):
    """A paper-table file is malformed; the message names the file and the key."""


class _PrintedLoader(yaml.SafeLoader):
    """SafeLoader that keeps a number's source text (``0.170`` stays ``0.170``)."""


def _construct_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Printed:
    return Printed(float(loader.construct_scalar(node)), node.value)


_PrintedLoader.add_constructor("tag:yaml.org,2002:float", _construct_number)
_PrintedLoader.add_constructor("tag:yaml.org,2002:int", _construct_number)


@dataclass(frozen=True)
class PaperTable:
    """A paper table: ``rows[row][column][metric] -> Printed``."""

    paper: str
    table: str
    caption: str
    source: dict[str, Any]
    metrics: tuple[str, ...]
    columns: tuple[str, ...]
    rows: dict[str, dict[str, dict[str, Printed]]]
    title: str = ""
    level: str | None = None
    unit: str = "fraction"
    notes: str = ""
    path: str = ""

    @property
    def row_names(self) -> tuple[str, ...]:
        """Rows in the paper's order."""
        return tuple(self.rows)

    def cell(self, row: str, column: str, metric: str | None = None) -> Printed:
        """The printed cell; ``metric`` may be omitted for one-metric tables."""
        if metric is None:
            if len(self.metrics) != 1:
                raise KeyError(f"{self.path}: the table has metrics {list(self.metrics)}; name one")
            metric = self.metrics[0]
        for what, name, known in (("row", row, self.rows), ("column", column, self.columns)):
            if name not in known:
                raise KeyError(f"{self.path}: no {what} {name!r}; {what}s are {list(known)}")
        if metric not in self.metrics:
            raise KeyError(f"{self.path}: no metric {metric!r}; metrics are {list(self.metrics)}")
        return self.rows[row][column][metric]

    def value(self, row: str, column: str, metric: str | None = None) -> float | None:
        """The printed number as a float (None where the paper prints "-")."""
        return self.cell(row, column, metric).value

    def text(self, row: str, column: str, metric: str | None = None) -> str:
        """The printed number as printed ("-" where the paper prints none)."""
        return self.cell(row, column, metric).text

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per (row, column, metric) with ``value`` and ``text``."""
        recs = [
            (r, c, m, cell.value, cell.text)
            for r in self.row_names
            for c in self.columns
            for m, cell in self.rows[r][c].items()
        ]
        return pd.DataFrame(recs, columns=["row", "column", "metric", "value", "text"])


def _err(path: str, key: str, msg: str) -> PaperTableError:
    return PaperTableError(f"{path}: {key}: {msg}")


def _name(raw: Any) -> str:
    """A key or name as written (``23`` stays ``23``, not ``23.0``)."""
    return raw.text if isinstance(raw, Printed) else str(raw)


def _printed(raw: Any, path: str, key: str) -> Printed:
    if isinstance(raw, Printed):
        return raw
    if raw is None:
        return Printed(None, "-")
    if isinstance(raw, str):
        if raw.strip() in _MISSING_TEXT:
            return Printed(None, raw.strip())
        try:
            return Printed(float(raw), raw.strip())
        except ValueError:
            pass
    raise _err(path, key, f"expected a number or null (the paper prints '-'), got {raw!r}")


def _str_list(raw: Any, path: str, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise _err(path, key, f"expected a non-empty list, got {raw!r}")
    names = tuple(_name(x) for x in raw)
    if len(set(names)) != len(names):
        raise _err(path, key, f"duplicate names in {list(names)}")
    return names


def _metrics(doc: dict, path: str) -> tuple[str, ...]:
    if ("metric" in doc) == ("metrics" in doc):
        raise _err(path, "metric/metrics", "give exactly one of 'metric: NAME' or 'metrics: [NAMES]'")
    if "metric" in doc:
        return (_name(doc["metric"]),)
    return _str_list(doc["metrics"], path, "metrics")


def _parse_cell(raw: Any, metrics: tuple[str, ...], path: str, key: str) -> dict[str, Printed]:
    if len(metrics) == 1 and not isinstance(raw, dict):
        return {metrics[0]: _printed(raw, path, key)}
    if not isinstance(raw, dict):
        raise _err(path, key, f"expected a mapping metric -> value for metrics {list(metrics)}, got {raw!r}")
    names = {_name(k): v for k, v in raw.items()}
    extra = sorted(set(names) - set(metrics))
    lacking = [m for m in metrics if m not in names]
    if extra or lacking:
        raise _err(path, key, f"metrics must be exactly {list(metrics)} (missing {lacking}, unknown {extra})")
    return {m: _printed(names[m], path, f"{key}.{m}") for m in metrics}


def _parse_rows(doc: dict, columns: tuple[str, ...], metrics: tuple[str, ...], path: str) -> dict:
    raw_rows = doc["rows"]
    if not isinstance(raw_rows, dict) or not raw_rows:
        raise _err(path, "rows", "expected a non-empty mapping row -> column -> value")
    rows: dict[str, dict[str, dict[str, Printed]]] = {}
    for rname, cells in raw_rows.items():
        rkey = f"rows.{rname}"
        if not isinstance(cells, dict):
            raise _err(path, rkey, f"expected a mapping column -> value, got {cells!r}")
        cells = {_name(k): v for k, v in cells.items()}
        extra = sorted(set(cells) - set(columns))
        lacking = [c for c in columns if c not in cells]
        if extra or lacking:
            raise _err(
                path, rkey, f"columns must be exactly {list(columns)} (missing {lacking}, unknown {extra})"
            )
        rows[_name(rname)] = {c: _parse_cell(cells[c], metrics, path, f"{rkey}.{c}") for c in columns}
    return rows


def parse_paper_table(doc: Any, path: str = "<memory>") -> PaperTable:
    """Validate a loaded YAML document and build the :class:`PaperTable`."""
    if not isinstance(doc, dict):
        raise _err(path, "<top>", "expected a mapping")
    lacking = [k for k in _REQUIRED if k not in doc]
    unknown = sorted(set(doc) - set(_REQUIRED) - set(_OPTIONAL))
    if lacking or unknown:
        raise _err(path, "<top>", f"missing keys {lacking}, unknown keys {unknown}")
    if not isinstance(doc["source"], dict) or "file" not in doc["source"]:
        raise _err(path, "source", "expected a mapping with at least 'file' (and table/page numbers)")
    unit = str(doc.get("unit", "fraction"))
    if unit not in ("fraction", "percent"):
        raise _err(path, "unit", f"expected 'fraction' or 'percent', got {unit!r}")
    level = doc.get("level")
    if level not in (None, "frame", "video"):
        raise _err(path, "level", f"expected 'frame', 'video' or absent, got {level!r}")
    metrics = _metrics(doc, path)
    columns = _str_list(doc["columns"], path, "columns")
    rows = _parse_rows(doc, columns, metrics, path)
    source = {_name(k): (v.text if isinstance(v, Printed) else v) for k, v in doc["source"].items()}
    return PaperTable(
        paper=_name(doc["paper"]),
        table=_name(doc["table"]),
        caption=_name(doc["caption"]),
        source=source,
        metrics=metrics,
        columns=columns,
        rows=rows,
        title=_name(doc.get("title", "")),
        level=level,
        unit=unit,
        notes=_name(doc.get("notes", "")),
        path=path,
    )


def load_paper_table_file(path: str | os.PathLike) -> PaperTable:
    """Load and validate one paper-table YAML file."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.load(fh, Loader=_PrintedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PaperTableError(f"{path}: not valid YAML: {exc}") from exc
    return parse_paper_table(doc, path)


def available_paper_tables(root: str | os.PathLike = PAPERS_DIR) -> dict[str, list[str]]:
    """``{paper: [table, ...]}`` for every file under ``root``."""
    root = Path(root)
    return {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in sorted(root.iterdir()) if p.is_dir()}


def load_paper_table(paper: str, table: str, root: str | os.PathLike = PAPERS_DIR) -> PaperTable:
    """Load ``<root>/<paper>/<table>.yaml``; its ``paper``/``table`` keys must match the names."""
    path = Path(root) / paper / f"{table}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no paper table {path}; available: {available_paper_tables(root)}")
    loaded = load_paper_table_file(path)
    for key, want in (("paper", paper), ("table", table)):
        if getattr(loaded, key) != want:
            raise _err(
                str(path), key, f"is {getattr(loaded, key)!r} but the file sits at {paper}/{table}.yaml"
            )
    return loaded
