"""Imports go one way: a module of ``detect`` imports only its own layer or the layers below it, and no two
modules or sibling packages import each other (directly or round a longer loop).

The layers, lowest first (``LAYERS``):

0. ``utils``: file writing, nothing of the project.
1. ``models``: backbones, pretrained weights, the staged-backbone utility; no data, no training.
2. ``data``: sample tables, indices, images and the JPEG round trip, transforms, the datasets, blendfakes,
   the synthetic benchmark, preprocessing.
3. ``quality``: face-image quality scores (classical, IFQA, CLIP indicators), their binning and the score
   cache. It reads images and JPEG round trips from ``data`` and is read by methods (DPL, DFFC's prior);
   it knows nothing of training, so it sits above ``data`` and below ``evaluation``.
4. ``evaluation``: metrics, test-time perturbations, prediction files, feature regularity.
5. ``engine``: the trainer and what it calls: the method contract (``Method``, ``StepOutput``), the step
   context, optimiser helpers, the prediction loop, scoring of test sets (``train.py`` and ``eval.py``),
   checkpoints, runtime, loggers. It builds methods and curricula from config ``_target_`` strings and
   names none of them.
6. ``methods``: the detectors and the curriculum wrapper (``methods/curriculum/``: it wraps any detector, so
   it is a method, not a service of the engine).
7. ``inference``: ``predict.py``'s work: a detector rebuilt from a checkpoint (under the engine's trust
   rule), faces found and tracked through the preprocessing code, batched scoring, CSVs, export.
8. ``convert``: published checkpoints mapped onto the project's methods; it builds methods through the
   engine and reads the inference layer's checkpoint settings.
9. ``tables``: the paper tables rendered from finished runs' ``results.json``; only scripts use them.
10. ``analysis``: figures, run loading, PNG saving and the engine benchmark; it may rebuild any method
   from a checkpoint, and nothing below imports it.
11. ``cli``: what ``train.py`` and ``eval.py`` call (the entry points; scripts/ sit above everything).

An import is every ``import``/``from ... import`` (module level, inside functions, under
``if TYPE_CHECKING:``; relative ones resolved) and every string constant naming a module of the package
(``"detect.methods.dpl.DPL"``), which Hydra or ``importlib`` would import.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "detect"
LAYERS = (
    "utils",
    "models",
    "data",
    "quality",
    "evaluation",
    "engine",
    "methods",
    "inference",
    "convert",
    "tables",
    "analysis",
    "cli",
)
TARGET = re.compile(rf"^{PACKAGE}(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` (``how``: import, from, string)."""

    source: str
    target: str
    line: int
    how: str


