"""scripts/export.py (detect.inference.export): ONNX under onnxruntime and TorchScript equal PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import save_random_checkpoint

from detect.inference.export import export
from detect.inference.export_check import onnx_max_abs_diff
from detect.inference.load import load_detector


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory):
    return load_detector(save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


def test_onnx_equals_pytorch_under_onnxruntime(detector, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    dst = export(detector, "onnx", tmp_path / "model.onnx")
    assert onnx_max_abs_diff(detector, dst, batch=3) <= 1e-4
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    assert meta["size"] == 64 and meta["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_torchscript_equals_pytorch(detector, tmp_path: Path) -> None:
    dst = export(detector, "torchscript", tmp_path / "model.ts")
    loaded = torch.jit.load(str(dst))
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), detector.method.predict(x).numpy(), atol=1e-5)


def test_unknown_format(detector, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format='tflite'"):
        export(detector, "tflite", tmp_path / "m")
