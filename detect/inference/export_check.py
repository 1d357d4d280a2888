"""Run an exported ONNX model under onnxruntime and compare it with PyTorch on the same batch."""

from __future__ import annotations

import os

import numpy as np
import torch

from detect.inference.load import LoadedDetector


def onnx_max_abs_diff(detector: LoadedDetector, path: str | os.PathLike, batch: int = 3) -> float:
    """max |onnxruntime - PyTorch| of P(fake) on a seeded random batch (a batch size other than the one
    exported with, so the dynamic batch axis is exercised)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("the ONNX check needs onnxruntime: pip install onnx onnxruntime") from err
    s = detector.input_size
    x = torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = detector.method.float().cpu().eval().predict(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["p_fake"], {"images": x.numpy()})[0]
    return float(np.abs(got.reshape(-1) - want.reshape(-1)).max())
