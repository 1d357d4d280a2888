"""Published checkpoints -> this project's checkpoints (``scripts/convert_checkpoint.py``).

One module per source format; each exposes ``FORMAT`` (a :class:`detect.convert.common.Format`) and is
found by :func:`formats` (every module of this package that defines ``FORMAT``; a new format is a new
module, nothing to register). A converter reads the source's weights (``weights_only``), maps every key
strictly onto the project's model (unmapped or missing keys are an error listing them) and records the
source's input size, normalisation, face crop and video aggregation in the converted checkpoint's config.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from detect.convert.common import Format


@cache
def formats() -> dict[str, Format]:
    """Format name -> :class:`Format`, over every module of this package that defines ``FORMAT``."""
    found: dict[str, Format] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        fmt = getattr(module, "FORMAT", None)
        if fmt is None:
            continue
        if fmt.name in found:
            raise RuntimeError(f"two converter modules define format {fmt.name!r} ({info.name})")
        found[fmt.name] = fmt
    return found


def get_format(name: str) -> Format:
    """The converter named ``name`` (``from=`` of the script)."""
    table = formats()
    if name not in table:
        raise ValueError(f"from={name!r}: unknown checkpoint format; use one of {sorted(table)}")
    return table[name]
