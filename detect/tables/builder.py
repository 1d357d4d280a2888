"""Gather ``results.json`` files into a table: rows chosen by config keys, columns = test sets × metrics.

Each cell is the mean ± sample standard deviation (ddof = 1) over the runs that differ only by seed;
the number of seeds is shown. Runs whose ``status`` is not ``complete`` (or whose file is unreadable)
are listed under the table and left out. Every rendered table says which data its numbers come from
(``data`` in results.json); numbers from the synthetic benchmark are labelled as not comparable to
the paper's. With a paper table named, the paper's printed numbers for the same rows/columns follow.

Row keys are dotted paths into the run's resolved ``config`` (``method._name_``, ``backbone.name``);
``results.<field>`` reads a top-level field of results.json instead (``results.method``).

A table whose rows are kinds of metric rather than runs (DFFC Table 4: rows Top and Bottom, metrics TAR and
SSIM, from our ``tar_top``, ``tar_bottom``, ``ssim_top``, ``ssim_bottom``) declares ``metric_rows``: each run
is split into one row per entry, its metrics renamed as the entry says, the entry's name under the row key
``results.metric_row``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.tables.paper_numbers import PAPERS_DIR, PaperTable, load_paper_table
from detect.utils.io import atomic_write_text

DATA_KINDS = ("real", "synthetic")
DEFAULT_IGNORE = ("seed", "paths", "hydra", "logger", "runtime", "wandb")
METRIC_ROW_KEY = "results.metric_row"
SYNTHETIC_CAVEAT = "synthetic benchmark — not comparable to the paper's numbers"
_METRIC_ALIASES = {
    "auc": ("auc",),
    "eer": ("eer",),
    "acc": ("acc", "accuracy"),
    "ap": ("ap", "map"),
    "logloss": ("logloss", "log loss", "loss"),
}


@dataclass(frozen=True)
class Run:
    """One complete run: its results.json path and content."""

    path: Path
    results: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.results["config"]

    @property
    def seed(self) -> int:
        return int(self.results["seed"])

    @property
    def data(self) -> str:
        return str(self.results["data"])


@dataclass(frozen=True)
class Excluded:
    """A results.json that was left out, and why."""

    path: Path
    reason: str


@dataclass
class TableSpec:
    """What a table shows; see the module docstring. Maps translate our names into the paper's."""

    rows: list[str] = field(default_factory=lambda: ["results.method", "results.backbone"])
    metrics: list[str] = field(default_factory=lambda: ["frame_auc"])
    test_sets: list[str] | None = None
    paper: str | None = None
    table: str | None = None
    row_map: dict[str, str] = field(default_factory=dict)
    column_map: dict[str, str] = field(default_factory=dict)
    metric_map: dict[str, str] = field(default_factory=dict)
    ignore_keys: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE))
    where: dict[str, str] = field(default_factory=dict)
    aggregates: dict[str, list[str]] = field(default_factory=dict)
    metric_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    digits: int = 3
    title: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TableSpec:
        """Build from a dict (e.g. a spec YAML); unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown table spec keys {unknown}; known: {sorted(known)}")
        return cls(**dict(raw))

    def __post_init__(self) -> None:
        if not self.rows or not self.metrics:
            raise ValueError("a table needs at least one row key and one metric")
        if (self.paper is None) != (self.table is None):
            raise ValueError("name both the paper and its table (e.g. paper=ltw table=table2), or neither")
        if self.metric_rows and METRIC_ROW_KEY not in self.rows:
            raise ValueError(
                f"metric_rows splits each run into rows named by {METRIC_ROW_KEY!r}: add it to rows "
                f"(rows={self.rows})"
            )


@dataclass
class Cell:
    """The values of one cell, one per seed (NaN where the metric was undefined)."""

    seeds: list[int]
    values: list[float]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if not math.isnan(v)]

    @property
    def n(self) -> int:
        return len(self.finite)

    @property
    def mean(self) -> float:
        return float(np.mean(self.finite)) if self.finite else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.finite, ddof=1)) if self.n > 1 else float("nan")


@dataclass
class ResultTable:
    """A built table: row labels, columns ``(test set, metric)``, cells, and what was left out."""

    spec: TableSpec
    rows: list[str]
    row_data: dict[str, str]
    columns: list[tuple[str, str]]
    cells: dict[tuple[str, tuple[str, str]], Cell]
    excluded: list[Excluded] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stand_ins: dict[str, list[str]] = field(default_factory=dict)  # row -> networks run as random stand-ins

    @property
    def data_kinds(self) -> list[str]:
        return sorted(set(self.row_data.values()))


# ---------------------------------------------------------------- gathering

#: Marks a row whose runs used a seeded random stand-in for a pretrained network (see :func:`stand_in_parts`).
STAND_IN_MARK = " †"


def stand_in_parts(results: Mapping[str, Any]) -> list[str]:
    """The parts of a run's ``method_info`` recorded with ``random_init: true``: networks a method loads from
    a local checkpoint that ran as seeded random stand-ins (DPL's CLIP indicators, IID's face recogniser on a
    machine without their weights), as dotted paths."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            if node.get("random_init") is True:
                found.append(path or "method")
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))

    walk(results.get("method_info") or {}, "")
    return sorted(found)


