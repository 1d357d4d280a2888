"""The repository names no path outside itself: no tracked file holds the directory that contains the
checkout (nor, in a git worktree, the one that contains the main checkout), and none points to a sibling
``shared`` folder. Facts from outside sources live in ``docs/`` (see docs/design.md, "Where facts live")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SIBLING_SHARED = "/".join(("..", "shared"))  # spelt in two parts so this file does not match itself
OUTSIDE_NOTES = tuple(f"{stem}.md" for stem in ("REFER" + "ENCE", "DES" + "IGN"))
"""Notes kept outside the repository during development; their facts now live in docs/."""

needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(),
    reason="not a git checkout (or no git executable): the tracked files cannot be listed",
)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def tracked_files() -> list[Path]:
    return [REPO / name for name in _git("ls-files", "-z").split("\0") if name]


def outside_prefixes() -> list[str]:
    """``"<dir>/"`` for the parent of this checkout and of the main checkout (they differ in a ``git
    worktree``), and the sibling ``shared`` folder; the filesystem root is no evidence and is left out."""
    roots = {REPO}
    common = Path(_git("rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    if common.name == ".git":
        roots.add(common.parent.resolve())
    parents = {root.parent for root in roots}
    return sorted(f"{p}/" for p in parents if p != p.parent) + [SIBLING_SHARED]


def offending_lines(name: str, text: str, prefixes: list[str]) -> list[str]:
    """``name:line: 'prefix'`` for each line of ``text`` holding one of ``prefixes``."""
    return [
        f"{name}:{lineno}: {prefix!r}"
        for lineno, line in enumerate(text.splitlines(), 1)
        for prefix in prefixes
        if prefix in line
    ]


@needs_git
def test_no_tracked_file_names_a_path_outside_the_repository():
    prefixes = outside_prefixes()
    offenders = []
    for path in tracked_files():
        if path.is_file():  # a file deleted in the work tree is still listed until committed
            text = path.read_bytes().decode("utf-8", errors="replace")
            offenders += offending_lines(path.relative_to(REPO).as_posix(), text, prefixes)
    assert not offenders, (
        "tracked files name paths outside the repository; cite docs/... by a relative path instead:\n"
        + "\n".join(offenders)
    )


@needs_git
def test_the_check_reads_tracked_files_and_would_catch_an_outside_path():
    assert {"README.md", "pyproject.toml"} <= {p.relative_to(REPO).as_posix() for p in tracked_files()}
    prefixes = outside_prefixes()
    outside = REPO.parent / "shared" / "notes.md"
    text = f"ok line\nfacts in {outside}\nor {SIBLING_SHARED}/notes.md\n"
    found = offending_lines("x.py", text, prefixes)
    assert f"x.py:3: {SIBLING_SHARED!r}" in found
    if REPO.parent != REPO.parent.parent:
        assert f"x.py:2: '{REPO.parent}/'" in found
    assert offending_lines("x.py", "see docs/methods/ltw.md\n", prefixes) == []


@needs_git
def test_no_tracked_file_cites_notes_kept_outside_the_repository():
    offenders = []
    for path in tracked_files():
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            offenders += offending_lines(path.relative_to(REPO).as_posix(), text, list(OUTSIDE_NOTES))
    assert not offenders, "cite the docs/ page that holds the fact instead:\n" + "\n".join(offenders)