def module_files(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of ``root/detect`` (packages by their ``__init__``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules``."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def _is_package(module: str, files: dict[str, Path]) -> bool:
    return files[module].name == "__init__.py"


def imports_of(module: str, source: str, files: dict[str, Path]) -> list[Edge]:
    """Every import of the package's modules in ``source`` (the text of ``module``)."""
    modules = set(files)
    edges = []
    package = module if _is_package(module, files) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    edges.append(Edge(module, target, node.lineno, "import"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # ``from pkg import submodule`` imports the submodule; ``from pkg import name`` the package
                sub = f"{name}.{alias.name}"
                target = sub if sub in modules else _resolve(name, modules)
                if target:
                    edges.append(Edge(module, target, node.lineno, "from"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value):
            target = _resolve(node.value, modules)
            if target:
                edges.append(Edge(module, target, node.lineno, "string"))
    return edges


def import_graph(root: Path) -> list[Edge]:
    """Every import edge between the modules of ``root/detect`` (self-imports dropped)."""
    files = module_files(root)
    edges = []
    for module, path in files.items():
        edges += [
            e for e in imports_of(module, path.read_text(encoding="utf-8"), files) if e.target != module
        ]
    return edges


def layer(module: str) -> int | None:
    """The rank of ``module``'s layer in ``LAYERS`` (None for the package itself)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] not in LAYERS:
        raise ValueError(
            f"{module}: {parts[1]!r} is in no layer; add it to LAYERS in tests/test_layers.py (and say why)"
        )
    return LAYERS.index(parts[1])


def upward(edges: list[Edge]) -> list[str]:
    """The imports from a lower layer into a higher one, as readable lines."""
    out = []
    for e in edges:
        a, b = layer(e.source), layer(e.target)
        if a is not None and b is not None and b > a:
            out.append(f"{e.source} (line {e.line}, {e.how}) imports {e.target}: {LAYERS[a]} < {LAYERS[b]}")
    return out


def unit(module: str) -> str:
    """What a cycle is counted between: a layer's direct child (module or subpackage), e.g.
    ``detect.data.blend.cbi`` -> ``detect.data.blend``."""
    return ".".join(module.split(".")[:3])


def cycles(edges: list[Edge], key=lambda m: m) -> list[list[str]]:
    """The strongly connected components of more than one node of the graph ``key(source) -> key(target)``
    (Tarjan's algorithm), each sorted."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        a, b = key(e.source), key(e.target)
        if a != b:
            graph[a].add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def problems(root: Path) -> list[str]:
    """Every upward import and every import cycle (between modules, and between a layer's subpackages and
    modules) of ``root/detect``."""
    edges = import_graph(root)
    out = upward(edges)
    out += [f"module import cycle: {' <-> '.join(c)}" for c in cycles(edges)]
    out += [f"package import cycle: {' <-> '.join(c)}" for c in cycles(edges, unit) if len(c) > 1]
    return out


PACKAGES = (PACKAGE, "hydra_plugins")
"""The repository's packages: one module name is one module across all of them."""


def shared_names(root: Path) -> dict[str, list[str]]:
    """``{basename: files}`` for every basename two modules of ``root``'s packages share (``__init__.py``
    aside), without exception: a method package's modules carry the method's name
    (``detect/methods/prodet/prodet_losses.py``), never a template name repeated in every package.

    ``scripts/`` and ``tests/`` are no packages: a script is run by its path and may be named after the
    library module it is the command line of (``scripts/export.py`` for ``detect.inference.export``)."""
    seen: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if path.name != "__init__.py":
                seen[path.name].append(path.relative_to(root).as_posix())
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


# -- the project ------------------------------------------------------------------------------------------
def test_imports_go_down_the_layers_without_cycles() -> None:
    found = problems(ROOT)
    assert not found, "\n".join(found)


def test_every_module_is_in_a_layer() -> None:
    for module in module_files(ROOT):
        layer(module)  # raises for a top-level package or module outside LAYERS


def test_no_two_modules_share_a_name() -> None:
    found = shared_names(ROOT)
    assert not found, found


# -- the checker can fail ---------------------------------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {
        "detect/__init__.py": "",
        "detect/utils/__init__.py": "",
        "detect/utils/io.py": "X = 1\n",
        "detect/engine/__init__.py": "",
        "detect/engine/trainer.py": "from detect.utils.io import X\n",
        "detect/methods/__init__.py": "",
        "detect/methods/baseline.py": "from detect.engine.trainer import X\nclass Baseline: ...\n",
        **files,
    }.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    assert problems(_tree(tmp_path, {})) == []


@pytest.mark.parametrize(
    "source",
    [
        "from detect.methods.baseline import Baseline\n",
        "import detect.methods.baseline\n",
        "def build():\n    from detect.methods.baseline import Baseline\n    return Baseline\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from detect.methods import baseline\n",
        "from ..methods.baseline import Baseline\n",
        "TARGET = 'detect.methods.baseline.Baseline'\n",
    ],
    ids=["from", "import", "function-local", "type-checking", "relative", "target-string"],
)
def test_an_upward_import_fails(tmp_path: Path, source: str) -> None:
    found = problems(_tree(tmp_path, {"detect/engine/builder.py": source}))
    assert any("detect.engine.builder" in p and "imports detect.methods.baseline" in p for p in found), found


def test_a_cycle_fails(tmp_path: Path) -> None:
    found = problems(
        _tree(
            tmp_path,
            {
                "detect/utils/a.py": "def f():\n    from detect.utils.b import g\n",
                "detect/utils/b.py": "from detect.utils import a\ng = 1\n",
            },
        )
    )
    assert "module import cycle: detect.utils.a <-> detect.utils.b" in found, found


def test_a_package_cycle_fails(tmp_path: Path) -> None:
    found = problems(
        _tree(
            tmp_path,
            {
                "detect/utils/p/__init__.py": "",
                "detect/utils/p/x.py": "from detect.utils.q.y import Y\n",
                "detect/utils/q/__init__.py": "",
                "detect/utils/q/y.py": "Y = 1\n",
                "detect/utils/q/z.py": "from detect.utils.p.x import Y\n",
            },
        )
    )
    assert "package import cycle: detect.utils.p <-> detect.utils.q" in found, found


def test_a_shared_module_name_fails(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "detect/methods/a/__init__.py": "",
            "detect/methods/a/losses.py": "",
            "detect/methods/b/__init__.py": "",
            "detect/methods/b/losses.py": "",
            "hydra_plugins/p/__init__.py": "",
            "hydra_plugins/p/trainer.py": "",
        },
    )
    assert shared_names(root) == {
        "losses.py": ["detect/methods/a/losses.py", "detect/methods/b/losses.py"],
        "trainer.py": ["detect/engine/trainer.py", "hydra_plugins/p/trainer.py"],
    }
