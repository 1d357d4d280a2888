"""scripts/export.py (detect.inference.export): ONNX under onnxruntime and TorchScript equal PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO, offline_env, save_random_checkpoint

from detect.inference.export import export
from detect.inference.export_check import onnx_max_abs_diff
from detect.inference.load import load_detector


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny baseline checkpoint, saved once for this module (the tests only read it)."""
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def detector(ckpt: Path):
    return load_detector(ckpt)


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


def _without(tmp_path: Path, *packages: str) -> dict:
    """An environment in which importing each of ``packages`` fails as for a package not installed."""
    for name in packages:
        (tmp_path / "absent" / name).mkdir(parents=True)
        (tmp_path / "absent" / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"
        )
    return offline_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "absent"), str(REPO), str(REPO / "tests")]))


@pytest.mark.parametrize("absent", [("onnx", "onnxruntime"), ("onnxruntime",)])
def test_export_without_onnx_packages_is_one_line_naming_the_install(
    absent, ckpt: Path, tmp_path: Path
) -> None:
    """onnx and onnxruntime are dev extras: ``format=onnx`` without them exits 2 with one line saying which
    is missing and ``pip install onnx onnxruntime``, before the checkpoint is read; TorchScript and
    ``predict.py`` need neither."""
    env = _without(tmp_path, *absent)

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, *args]
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    proc = run("scripts/export.py", f"ckpt={ckpt}", "format=onnx", f"dst={tmp_path / 'm.onnx'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: format=onnx needs {' and '.join(absent)}, not installed: pip install onnx onnxruntime"
    ]
    assert not (tmp_path / "m.onnx").exists()
    if len(absent) == 2:
        assert run("scripts/export.py", f"ckpt={ckpt}", "format=torchscript").returncode == 0
        crops = tmp_path / "crops"
        crops.mkdir()
        cv2.imwrite(str(crops / "0.png"), np.zeros((64, 64, 3), np.uint8))
        out = tmp_path / "out"
        args = (f"ckpt={ckpt}", f"input={crops}", "faces=crops", f"out_dir={out}", "progress=false")
        proc = run("predict.py", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / "videos.csv").is_file()
