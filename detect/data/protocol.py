"""From the composed config to the sample tables of a protocol's train, validation and test sets.

A set spec in ``cfg.protocol`` is the dataset config (``cfg.dataset``, or ``cfg.protocol.datasets[key]``
when the spec names ``dataset: key``) with the spec's own keys overriding it (``manipulations``,
``compression`` ...), plus its ``split`` and the protocol's frames per video for that role. A test set is
named by its key, or by its ``name`` when the spec gives one (a protocol with a held-out domain as a key).

``protocol.test_variants`` (a mapping ``name -> perturbation config``) evaluates every test set once per
variant, as ``<set>@<name>``; the set's own metrics are then the mean over its variants (DPL's random-JPEG
protocol: quality 100 and one draw from each of [30, 99], [13, 29], [8, 12], the AUC averaged).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from detect.data.index import DatasetSpec, load_split
from detect.data.sample_table import concat_tables

log = logging.getLogger(__name__)

_SPEC_ONLY = ("name", "dataset", "split", "frames", "perturbation", "mpd_draws")


@dataclass
class SetSpec:
    """One evaluation or training set: which dataset, which split, how many frames per video."""

    name: str
    dataset: DatasetSpec
    split: str
    frames: int | None
    perturbation: dict | None = None
    mpd_draws: int | None = None  # ProDet's mPD over this many perturbed versions per frame (test sets)
    group: str | None = None  # a test-variant set: the set whose metrics average its variants

    def load(self, check_files: bool = True) -> pd.DataFrame:
        """The set's sample table; a list of compression levels (``compression: [c23, c40]``) loads each
        level and concatenates them (QAD's quality pairs: the ``multi_quality`` data need)."""
        levels = self.dataset.compression
        if isinstance(levels, list | tuple):
            return concat_tables(
                [
                    load_split(
                        replace(self.dataset, compression=str(c)), self.split, self.frames, check_files
                    )
                    for c in levels
                ]
            )
        return load_split(self.dataset, self.split, self.frames, check_files=check_files)


def prepare_data(cfg: DictConfig) -> None:
    """Resolve ``cfg.data.root``: generate (or find cached) the synthetic benchmark when selected."""
    if cfg.data.kind == "synthetic":
        from detect.data.synthetic import SyntheticConfig, ensure_synthetic

        gen = OmegaConf.to_container(cfg.data.generator, resolve=True)
        root = ensure_synthetic(Path(cfg.paths.cache_dir), SyntheticConfig(**gen))
        with open_dict(cfg):
            cfg.data.root = str(root)
    elif cfg.data.kind != "real":
        raise ValueError(f"data.kind={cfg.data.kind!r}; use data=synthetic or data=real")


def _set_spec(cfg: DictConfig, name: str, spec: Mapping | None, role: str) -> SetSpec:
    spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec or {})
    key = spec.get("dataset")
    if key is None:
        base = OmegaConf.to_container(cfg.dataset, resolve=True)
    else:
        catalogue = cfg.protocol.get("datasets") or {}
        if key not in catalogue:
            raise KeyError(
                f"protocol.{role}.{name} names dataset {key!r}, which is not in protocol.datasets "
                f"(has {sorted(catalogue)}); add `- /dataset@datasets.{key}: <config>` to the "
                "protocol's defaults"
            )
        base = OmegaConf.to_container(catalogue[key], resolve=True)
    base.update({k: v for k, v in spec.items() if k not in _SPEC_ONLY})
    base.pop("short", None)
    frames = spec.get("frames", (cfg.protocol.get("frames") or {}).get(role))
    if "split" not in spec:
        raise KeyError(f"protocol.{role}.{name} needs a 'split' (train, val or test)")
    perturb = spec.get("perturbation", cfg.protocol.get("perturbation") if role == "test" else None)
    if isinstance(perturb, DictConfig):
        perturb = OmegaConf.to_container(perturb, resolve=True)
    draws = spec.get("mpd_draws")
    if draws is not None and (perturb is None or int(draws) < 1):
        raise ValueError(f"protocol.{role}.{name}.mpd_draws={draws} needs a perturbation and draws >= 1")
    return SetSpec(
        name,
        DatasetSpec.from_config(base),
        spec["split"],
        frames,
        perturb,
        None if draws is None else int(draws),
    )


