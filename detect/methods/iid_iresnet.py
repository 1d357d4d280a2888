"""The explicit identity extractor of IID (Huang et al., CVPR 2023, Sec. 3.1): an ArcFace-trained
IResNet (Deng et al., "ArcFace", CVPR 2019; the ``insightface`` ``iresnet`` family) mapping a 112x112 face
to a 512-d identity embedding. Not in timm, so written here from its published architecture:

stem ``conv3x3(3, 64)``, BN, PReLU; four stages of ``IBasicBlock`` (BN, conv3x3, BN, PReLU, conv3x3 with the
stage's stride 2, BN, plus a 1x1-conv + BN shortcut where the shape changes) with 64/128/256/512 channels;
then BN, flatten (512 x 7 x 7 at 112 px), dropout, ``Linear(25088, 512)`` and ``BatchNorm1d(512)``.
``layers = (3, 4, 14, 3)`` is iresnet50 (DeepfakeBench's ``iresnet_iid.iresnet50``; 43.6 M parameters).

:func:`load_identity_network` builds it and loads a LOCAL checkpoint (a state dict saved by torch or
safetensors; nothing is downloaded, nothing in the file is executed), or, with ``checkpoint: null``, keeps a
seeded random network — the stand-in the synthetic benchmark runs with, recorded in ``run_info``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn


class IBasicBlock(nn.Module):
    """``bn1 -> conv1 -> bn2 -> prelu -> conv2(stride) -> bn3`` plus the (downsampled) input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """IResNet at 112 px -> 512-d embedding (``layers`` blocks per stage)."""

    def __init__(self, layers: Sequence[int] = (3, 4, 14, 3), num_features: int = 512, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, inplanes = (64, 128, 256, 512), 64
        for s, (n, planes) in enumerate(zip(layers, widths, strict=True)):
            blocks = [IBasicBlock(inplanes, planes, 2)] + [IBasicBlock(planes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only: runs no code
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_identity_network(cfg: Mapping) -> tuple[IResNet, dict]:
    """The identity network from ``cfg`` (``layers``, ``checkpoint``, ``seed``) and what was loaded."""
    layers = tuple(int(n) for n in cfg.get("layers", (3, 4, 14, 3)))
    checkpoint, seed = cfg.get("checkpoint"), int(cfg.get("seed", 0))
    if checkpoint in (None, "", "none"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = IResNet(layers)
        return net, {"layers": list(layers), "checkpoint": None, "random_init": True, "seed": seed}
    path = Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"IID's identity network checkpoint {path} not found: set method.id_network.checkpoint to a "
            "local ArcFace iresnet state dict (e.g. insightface's iresnet50 backbone.pth), or null for a "
            "seeded random stand-in"
        )
    net = IResNet(layers)
    net.load_state_dict(_read_state(path), strict=True)
    return net, {"layers": list(layers), "checkpoint": str(path), "random_init": False, "seed": None}
