"""Published checkpoints -> this project's checkpoints (``scripts/convert_checkpoint.py``).

One module per source format; each exposes ``FORMAT`` (a :class:`detect.convert.common.Format`). A
converter reads the source's weights (``weights_only``), maps every key strictly onto the project's
model (unmapped or missing keys are an error listing them) and records the source's input size,
normalisation, face crop and video aggregation in the converted checkpoint's config.
"""

from __future__ import annotations

from detect.convert import dfb_efficientnetb4, dfb_xception, efficientnet_pytorch, prodet_release, sbi_release
from detect.convert.common import Format

FORMATS: dict[str, Format] = {
    m.FORMAT.name: m.FORMAT
    for m in (dfb_efficientnetb4, dfb_xception, prodet_release, sbi_release, efficientnet_pytorch)
}


def get_format(name: str) -> Format:
    """The converter named ``name`` (``from=`` of the script)."""
    if name not in FORMATS:
        raise ValueError(f"from={name!r}: unknown checkpoint format; use one of {sorted(FORMATS)}")
    return FORMATS[name]