def protocol_sets(cfg: DictConfig, roles: tuple[str, ...] = ("train", "val", "test")) -> dict:
    """``{"train": SetSpec | None, "val": SetSpec | None, "test": {name: SetSpec}}`` for the roles asked."""
    out: dict = {}
    short = cfg.dataset.get("short", cfg.dataset.name)
    for role in ("train", "val"):
        if role in roles:
            spec = cfg.protocol.get(role)
            out[role] = _set_spec(cfg, short, spec, role) if spec else None
    if "test" in roles:
        out["test"] = {}
        for key, spec in (cfg.protocol.get("test") or {}).items():
            if spec is None:  # `protocol.test.NAME=null` drops a set
                continue
            name = test_set_name(str(key), spec, short)
            if name in out["test"]:
                raise ValueError(f"protocol.test.{key} is named {name!r}, as another test set: rename one")
            out["test"][name] = _set_spec(cfg, name, spec, "test")
        variants = cfg.protocol.get("test_variants")
        if variants:
            out["test"] = expand_variants(out["test"], variants)
    return out


def test_set_name(key: str, spec: Mapping, short: str) -> str:
    """A test set's name: its ``name`` key when it has one (a protocol whose set depends on its own keys, e.g.
    ``gid``: ``GID-${protocol.held_out}...``), else its key; ``in_domain`` is the dataset's short name."""
    name = spec.get("name")
    if name is not None:
        return str(name)
    return short if key == "in_domain" else key


def expand_variants(tests: Mapping[str, SetSpec], variants: Mapping) -> dict[str, SetSpec]:
    """Each test set once per variant (``<set>@<variant>``, the variant's perturbation, ``group=<set>``);
    a ``random_jpeg`` variant without a ``stream`` gets the set's name as its stream."""
    variants = (
        OmegaConf.to_container(variants, resolve=True) if isinstance(variants, DictConfig) else variants
    )
    out = {}
    for name, spec in tests.items():
        if spec.perturbation is not None:
            raise ValueError(
                f"protocol.test.{name} has its own perturbation {spec.perturbation} and "
                "protocol.test_variants would replace it: drop one of them"
            )
        for vname, pert in variants.items():
            pert = dict(pert)
            if pert.get("name") == "random_jpeg" and not pert.get("stream"):
                pert["stream"] = name  # each set draws its qualities from its own stream
            out[f"{name}@{vname}"] = replace(spec, name=f"{name}@{vname}", perturbation=pert, group=name)
    return out


def load_sets(sets: dict, data_kind: str = "real") -> dict:
    """Load every set's table; report every missing index or file at once, then fail."""
    problems, tables = [], {}
    flat = [(k, v) for k, v in sets.items() if k != "test" and v is not None]
    flat += [(f"test/{n}", s) for n, s in (sets.get("test") or {}).items()]
    for key, spec in flat:
        try:
            tables[key] = spec.load()
        except FileNotFoundError as err:
            problems.append(f"- {key} ({spec.dataset.name}, split {spec.split}): {err}")
    if problems:
        raise FileNotFoundError(
            "data missing for this protocol:\n"
            + "\n".join(problems)
            + (
                "\nThe synthetic benchmark lacks these files: delete its folder under paths.cache_dir to "
                "regenerate it."
                if data_kind == "synthetic"
                else "\nPoint paths.data_dir at your DeepfakeBench data (rgb/ + dataset_json/), "
                "preprocess raw videos with scripts/preprocess.py, "
                "or run on the synthetic benchmark with data=synthetic."
            )
        )
    for key, table in tables.items():
        if table.empty:
            raise ValueError(f"set {key} is empty: check the protocol's split/manipulations for it")
    return tables
