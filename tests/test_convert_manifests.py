"""Converters of DeepfakeBench's released detectors, checked through key-and-shape manifests.

A manifest (``tests/data/dfb_manifests/<format>.json``: ``format``, ``source`` — the architecture it was
built from — and ``keys``: name -> shape) lists the state dict of a published checkpoint. A file with those
keys and shapes (random values) must convert and load strictly into the project's model, and the converted
checkpoint must load for evaluation through the trust check. Models above 30 M parameters (Face X-ray's
HRNet-W48, IID, RECCE, SLADD, UCF, UIA-ViT) are checked in ``make test-long``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from source_models import MANIFESTS, convert, manifest_state_dict

from detect.convert import formats
from detect.inference.load import load_detector

#: dfb_* formats whose tests rebuild the source architecture instead (tests/test_convert.py).
SOURCE_MODEL_TESTED = {"dfb_xception", "dfb_efficientnetb4"}
MANIFEST_FILES = sorted(MANIFESTS.glob("*.json"))
#: Models above this many parameters take seconds to build twice on a CPU: their checks run in make test-long.
LARGE = 30_000_000


def _size(path: Path) -> int:
    return sum(math.prod(shape) for shape in json.loads(path.read_text())["keys"].values())


MANIFEST_PARAMS = [
    pytest.param(p, id=p.stem, marks=[pytest.mark.long] if _size(p) > LARGE else []) for p in MANIFEST_FILES
]


def test_every_deepfakebench_format_has_a_manifest_or_a_source_model() -> None:
    dfb = {name for name in formats() if name.startswith("dfb_")}
    covered = {json.loads(p.read_text())["format"] for p in MANIFEST_FILES} | SOURCE_MODEL_TESTED
    assert dfb <= covered, f"no manifest for {sorted(dfb - covered)}"
    assert {p.stem for p in MANIFEST_FILES} <= set(formats()), "a manifest names no converter format"


@pytest.mark.parametrize("manifest", MANIFEST_PARAMS)
def test_a_manifest_checkpoint_converts_and_loads_strictly(manifest: Path, tmp_path: Path) -> None:
    spec = json.loads(manifest.read_text())
    assert spec["format"] == manifest.stem and spec["source"] and spec["keys"]
    source = manifest_state_dict(manifest)
    torch.save(source, tmp_path / "source.pth")
    dst = convert(spec["format"], tmp_path / "source.pth", tmp_path / "converted.pt")
    det = load_detector(dst)
    ours = det.method.state_dict()
    # every source tensor landed somewhere (the converter may drop only what it documents as unused)
    values = {round(float(v.double().sum()), 3) for v in ours.values() if v.numel()}
    kept = [k for k, v in source.items() if v.numel() > 1 and round(float(v.double().sum()), 3) in values]
    print(f"{spec['format']}: {len(source)} source keys, {len(kept)} found by value in {len(ours)} ours")
    assert len(kept) >= 0.5 * sum(v.numel() > 1 for v in source.values())
