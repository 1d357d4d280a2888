"""One schema for the keys the engine reads: types and ranges checked before any work.

``validate_config`` runs first in ``train.py``/``eval.py`` (before data generation, model building or
anything written), and reports every bad key at once: the key, the value given and what is allowed.
Keys not listed here (a method's own, a dataset's) are checked where they are used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

Check = Callable[[Any], str | None]  # returns what is allowed when ``value`` is not


class ConfigError(ValueError):
    """One or more config values are out of type or range."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Check:
    """An integer in ``[lo, hi]`` (None allowed when ``optional``)."""

    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        ok = _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
        if ok:
            return None
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        return f"an integer {rng}" + (" or null" if optional else "")

    return check


def number(gt: float | None = None, optional: bool = False) -> Check:
    """A real number ``> gt`` (None allowed when ``optional``)."""

    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, int | float) and not isinstance(v, bool) and (gt is None or v > gt):
            return None
        return "a number" + (f" > {gt}" if gt is not None else "") + (" or null" if optional else "")

    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def one_of(*options: Any) -> Check:
    def check(v: Any) -> str | None:
        return None if v in options and type(v) in {type(o) for o in options} else f"one of {list(options)}"

    return check


def either(*checks: Check) -> Check:
    def check(v: Any) -> str | None:
        answers = [c(v) for c in checks]
        return None if any(a is None for a in answers) else " or ".join(answers)

    return check


def text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def mapping_or_null(v: Any) -> str | None:
    return None if v is None or isinstance(v, Mapping) else "a mapping ({key: value, ...}) or null"


def device(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v)
    return None if ok else "auto, cpu, mps, cuda or cuda:N"


SCHEMA: dict[str, Check] = {
    "seed": integer(0),
    "trainer.epochs": integer(1),
    "trainer.max_steps": integer(0, optional=True),
    "trainer.batch_size": integer(1),
    "trainer.eval_batch_size": integer(1),
    "trainer.sampling": one_of("natural", "balanced"),
    "trainer.grad_clip": number(gt=0, optional=True),
    "trainer.log_every_n_steps": integer(1),
    "trainer.select.metric": text,
    "trainer.select.mode": one_of("max", "min"),
    "trainer.limit_train_batches": integer(1, optional=True),
    "trainer.limit_eval_batches": integer(1, optional=True),
    "trainer.progress": boolean,
    "runtime.device": device,
    "runtime.precision": one_of("fp32", "bf16", "fp16"),
    "runtime.channels_last": boolean,
    "runtime.num_workers": integer(0),
    "runtime.pin_memory": either(one_of("auto"), boolean),
    "runtime.threads": integer(1, optional=True),
    "runtime.distributed": either(one_of("auto"), boolean),
    "runtime.backend": one_of("auto", "nccl", "gloo"),
    "runtime.sync_bn": boolean,
    "runtime.deterministic": boolean,
    "protocol.frames.train": integer(1),
    "protocol.frames.val": integer(1),
    "protocol.frames.test": integer(1),
    "protocol.train": mapping_or_null,
    "protocol.val": mapping_or_null,
    "protocol.test": mapping_or_null,
    "protocol.perturbation": mapping_or_null,
    "logger.kind": one_of("wandb", "none"),
    "logger.mode": one_of("offline", "online", "disabled"),
    "logger.project": text,
    "logger.init_timeout_s": number(gt=0),
}
"""Dotted key → check. A key absent from the composed config is not required here."""


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming every key whose value is out of type or range."""
    problems = []
    for key, check in SCHEMA.items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True, default=_ABSENT)
        except Exception as err:  # noqa: BLE001 - a missing (???) or unresolvable value
            problems.append(f"{key}: {err}")
            continue
        if value is _ABSENT:
            continue
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        allowed = check(value)
        if allowed is not None:
            problems.append(f"{key}={value!r} ({type(value).__name__}): must be {allowed}")
    if problems:
        raise ConfigError("invalid config, nothing was run:\n  " + "\n  ".join(problems))


_ABSENT = object()
