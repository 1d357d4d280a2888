"""What ``input=`` names: a video, an image, a folder (searched recursively) or a glob pattern."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Source:
    """One input file and whether it is read as a video or an image."""

    path: str
    kind: str  # video | image


def kind_of(path: str | os.PathLike) -> str | None:
    """``video``/``image`` by extension (case-insensitive), None for anything else."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def find_sources(spec: str | os.PathLike | list) -> list[Source]:
    """Every input ``spec`` names, sorted by path. A file is taken whatever its extension (a video unless
    it has an image extension: an unreadable file is then reported, not skipped); folders and globs keep
    files with a known extension. Raises when nothing matches, naming ``spec``."""
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    out: dict[str, Source] = {}
    for s in specs:
        s = str(s)
        if os.path.isfile(s):
            out[s] = Source(s, kind_of(s) or "video")
            continue
        if os.path.isdir(s):
            files = [str(p) for p in Path(s).rglob("*") if p.is_file()]
        else:
            files = [f for f in glob.glob(s, recursive=True) if os.path.isfile(f)]
            if not files and not glob.has_magic(s):
                raise FileNotFoundError(f"input={s}: no such file or folder")
        for f in files:
            kind = kind_of(f)
            if kind is not None:
                out[f] = Source(f, kind)
    if not out:
        raise FileNotFoundError(
            f"input={spec}: no video ({', '.join(VIDEO_EXTENSIONS)}) or image "
            f"({', '.join(IMAGE_EXTENSIONS)}) files found"
        )
    return [out[k] for k in sorted(out)]
