"""A per-sample score cache: scalar scores (face quality, CLIP indicators) computed once, kept on disk.

A score is keyed by the image (absolute path + file size + ``mtime_ns``: a changed file is recomputed),
the scoring model's name plus a version/config hash the caller passes, and the compression level the
image is scored at (``c23``, or e.g. ``jpeg75`` for a multi-quality view of the same file).

Storage: one CSV per (scorer, level) in ``cache_dir``, one row per (path, version), written atomically
under a lock; a write re-reads the file and merges, so concurrent jobs append rather than overwrite.
DFFC computes its quality prior once per dataset and DPL its indicators once per image before
training (docs/design.md, "Per-sample scores"); both go through here and are joined onto the sample table.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from detect.utils.io import atomic_write

Scorer = Callable[[list[Any]], np.ndarray]
_FILE_COLUMNS = ("path", "size", "mtime_ns", "version", "score")


@dataclass(frozen=True)
class ScoreKey:
    """What a cached score depends on; build it with :meth:`for_file`."""

    path: str
    size: int
    mtime_ns: int
    scorer: str
    level: str
    version: str = ""

    @classmethod
    def for_file(cls, path: str | os.PathLike, scorer: str, level: str, version: str = "") -> ScoreKey:
        """Stat ``path`` (made absolute) and key it for ``scorer`` at ``level``."""
        path = os.path.abspath(os.fspath(path))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"cannot score {path}: the file does not exist") from None
        return cls(path, int(st.st_size), int(st.st_mtime_ns), str(scorer), str(level), str(version))


def keys_for_table(
    table: pd.DataFrame, scorer: str, level: str | None = None, version: str = ""
) -> list[ScoreKey]:
    """Keys for every row of a sample table; ``level=None`` takes each row's ``compression``."""
    levels = table["compression"].astype(str) if level is None else [level] * len(table)
    return [ScoreKey.for_file(p, scorer, lv, version) for p, lv in zip(table["path"], levels, strict=True)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def _ident(key: ScoreKey) -> tuple[str, str]:
    return key.path, key.version


class ScoreCache:
    """Scores on disk under ``cache_dir``; see the module docstring."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)

    def file_for(self, scorer: str, level: str) -> Path:
        """The CSV holding ``scorer``'s scores at ``level``."""
        return self.cache_dir / f"{_safe(scorer)}__{_safe(level)}.csv"

    def _read(self, file: Path) -> pd.DataFrame:
        if not file.exists():
            return pd.DataFrame({c: pd.Series(dtype=object) for c in _FILE_COLUMNS})
        df = pd.read_csv(file, dtype=str, keep_default_na=False)
        if tuple(df.columns) != _FILE_COLUMNS:
            raise ValueError(f"{file} is not a score cache file (columns {list(df.columns)}); move it away")
        return df.astype({"size": "int64", "mtime_ns": "int64", "score": "float64"})

    @contextmanager
    def _locked(self, file: Path) -> Iterator[None]:
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file.with_name(file.name + ".lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _store(self, scorer: str, level: str, rows: pd.DataFrame) -> None:
        """Merge ``rows`` into the file (new rows replace old ones of the same path and version)."""
        file = self.file_for(scorer, level)
        with self._locked(file):
            old = self._read(file)
            keep = ~pd.MultiIndex.from_frame(old[["path", "version"]]).isin(
                pd.MultiIndex.from_frame(rows[["path", "version"]])
            )
            merged = pd.concat([old[keep], rows[list(_FILE_COLUMNS)]], ignore_index=True)
            atomic_write(file, lambda tmp: merged.to_csv(tmp, index=False))

    def lookup(self, keys: Sequence[ScoreKey]) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, found)``: cached scores (NaN where absent) and whether each key had a fresh entry."""
        scores = np.full(len(keys), np.nan)
        found = np.zeros(len(keys), dtype=bool)
        by_file: dict[tuple[str, str], list[int]] = {}
        for i, k in enumerate(keys):
            by_file.setdefault((k.scorer, k.level), []).append(i)
        for (scorer, level), idx in by_file.items():
            df = self._read(self.file_for(scorer, level))
            table = {(p, v): (s, m, sc) for p, s, m, v, sc in df[list(_FILE_COLUMNS)].itertuples(index=False)}
            for i in idx:
                hit = table.get(_ident(keys[i]))
                if hit is not None and hit[:2] == (keys[i].size, keys[i].mtime_ns):
                    scores[i], found[i] = hit[2], True
        return scores, found

    def get_or_compute(
        self,
        items: Sequence[ScoreKey] | pd.DataFrame,
        scorer: Scorer,
        *,
        scorer_name: str | None = None,
        level: str | None = None,
        version: str = "",
        batch_size: int = 64,
        loader: Callable[[str], Any] | None = None,
        flush_every: int = 4096,
        key_inputs: bool = False,
    ) -> np.ndarray:
        """Scores for ``items``, computing (in batches) and storing only missing or stale ones.

        ``items``: keys, or a sample table plus ``scorer_name`` (and ``level``, else each row's
        ``compression``, and ``version``). ``scorer`` receives a list of absolute paths, or of
        ``loader(path)`` results when a loader is given (e.g. read + JPEG for a ``jpeg75`` level), and
        returns one score per element; ``key_inputs=True`` hands it the :class:`ScoreKey` objects instead
        (a scorer that needs the level, e.g. DPL's JPEG versions). Results are saved every ``flush_every``
        samples and at the end.
        """
        keys = self._keys(items, scorer_name, level, version)
        scores, found = self.lookup(keys)
        todo = list(dict.fromkeys(k for k, f in zip(keys, found, strict=True) if not f))
        computed: dict[ScoreKey, float] = {}
        pending: list[tuple[ScoreKey, float]] = []
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            if key_inputs:
                inputs = list(batch)
            else:
                inputs = [k.path if loader is None else loader(k.path) for k in batch]
            out = np.asarray(scorer(inputs), dtype=np.float64).reshape(-1)
            if len(out) != len(batch):
                raise ValueError(f"scorer returned {len(out)} scores for a batch of {len(batch)} inputs")
            pending.extend(zip(batch, out.tolist(), strict=True))
            computed.update(zip(batch, out.tolist(), strict=True))
            if len(pending) >= flush_every:
                self._flush(pending)
                pending = []
        self._flush(pending)
        for i, k in enumerate(keys):
            if not found[i]:
                scores[i] = computed[k]
        return scores

    def _keys(
        self,
        items: Sequence[ScoreKey] | pd.DataFrame,
        scorer_name: str | None,
        level: str | None,
        version: str,
    ) -> list[ScoreKey]:
        if isinstance(items, pd.DataFrame):
            if scorer_name is None:
                raise ValueError(
                    "scoring a sample table needs scorer_name (and level or a compression column)"
                )
            return keys_for_table(items, scorer_name, level, version)
        return list(items)

    def _flush(self, pending: list[tuple[ScoreKey, float]]) -> None:
        groups: dict[tuple[str, str], list[tuple[ScoreKey, float]]] = {}
        for k, s in pending:
            groups.setdefault((k.scorer, k.level), []).append((k, s))
        for (scorer, level), rows in groups.items():
            df = pd.DataFrame(
                [(k.path, k.size, k.mtime_ns, k.version, s) for k, s in rows], columns=list(_FILE_COLUMNS)
            )
            self._store(scorer, level, df)

    def join(
        self,
        table: pd.DataFrame,
        scorer_name: str,
        level: str | None,
        column: str,
        *,
        version: str = "",
        missing: Literal["raise", "nan"] = "raise",
    ) -> pd.DataFrame:
        """A copy of ``table`` with the cached scores as ``column``; missing or stale entries raise
        (or become NaN with ``missing="nan"``). ``level=None`` takes each row's ``compression``."""
        keys = keys_for_table(table, scorer_name, level, version)
        scores, found = self.lookup(keys)
        if missing == "raise" and not found.all():
            bad = [k.path for k, f in zip(keys, found, strict=True) if not f]
            raise KeyError(
                f"{len(bad)} of {len(keys)} samples have no fresh {scorer_name!r} score at level "
                f"{level!r} (version {version!r}) in {self.cache_dir}, e.g. {bad[:3]}; compute them first "
                "with ScoreCache.get_or_compute"
            )
        out = table.copy()
        out[column] = scores
        return out
