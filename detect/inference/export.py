"""Export a single-frame detector to ONNX or TorchScript (``scripts/export.py``).

The exported graph maps a normalised ``[B, 3, S, S]`` float batch (the checkpoint's pipeline output:
resize to ``S``, ``(x / 255 - mean) / std``) to P(fake) ``[B]``; the batch dimension is dynamic. The
pipeline's size, mean and std are written beside the model as ``<dst>.json``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from detect.inference.load import LoadedDetector
from detect.utils.io import atomic_write, atomic_write_text

EXPORT_FORMATS = ("onnx", "torchscript")
#: what ``format=onnx`` needs: ``onnx`` to write the model, ``onnxruntime`` for scripts/export.py's check
ONNX_PACKAGES = ("onnx", "onnxruntime")
ONNX_INSTALL = "pip install onnx onnxruntime"


class MissingPackage(ImportError):
    """An optional package an export format needs is not installed; the message says what to install."""


def require_packages(fmt: str, names: tuple[str, ...] = ONNX_PACKAGES) -> None:
    """Raise :class:`MissingPackage` naming each of ``names`` that cannot be imported (``format=fmt``)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingPackage(f"format={fmt} needs {' and '.join(missing)}, not installed: {ONNX_INSTALL}")


class ProbabilityModel(nn.Module):
    """``method.predict`` as a plain module (tracing/export needs ``forward``)."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.predict(images)


def example_input(detector: LoadedDetector, batch: int = 2) -> torch.Tensor:
    s = detector.input_size
    return torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(0))


def export(detector: LoadedDetector, fmt: str, dst: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``dst`` (ONNX or TorchScript) and ``dst.json`` (input size, mean, std); returns ``dst``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format={fmt!r}; use one of {EXPORT_FORMATS}")
    if fmt == "onnx":
        require_packages(fmt, ("onnx",))
    model = ProbabilityModel(detector.method.float().cpu()).eval()
    x = example_input(detector)
    dst = Path(dst)
    with torch.no_grad():
        if fmt == "onnx":

            def write(tmp: str) -> None:
                torch.onnx.export(
                    model,
                    (x,),
                    tmp,
                    input_names=["images"],
                    output_names=["p_fake"],
                    dynamic_axes={"images": {0: "batch"}, "p_fake": {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )

        else:

            def write(tmp: str) -> None:
                torch.jit.trace(model, (x,), check_trace=False).save(tmp)

        try:
            atomic_write(dst, write)
        except Exception as err:
            name = type(detector.method).__name__
            raise RuntimeError(
                f"{name} ({detector.path}) could not be exported to {fmt}: {err}. Export supports "
                "single-frame detectors whose predict(images) is a traceable forward pass."
            ) from err
    meta = {
        "format": fmt,
        "input": "images [B, 3, S, S] float32, (RGB / 255 - mean) / std",
        "output": "p_fake [B]",
        "size": detector.input_size,
        "mean": list(detector.pipeline.spec["mean"]),
        "std": list(detector.pipeline.spec["std"]),
        "checkpoint": os.path.basename(detector.path),
    }
    atomic_write_text(dst.with_name(dst.name + ".json"), json.dumps(meta, indent=2) + "\n")
    return dst