def find_results(dirs: Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``results.json`` under ``dirs`` (recursively), sorted."""
    found: set[Path] = set()
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"no run directory {d}")
        found.update(p.resolve() for p in d.rglob("results.json"))
    return sorted(found)


def _check_results(res: Any) -> str | None:
    """Why a results.json cannot be used, or None."""
    if not isinstance(res, dict):
        return "not a JSON object"
    status = res.get("status")
    if status != "complete":
        return f"status {status!r} (not 'complete')"
    lacking = [k for k in ("config", "seed", "data", "metrics") if k not in res]
    if lacking:
        return f"lacks {lacking}"
    if res["data"] not in DATA_KINDS:
        return f"data {res['data']!r} is neither of {list(DATA_KINDS)}"
    return None


def load_runs(dirs: Iterable[str | os.PathLike]) -> tuple[list[Run], list[Excluded]]:
    """Complete runs under ``dirs``, and the results.json files left out (with the reason)."""
    runs, excluded = [], []
    for path in find_results(dirs):
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            excluded.append(Excluded(path, f"unreadable: {exc}"))
            continue
        reason = _check_results(res)
        if reason:
            excluded.append(Excluded(path, reason))
        else:
            runs.append(Run(path, res))
    return runs, excluded


def experiment_spec(runs: Sequence[Run]) -> dict | None:
    """The ``table_spec`` the runs' experiment config declares (``conf/experiment/<paper>/<table>.yaml``):
    None when none declares one; an error when the runs come from experiments with different specs."""
    specs = {json.dumps(r.config.get("table_spec"), sort_keys=True) for r in runs}
    specs.discard("null")
    if len(specs) > 1:
        raise ValueError(
            f"the runs come from {len(specs)} experiments with different table_spec: tabulate one sweep "
            "folder at a time, or pass --spec / --rows"
        )
    return json.loads(specs.pop()) if specs else None


def latest_run_dir(root: str | os.PathLike = "outputs/multirun") -> Path:
    """The newest Hydra multirun folder: ``root/<date>/<time>`` by name (stops at a ``multirun.yaml``)."""
    current = Path(root)
    for _ in range(2):
        if (current / "multirun.yaml").exists():
            break
        children = sorted(p for p in current.iterdir() if p.is_dir()) if current.is_dir() else []
        if not children:
            if current == Path(root):
                raise FileNotFoundError(f"no run folders under {root}; pass the run directory explicitly")
            break
        current = children[-1]
    return current


# ---------------------------------------------------------------- grouping


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "+".join(_fmt_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def get_key(run: Run, key: str) -> Any:
    """A row key's value: a dotted path into ``config``, or ``results.<field>``."""
    node: Any = run.results if key.startswith("results.") else run.config
    parts = key.split(".")[1:] if key.startswith("results.") else key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(parts[:i]) or "<top>"
            have = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise KeyError(f"{run.path}: key {key!r} not found (at {where!r}: has {have})")
        node = node[part]
    return node


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to string values (lists and scalars as leaves)."""
    out: dict[str, str] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True, default=str)
    return out


def _ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(key == ig or key.startswith(ig + ".") for ig in ignore)


def _identity(run: Run, ignore: Sequence[str]) -> dict[str, str]:
    return {k: v for k, v in flatten(run.config).items() if not _ignored(k, ignore)}


def _check_same_config(label: str, runs: list[Run], ignore: Sequence[str]) -> None:
    """Runs grouped into one row must differ only by seed (and ignored keys)."""
    ids = [_identity(r, ignore) for r in runs]
    keys = sorted(set().union(*ids))
    differing = [k for k in keys if len({i.get(k) for i in ids}) > 1]
    if differing:
        detail = "; ".join(f"{k}: {sorted({str(i.get(k)) for i in ids})}" for k in differing[:8])
        raise ValueError(
            f"row {label!r} would merge runs that differ by more than the seed ({detail}). Add the key(s) to "
            "rows, select with where (key=value), or ignore them with ignore_keys"
        )


def _dedupe_seeds(label: str, runs: list[Run], notes: list[str]) -> list[Run]:
    """One run per seed and set of test sets: the newest results.json wins, with a note. (Runs of one row
    that test different sets, e.g. LTW's GID-DF23 and GID-F2F23 protocols, fill different cells.)"""
    by_seed: dict[tuple, list[Run]] = {}
    for r in runs:
        by_seed.setdefault((r.seed, tuple(sorted(r.results["metrics"]))), []).append(r)
    kept = []
    for (seed, _), same in sorted(by_seed.items()):
        same.sort(key=lambda r: r.path.stat().st_mtime_ns)
        if len(same) > 1:
            notes.append(f"row {label!r}: {len(same)} runs with seed {seed}; kept the newest {same[-1].path}")
        kept.append(same[-1])
    return kept


def _matches(run: Run, where: Mapping[str, str]) -> bool:
    return all(_fmt_value(get_key(run, k)) == str(v) for k, v in where.items())


def _test_sets(runs: list[Run], spec: TableSpec) -> list[str]:
    if spec.test_sets is not None:
        return list(spec.test_sets)
    seen: dict[str, None] = {}
    for r in runs:
        seen.update(dict.fromkeys(r.results["metrics"]))
    return list(seen)


def with_aggregates(run: Run, aggregates: Mapping[str, Sequence[str]]) -> Run:
    """``run`` with aggregate test sets added: each metric the plain mean over the named sets of this run
    (e.g. LTW's GCD-OthersAVG over its four FF++ sets); absent when the run lacks one of them."""
    metrics = dict(run.results["metrics"])
    for name, parts in aggregates.items():
        if not all(p in metrics for p in parts):
            continue
        keys = set.intersection(*(set(metrics[p]) for p in parts))
        agg = {}
        for k in sorted(keys):
            values = [metrics[p][k] for p in parts]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                agg[k] = float(np.mean(values))
        metrics[name] = agg
    return Run(run.path, {**run.results, "metrics": metrics})


def with_metric_rows(run: Run, metric_rows: Mapping[str, Mapping[str, str]]) -> list[Run]:
    """``run`` split into one run per entry of ``metric_rows``, the entry's name in ``results.metric_row`` (a
    row key) and, in every test set, its metrics renamed ours -> the table's (the others kept), e.g. DFFC
    Table 4: ``{Top: {tar_top: tar, ssim_top: ssim}, Bottom: {tar_bottom: tar, ssim_bottom: ssim}}``.
    ``[run]`` when there are none."""
    if not metric_rows:
        return [run]
    out = []
    for name, renames in metric_rows.items():
        metrics = {
            ts: {**m, **{new: m[old] for old, new in renames.items() if old in m}}
            for ts, m in run.results["metrics"].items()
        }
        out.append(Run(run.path, {**run.results, "metrics": metrics, "metric_row": str(name)}))
    return out


def build_table(runs: Sequence[Run], spec: TableSpec, excluded: Sequence[Excluded] = ()) -> ResultTable:
    """Group ``runs`` into rows and seeds, and fill the cells (each run split by ``spec.metric_rows``, then
    ``spec.aggregates`` added per run)."""
    runs = [
        with_aggregates(s, spec.aggregates)
        for r in runs
        for s in with_metric_rows(r, spec.metric_rows)
        if _matches(s, spec.where)
    ]
    if not runs:
        raise ValueError(f"no complete run to tabulate (where={spec.where}, {len(excluded)} excluded)")
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        label = " / ".join(_fmt_value(get_key(r, k)) for k in spec.rows)
        groups.setdefault((label, r.data), []).append(r)
    mixed = len({d for _, d in groups}) > 1
    notes: list[str] = []
    table = ResultTable(spec, [], {}, [], {}, list(excluded), notes)
    test_sets = _test_sets(runs, spec)
    table.columns = [(ts, m) for ts in test_sets for m in spec.metrics]
    for (label, data), members in sorted(groups.items()):
        row = f"{label} [{data}]" if mixed else label
        _check_same_config(row, members, spec.ignore_keys)
        members = _dedupe_seeds(row, members, notes)
        commits = {r.results.get("git_commit") for r in members}
        if len(commits) > 1:
            notes.append(f"row {row!r} mixes git commits {sorted(map(str, commits))}")
        table.rows.append(row)
        table.row_data[row] = data
        parts = sorted({p for r in members for p in stand_in_parts(r.results)})
        if parts:
            table.stand_ins[row] = parts
        for col in table.columns:
            table.cells[(row, col)] = _cell(members, *col)
    for ts in test_sets:
        if not any(ts in r.results["metrics"] for r in runs):
            notes.append(f"test set {ts!r} appears in no run")
    return table


def _cell(runs: list[Run], test_set: str, metric: str) -> Cell:
    seeds, values = [], []
    for r in runs:
        m = r.results["metrics"].get(test_set)
        if m is None:
            continue
        if metric not in m:
            raise KeyError(f"{r.path}: test set {test_set!r} has no metric {metric!r}; has {sorted(m)}")
        v = m[metric]
        seeds.append(r.seed)
        values.append(float("nan") if v is None else float(v))
    return Cell(seeds, values)


# ---------------------------------------------------------------- paper mapping


def _paper_metric(metric: str, paper: PaperTable, metric_map: Mapping[str, str]) -> str | None:
    """The paper's name for one of our metrics: the explicit map, else by name at the paper's level."""
    if metric in metric_map:
        return metric_map[metric]
    level, _, base = metric.partition("_")
    if paper.level != level or base not in _METRIC_ALIASES:
        return None
    for name in paper.metrics:
        if name.strip().lower() in _METRIC_ALIASES[base]:
            return name
    return None


def _printed_row(table: ResultTable, paper: PaperTable, prow: str) -> dict[tuple[str, str], str]:
    """The paper's printed text of row ``prow`` for each of our columns that maps to one of its cells."""
    spec, out = table.spec, {}
    for ts, m in table.columns:
        pcol = spec.column_map.get(ts, ts)
        pmet = _paper_metric(m, paper, spec.metric_map)
        if pcol in paper.columns and pmet in paper.metrics:
            out[(ts, m)] = paper.text(prow, pcol, pmet)
    return out


def paper_cells(table: ResultTable, paper: PaperTable) -> dict[tuple[str, tuple[str, str]], str]:
    """The paper's printed text for each of our cells (absent where no row/column/metric maps)."""
    out: dict[tuple[str, tuple[str, str]], str] = {}
    for row in table.rows:
        prow = table.spec.row_map.get(row, row)
        if prow in paper.rows:
            out.update({(row, col): text for col, text in _printed_row(table, paper, prow).items()})
    return out


def paper_only_rows(table: ResultTable, paper: PaperTable) -> list[tuple[str, list[str]]]:
    """The paper's rows that none of ours maps to (methods this project does not run), in the paper's order,
    with their printed text in our columns: printed below our rows so the whole paper table is there."""
    ours = {table.spec.row_map.get(r, r) for r in table.rows}
    rows = []
    for prow in paper.row_names:
        if prow not in ours:
            printed = _printed_row(table, paper, prow)
            rows.append((prow, [printed.get(c, "") for c in table.columns]))
    return rows


# ---------------------------------------------------------------- rendering


def _uniform_n(table: ResultTable) -> int | None:
    ns = {c.n for c in table.cells.values() if c.n}
    return ns.pop() if len(ns) == 1 else None


def cell_text(cell: Cell | None, digits: int, show_n: bool, pm: str = " ± ") -> str:
    """``mean ± std`` (just the mean for one seed), ``(n=k)`` when asked; ``n/a`` when undefined."""
    if cell is None or not cell.values:
        return "—"
    if not cell.n:
        return "n/a"
    text = f"{cell.mean:.{digits}f}"
    if cell.n > 1:
        text += f"{pm}{cell.std:.{digits}f}"
    return f"{text} (n={cell.n})" if show_n else text


def data_statement(table: ResultTable) -> str:
    """Which data the numbers come from, with the synthetic caveat where it applies."""
    kinds = table.data_kinds
    if kinds == ["real"]:
        return "Data: real (the datasets named in each run's config)."
    if kinds == ["synthetic"]:
        return f"Data: {SYNTHETIC_CAVEAT}."
    return f"Data: mixed — rows marked [synthetic] come from the {SYNTHETIC_CAVEAT}."


def _seed_statement(table: ResultTable) -> str:
    n = _uniform_n(table)
    if n is None:
        return "Cells: mean ± std (ddof=1) over seeds; n = number of seeds per cell."
    return (
        f"Cells: mean ± std (ddof=1) over n={n} seed(s) per cell." if n > 1 else "Cells: one seed per cell."
    )


def _headers(columns: Sequence[tuple[str, str]], n_metrics: int) -> list[str]:
    """Flat column headers: the test set, the metric, or both where both vary."""
    if n_metrics == 1:
        return [ts for ts, _ in columns]
    return [m for _, m in columns] if len(columns) == n_metrics else [f"{ts} {m}" for ts, m in columns]


def _paper_columns(table: ResultTable, paper: PaperTable) -> list[tuple[str, str]]:
    """The paper's (column, metric) names for each of our columns."""
    spec, out = table.spec, []
    for ts, m in table.columns:
        pcol = spec.column_map.get(ts, ts)
        pmet = _paper_metric(m, paper, spec.metric_map)
        out.append((pcol if pcol in paper.columns else f"{ts} (not in paper)", pmet or f"{m} (not in paper)"))
    return out


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _excluded_lines(table: ResultTable) -> list[str]:
    if not table.excluded:
        return []
    lines = [f"Excluded {len(table.excluded)} run(s):"]
    return lines + [f"- {e.path}: {e.reason}" for e in table.excluded]


def _paper_heading(paper: PaperTable, synthetic: bool) -> list[str]:
    src = ", ".join(f"{k} {v}" for k, v in paper.source.items() if v is not None)
    lines = [
        f"Paper's printed numbers: {paper.paper} {paper.table} ({src}; unit: {paper.unit}). {paper.caption}"
    ]
    if synthetic:
        lines.append(
            "For reference only: the table above comes from the synthetic benchmark and is NOT comparable "
            "to these numbers."
        )
    return lines


def _paper_row_label(table: ResultTable, row: str, paper: PaperTable) -> str:
    prow = table.spec.row_map.get(row, row)
    return prow if prow in paper.rows else "(not in paper)"


def row_label(table: ResultTable, row: str) -> str:
    """The row's label as rendered: marked when its runs used a random stand-in network."""
    return row + STAND_IN_MARK if row in table.stand_ins else row


def stand_in_lines(table: ResultTable) -> list[str]:
    """One footnote per marked row, naming the stand-in networks."""
    return [
        f"{STAND_IN_MARK.strip()} {row}: ran with a seeded random stand-in for {', '.join(parts)} "
        "(no pretrained weights given): its numbers do not measure the published method"
        for row, parts in table.stand_ins.items()
    ]


def render_markdown(table: ResultTable, paper: PaperTable | None = None) -> str:
    """The table as Markdown, with data statement, seed statement, notes, exclusions and paper numbers."""
    spec, show_n = table.spec, _uniform_n(table) is None
    header = [" / ".join(spec.rows), *_headers(table.columns, len(spec.metrics))]
    lines = [f"### {spec.title}", ""] if spec.title else []
    lines += [f"**{data_statement(table)}**", "", _seed_statement(table), "", _md_row(header)]
    lines.append("|" + "---|" * len(header))
    for row in table.rows:
        cells = [cell_text(table.cells.get((row, c)), spec.digits, show_n) for c in table.columns]
        lines.append(_md_row([row_label(table, row), *cells]))
    if paper is not None:
        printed = paper_cells(table, paper)
        lines += ["", *_paper_heading(paper, "synthetic" in table.data_kinds), ""]
        lines.append(
            _md_row(["row", "paper row", *_headers(_paper_columns(table, paper), len(spec.metrics))])
        )
        lines.append("|" + "---|" * (len(header) + 1))
        for row in table.rows:
            cells = [printed.get((row, c), "") for c in table.columns]
            lines.append(_md_row([row_label(table, row), _paper_row_label(table, row, paper), *cells]))
        for prow, cells in paper_only_rows(table, paper):
            lines.append(_md_row(["—", prow, *cells]))
    extra = [f"- {n}" for n in [*stand_in_lines(table), *table.notes]] + _excluded_lines(table)
    return "\n".join(lines + ([""] + extra if extra else [])) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "—": "--",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_header(columns: Sequence[tuple[str, str]], n_metrics: int, first: Sequence[str]) -> list[str]:
    blocks = [columns[i][0] for i in range(0, len(columns), n_metrics)]
    if n_metrics == 1 or len(blocks) == 1:
        return [" & ".join(latex_escape(x) for x in [*first, *_headers(columns, n_metrics)]) + r" \\"]
    top = [""] * len(first) + [rf"\multicolumn{{{n_metrics}}}{{c}}{{{latex_escape(t)}}}" for t in blocks]
    rules = [
        rf"\cmidrule(lr){{{len(first) + 1 + i * n_metrics}-{len(first) + (i + 1) * n_metrics}}}"
        for i in range(len(blocks))
    ]
    sub = [latex_escape(x) for x in first] + [latex_escape(m) for _, m in columns]
    return [" & ".join(top) + r" \\", " ".join(rules), " & ".join(sub) + r" \\"]


def _latex_tabular(
    columns: Sequence[tuple[str, str]], n_metrics: int, first: Sequence[str], body: list[list[str]]
) -> list[str]:
    lines = [r"\begin{tabular}{" + "l" * len(first) + "c" * len(columns) + "}", r"\toprule"]
    lines += _latex_header(columns, n_metrics, first) + [r"\midrule"]
    lines += [" & ".join(latex_escape(x) for x in cells) + r" \\" for cells in body]
    return lines + [r"\bottomrule", r"\end{tabular}"]


def render_latex(table: ResultTable, paper: PaperTable | None = None) -> str:
    """The table as a booktabs ``tabular`` with the data statement in the caption (and the paper's)."""
    spec, show_n = table.spec, _uniform_n(table) is None
    body = [
        [
            row_label(table, row),
            *[cell_text(table.cells.get((row, c)), spec.digits, show_n) for c in table.columns],
        ]
        for row in table.rows
    ]
    title = f"{spec.title}." if spec.title and spec.title[-1] not in ".!?" else spec.title
    caption = " ".join(x for x in (title or "", data_statement(table), _seed_statement(table)) if x)
    lines = [r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(caption) + "}"]
    first = [" / ".join(spec.rows)]
    lines += _latex_tabular(table.columns, len(spec.metrics), first, body) + [r"\end{table}"]
    if paper is not None:
        printed = paper_cells(table, paper)
        pbody = [
            [
                row_label(table, row),
                _paper_row_label(table, row, paper),
                *[printed.get((row, c), "") for c in table.columns],
            ]
            for row in table.rows
        ] + [["--", prow, *cells] for prow, cells in paper_only_rows(table, paper)]
        pcap = " ".join(_paper_heading(paper, "synthetic" in table.data_kinds))
        lines += ["", r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(pcap) + "}"]
        pcols = _paper_columns(table, paper)
        lines += _latex_tabular(pcols, len(spec.metrics), ["row", "paper row"], pbody) + [r"\end{table}"]
    extra = [f"% {n}" for n in [*stand_in_lines(table), *table.notes]] + [
        f"% {x}" for x in _excluded_lines(table)
    ]
    return "\n".join(lines + extra) + "\n"


# ---------------------------------------------------------------- entry point


FORMATS = {"md": (render_markdown, ".md"), "latex": (render_latex, ".tex")}


def make_tables(
    dirs: Sequence[str | os.PathLike],
    spec: TableSpec,
    formats: Sequence[str] = ("md",),
    output: str | os.PathLike | None = None,
    paper_root: str | os.PathLike = PAPERS_DIR,
    loaded: tuple[list[Run], list[Excluded]] | None = None,
) -> dict[str, str]:
    """Gather runs under ``dirs``, build and render the table; write ``<output>.md``/``.tex`` atomically.

    Returns ``{format: text}``. Excluded runs are listed in the output and warned about. ``loaded``: the
    ``load_runs(dirs)`` result when the caller has already read the runs.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; choose from {sorted(FORMATS)}")
    runs, excluded = loaded if loaded is not None else load_runs(dirs)
    for e in excluded:
        warnings.warn(f"excluded {e.path}: {e.reason}", stacklevel=2)
    table = build_table(runs, spec, excluded)
    paper = load_paper_table(spec.paper, spec.table, paper_root) if spec.paper and spec.table else None
    texts = {f: FORMATS[f][0](table, paper) for f in formats}
    if output is not None:
        for f, text in texts.items():
            atomic_write_text(f"{os.fspath(output)}{FORMATS[f][1]}", text)
    return texts
