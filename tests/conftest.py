"""Shared fixtures: environment for offline runs, a tiny DeepfakeBench-layout dataset, the synthetic benchmark
(generated once per session). Shared helpers are in ``helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import GENERATION, write_ff_fixture

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="session")
def ff_fixture(tmp_path_factory) -> Path:
    return write_ff_fixture(tmp_path_factory.mktemp("ff"))


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    """The default synthetic benchmark, generated once per test session into a shared cache folder;
    the generation's wall and CPU time and the load before it are kept in ``GENERATION``."""
    import resource
    import time

    from detect.data.synthetic import SyntheticConfig, ensure_synthetic

    cache = tmp_path_factory.mktemp("cache")
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    before = [resource.getrusage(w) for w in who]
    GENERATION["load_before"] = os.getloadavg()[0]
    start = time.perf_counter()
    GENERATION["root"] = ensure_synthetic(cache, SyntheticConfig())
    GENERATION["wall"] = time.perf_counter() - start
    after = [resource.getrusage(w) for w in who]
    GENERATION["cpu"] = sum(
        a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for b, a in zip(before, after, strict=True)
    )
    return cache
