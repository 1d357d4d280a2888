"""The per-sample score cache: computes once, persists, invalidates on file change, joins."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detect.quality.score_cache import ScoreCache, ScoreKey


class CountingScorer:
    """Score = file size (or array sum with a loader); records every input it was called on."""

    def __init__(self) -> None:
        self.seen: list = []
        self.calls = 0

    def __call__(self, items: list) -> np.ndarray:
        self.calls += 1
        self.seen.extend(items)
        return np.array([os.path.getsize(x) if isinstance(x, str) else float(np.sum(x)) for x in items])


def _files(root: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = root / "img" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (10 + i))
        paths.append(p)
    return paths


def _table(paths: list[Path], compression: str = "c23") -> pd.DataFrame:
    return pd.DataFrame({"path": [str(p) for p in paths], "compression": compression, "label": 0})


def test_computes_only_missing_in_batches(tmp_path: Path) -> None:
    paths = _files(tmp_path, 7)
    cache, scorer = ScoreCache(tmp_path / "cache"), CountingScorer()
    first = cache.get_or_compute(_table(paths[:4]), scorer, scorer_name="size", level="c23", batch_size=3)
    assert first.tolist() == [10, 11, 12, 13]
    assert len(scorer.seen) == 4 and scorer.calls == 2  # batches of 3 + 1
    scorer.seen.clear()
    second = cache.get_or_compute(_table(paths), scorer, scorer_name="size", level="c23", batch_size=3)
    assert second.tolist() == [10 + i for i in range(7)]
    assert sorted(scorer.seen) == sorted(os.path.abspath(p) for p in paths[4:])  # only the 3 missing


def test_duplicate_keys_scored_once(tmp_path: Path) -> None:
    paths = _files(tmp_path, 2)
    scorer = CountingScorer()
    out = ScoreCache(tmp_path / "c").get_or_compute(
        _table([paths[0], paths[1], paths[0]]), scorer, scorer_name="s", level="c23"
    )
    assert out.tolist() == [10, 11, 10] and len(scorer.seen) == 2


def test_persists_across_instances_and_levels(tmp_path: Path) -> None:
    paths = _files(tmp_path, 3)
    scorer = CountingScorer()
    ScoreCache(tmp_path / "c").get_or_compute(_table(paths), scorer, scorer_name="iqa", level="c23")
    scorer.seen.clear()
    again = ScoreCache(tmp_path / "c").get_or_compute(_table(paths), scorer, scorer_name="iqa", level="c23")
    assert again.tolist() == [10, 11, 12] and scorer.seen == []
    # another level, version or scorer is another key
    ScoreCache(tmp_path / "c").get_or_compute(_table(paths), scorer, scorer_name="iqa", level="jpeg75")
    ScoreCache(tmp_path / "c").get_or_compute(
        _table(paths), scorer, scorer_name="iqa", level="c23", version="v2"
    )
    assert len(scorer.seen) == 6
    assert (tmp_path / "c" / "iqa__c23.csv").exists() and (tmp_path / "c" / "iqa__jpeg75.csv").exists()
    scorer.seen.clear()
    ScoreCache(tmp_path / "c").get_or_compute(_table(paths), scorer, scorer_name="iqa", level="c23")
    assert scorer.seen == []  # v2 rows did not replace the default version's rows


def test_invalidates_on_file_change(tmp_path: Path) -> None:
    paths = _files(tmp_path, 3)
    cache, scorer = ScoreCache(tmp_path / "c"), CountingScorer()
    cache.get_or_compute(_table(paths), scorer, scorer_name="s", level="c23")
    paths[1].write_bytes(b"y" * 50)
    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    scorer.seen.clear()
    out = cache.get_or_compute(_table(paths), scorer, scorer_name="s", level="c23")
    assert out.tolist() == [10, 50, 12] and scorer.seen == [os.path.abspath(paths[1])]
    # same size, new mtime: stale too
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    scorer.seen.clear()
    cache.get_or_compute(_table(paths), scorer, scorer_name="s", level="c23")
    assert scorer.seen == [os.path.abspath(paths[2])]
    assert len(pd.read_csv(cache.file_for("s", "c23"))) == 3  # replaced, not appended


def test_join_adds_column_and_flags_missing(tmp_path: Path) -> None:
    paths = _files(tmp_path, 4)
    cache = ScoreCache(tmp_path / "c")
    table = _table(paths)
    cache.get_or_compute(
        table.iloc[:3], CountingScorer(), scorer_name="q", level=None
    )  # level from compression
    with pytest.raises(KeyError, match="1 of 4 samples"):
        cache.join(table, "q", "c23", "quality")
    joined = cache.join(table, "q", "c23", "quality", missing="nan")
    assert joined["quality"].tolist()[:3] == [10, 11, 12] and np.isnan(joined["quality"].iloc[3])
    assert "quality" not in table.columns
    cache.get_or_compute(table, CountingScorer(), scorer_name="q", level="c23")
    shuffled = table.iloc[[3, 1, 0, 2]].reset_index(drop=True)
    assert cache.join(shuffled, "q", None, "quality")["quality"].tolist() == [13, 11, 10, 12]


def test_loader_and_keys(tmp_path: Path) -> None:
    paths = _files(tmp_path, 2)
    keys = [ScoreKey.for_file(p, "sum", "jpeg75", "h1") for p in paths]
    scorer = CountingScorer()
    out = ScoreCache(tmp_path / "c").get_or_compute(
        keys, scorer, loader=lambda path: np.ones(os.path.getsize(path)) * 2
    )
    assert out.tolist() == [20, 22] and all(isinstance(x, np.ndarray) for x in scorer.seen)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ScoreKey.for_file(tmp_path / "nope.png", "s", "c23")


def test_scorer_output_checked(tmp_path: Path) -> None:
    paths = _files(tmp_path, 2)
    with pytest.raises(ValueError, match="returned 1 scores"):
        ScoreCache(tmp_path / "c").get_or_compute(
            _table(paths), lambda xs: np.zeros(1), scorer_name="bad", level="c23"
        )


def test_flushes_during_long_runs(tmp_path: Path) -> None:
    paths = _files(tmp_path, 5)
    cache = ScoreCache(tmp_path / "c")
    calls = []

    def failing(items: list) -> np.ndarray:
        calls.append(len(items))
        if len(calls) == 3:
            raise RuntimeError("preempted")
        return np.zeros(len(items))

    with pytest.raises(RuntimeError):
        cache.get_or_compute(
            _table(paths), failing, scorer_name="f", level="c23", batch_size=2, flush_every=2
        )
    assert len(pd.read_csv(cache.file_for("f", "c23"))) == 4  # the two finished batches were kept
