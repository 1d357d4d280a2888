"""Reading tensor files with a named error for every way they can be bad.

``torch.load`` is always called with ``weights_only=True`` (nothing loaded from a file may run code);
its raw errors (``PytorchStreamReader failed ...``, ``EOFError``, an unpickling error that suggests
``weights_only=False``) and safetensors' (``header too large``) become :class:`UnreadableFile` naming
the file, its size and what to do. The advice to load with ``weights_only=False`` is never repeated.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any


class UnreadableFile(ValueError):
    """A file that exists but is empty, truncated, corrupt or of the wrong kind."""


class UnsafeFile(UnreadableFile, pickle.UnpicklingError):
    """A pickle that would build Python objects besides tensors (refused by ``weights_only=True``)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"\s*\(?[^.]*weights_only=False[^.]*\.?\)?", "", text).strip() or type(err).__name__


def _existing(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    if not p.is_file():
        raise UnreadableFile(f"{what} {p} is not a regular file")
    if p.stat().st_size == 0:
        raise UnreadableFile(f"{what} {p} is empty (0 bytes): an interrupted copy or write; copy it again")
    return p


def load_torch_file(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with :class:`UnreadableFile` naming ``path`` on failure."""
    import torch

    p = _existing(path, what)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(4)
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if m:
            raise UnsafeFile(
                f"{what} {p} stores a Python object ({m.group(1)}) besides tensors; only tensors, numbers, "
                "strings and containers are loaded, since loading must not run code. Re-save only the "
                "tensors (e.g. the state dict) or convert the file to .safetensors"
            ) from None
        failure: Exception = err
    except Exception as err:  # noqa: BLE001 - torch's readers raise many types (EOFError, KeyError, ...)
        failure = err
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        raise UnreadableFile(
            f"{what} {p} ({size} bytes) cannot be read: a truncated or corrupt PyTorch file "
            f"({_first_line(failure)}); copy or save it again"
        )
    raise UnreadableFile(
        f"{what} {p} ({size} bytes) is not a PyTorch file (it starts with {head!r}); "
        "check that the path names the right file"
    )


def load_safetensors_file(path: str | os.PathLike, what: str = "weights file") -> dict:
    """``safetensors.torch.load_file`` on CPU with :class:`UnreadableFile` naming ``path`` on failure."""
    from safetensors.torch import load_file

    p = _existing(path, what)
    try:
        return load_file(str(p), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise UnreadableFile(
            f"{what} {p} ({p.stat().st_size} bytes) is not a valid .safetensors file ({_first_line(err)}); "
            "copy or export it again"
        ) from None
