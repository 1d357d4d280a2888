"""PNG files of matplotlib figures, written atomically and reproducibly (no software tag in the file)."""

from __future__ import annotations

import logging
from pathlib import Path

from matplotlib.figure import Figure

from detect.utils.io import atomic_write

log = logging.getLogger(__name__)


DPI = 150


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG at ``DPI`` (atomically); returns the path."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))
    return path
