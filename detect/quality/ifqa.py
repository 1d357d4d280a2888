"""IFQA: the per-pixel face-quality discriminator of Jo et al., "IFQA: Interpretable Face Quality
Assessment", WACV 2023 (authors' code: github.com/VCLLab/IFQA, also published as AIM-SKKU/IFQA).

DFFC (docs/methods/dffc.md, "Quality prior") uses it as its quality prior, q(i) = 1 − IFQA(x_i)
(DFFC paper, Eq. 3). The network is a U-Net built from StarGAN-v2 residual blocks (Choi et al., CVPR 2020):

* ``encoder128 … encoder8``: five downsampling :class:`ResBlock` (3→64→128→256→512→1024 channels,
  256 px → 8 px). A block is ``(shortcut(x) + residual(x)) / √2`` with
  ``residual = conv2(lrelu(norm2(pool(conv1(lrelu(norm1(x)))))))``, ``shortcut = pool(conv1x1(x))``;
  InstanceNorm with affine parameters (no running statistics), LeakyReLU(0.2), 2×2 average pooling,
  and a bias-free learned 1×1 shortcut only where the channel count changes.
* ``btn.0 … btn.3``: four 1024-channel :class:`ResBlock` at 8 px (identity shortcut).
* ``decoder16 … decoder128``: four :class:`UpResBlock` (nearest 2× upsampling before ``conv1`` and on
  the shortcut before its 1×1 conv), 1024→512→256→128→64 channels. Each decoder's input is gated by the
  encoder feature of the same size: ``dec * enc + enc``.
* ``decoder256.0``: an :class:`UpResBlock` 64→1 producing the per-pixel logit at 256 px. The authors'
  module ends in a parameter-free sigmoid (``decoder256.1``); here :meth:`IFQA.forward` returns the logit
  and :func:`ifqa_score` applies the sigmoid, so the state dicts are identical.

The result has the 122 tensors (105.2 M parameters) of the authors' ``IFQA_Metric.pth`` (state dict under
key ``D``), listed in ``tests/data/ifqa_state_dict_shapes.json``; :func:`load_ifqa` loads it strictly.
The weights cannot be downloaded here: a user supplies the file.

Input: RGB resized to 256×256 (bilinear, as the authors' test script) and normalised to [−1, 1]
(:func:`preprocess`). Score: the mean of the sigmoid map, in [0, 1], higher = better quality.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 256
STATE_KEY = "D"  # IFQA_Metric.pth holds {"D": discriminator state dict}
N_TENSORS = 122
N_PARAMETERS = 105_172_833  # sum over the 122 tensors of the manifest (105.2 M)


class IFQAWeightsUnavailable(FileNotFoundError):
    """No IFQA checkpoint file: the authors' weights cannot be downloaded on this machine."""


class IFQACheckpointError(ValueError):
    """A checkpoint file that is not (or does not match) IFQA's discriminator state dict."""


class ResBlock(nn.Module):
    """StarGAN-v2's pre-activation residual block (IN-affine, LeakyReLU 0.2), optionally halving the size."""

    def __init__(self, dim_in: int, dim_out: int, downsample: bool = False) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
        self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.conv1x1 is None else self.conv1x1(x)
        h = self.conv1(F.leaky_relu(self.norm1(x), 0.2))
        if self.downsample:
            skip, h = F.avg_pool2d(skip, 2), F.avg_pool2d(h, 2)
        h = self.conv2(F.leaky_relu(self.norm2(h), 0.2))
        return (skip + h) / math.sqrt(2.0)


class UpResBlock(nn.Module):
    """The upsampling variant: nearest 2× before ``conv1`` (residual) and before the 1×1 conv (shortcut)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
        self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.conv1x1 is not None:
            skip = self.conv1x1(skip)
        h = F.interpolate(F.leaky_relu(self.norm1(x), 0.2), scale_factor=2, mode="nearest")
        h = self.conv2(F.leaky_relu(self.norm2(self.conv1(h)), 0.2))
        return (skip + h) / math.sqrt(2.0)


class IFQA(nn.Module):
    """IFQA's per-pixel discriminator (Jo et al., WACV 2023); see the module docstring for the layout.

    ``forward(x)``: ``x`` [N, 3, H, W] in [−1, 1] (H, W multiples of 32 and at least 64: the
    instance norms at 1/32 scale need more than one pixel; the metric is defined at 256)
    → per-pixel logits [N, 1, H, W]. Build it on ``torch.device("meta")`` to inspect shapes for free.
    """

    def __init__(self) -> None:
        super().__init__()
        widths = (3, 64, 128, 256, 512, 1024)
        for size, (c_in, c_out) in zip((128, 64, 32, 16, 8), pairwise(widths), strict=True):
            setattr(self, f"encoder{size}", ResBlock(c_in, c_out, downsample=True))
        self.btn = nn.Sequential(*(ResBlock(1024, 1024) for _ in range(4)))
        for size, c_in in zip((16, 32, 64, 128), (1024, 512, 256, 128), strict=True):
            setattr(self, f"decoder{size}", UpResBlock(c_in, c_in // 2))
        self.decoder256 = nn.Sequential(UpResBlock(64, 1))  # the authors' sigmoid (index 1) is in ifqa_score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32 or min(x.shape[2:]) < 64:
            raise ValueError(
                "IFQA takes [N, 3, H, W] with H, W multiples of 32 and at least 64 (256 px), got "
                f"{tuple(x.shape)}"
            )
        e128 = self.encoder128(x)
        e64 = self.encoder64(e128)
        e32 = self.encoder32(e64)
        e16 = self.encoder16(e32)
        d = self.decoder16(self.btn(self.encoder8(e16)))
        for dec, enc in ((self.decoder32, e16), (self.decoder64, e32), (self.decoder128, e64)):
            d = dec(d * enc + enc)
        return self.decoder256(d * e128 + e128)


def ifqa_score(model: IFQA, images: torch.Tensor, divide_by: int = 1) -> torch.Tensor:
    """IFQA scores [N] in [0, 1]: the mean over pixels of the sigmoid of ``model(images)``.

    ``images``: [N, 3, 256, 256] in [−1, 1] (:func:`preprocess`), moved to the model's device.
    ``divide_by=3`` reproduces an early version of the authors' test script, which divided the sum of the
    one-channel map by 3·256·256 (scores in [0, 1/3]); the current script divides by 256·256 (the default).
    """
    if divide_by not in (1, 3):
        raise ValueError(
            f"divide_by must be 1 (the mean of the map) or 3 (the early test script), got {divide_by}"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"ifqa_score takes [N, 3, H, W] images in [-1, 1], got {tuple(images.shape)}")
    param = next(model.parameters())
    with torch.inference_mode():
        logits = model(images.to(device=param.device, dtype=param.dtype))
        return torch.sigmoid(logits.float()).mean(dim=(1, 2, 3)) / divide_by


def preprocess(images_uint8: Sequence[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 RGB images → [N, 3, 256, 256] float32 in [−1, 1].

    As the authors' test script (albumentations ``Resize(256, 256, INTER_LINEAR)`` on the uint8 image,
    then ``Normalize(0.5, 0.5)``): ``cv2.resize`` bilinear, then ``(x / 255 − 0.5) / 0.5``.
    """
    out = []
    for img in images_uint8:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"IFQA takes HxWx3 uint8 RGB images, got {img.dtype} {img.shape}")
        if img.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
            img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        out.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
    if not out:
        return torch.zeros(0, 3, INPUT_SIZE, INPUT_SIZE)
    return torch.stack(out).float().div_(127.5).sub_(1.0)


def _state_dict_of(obj: Any, path: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise IFQACheckpointError(
            f"IFQA checkpoint {path} holds a {type(obj).__name__}, not a dict with key {STATE_KEY!r}"
        )
    if STATE_KEY in obj:
        sd = obj[STATE_KEY]
        if not isinstance(sd, Mapping):
            raise IFQACheckpointError(
                f"IFQA checkpoint {path}: entry {STATE_KEY!r} is a {type(sd).__name__}, not a state dict"
            )
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj  # a bare state dict
    else:
        raise IFQACheckpointError(
            f"IFQA checkpoint {path} has no {STATE_KEY!r} entry (the authors' IFQA_Metric.pth stores the "
            f"discriminator there) and is not a bare state dict; its keys: {sorted(map(str, obj))[:8]}"
        )
    if sd and all(str(k).startswith("module.") for k in sd):  # saved from a DataParallel wrapper
        sd = {str(k)[len("module.") :]: v for k, v in sd.items()}
    return sd


def check_state_dict(sd: Mapping[str, Any], expected: Mapping[str, Sequence[int]], path: str) -> None:
    """Raise :class:`IFQACheckpointError` naming ``path`` unless ``sd`` has exactly ``expected``'s keys
    and shapes; the message lists a few missing, unexpected and mis-shaped tensors."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: {tuple(getattr(sd[k], 'shape', ()))} vs {tuple(expected[k])}"
        for k in expected
        if k in sd and tuple(getattr(sd[k], "shape", ())) != tuple(expected[k])
    ]
    if missing or unexpected or shapes:
        parts = []
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {what}: {', '.join(items[:5])}{more}")
        raise IFQACheckpointError(
            f"IFQA checkpoint {path} does not match IFQA's discriminator ({N_TENSORS} tensors): "
            + "; ".join(parts)
        )


def load_ifqa(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, weights_only: bool = True
) -> IFQA:
    """The authors' IFQA discriminator from a user-supplied ``IFQA_Metric.pth``, loaded strictly, in eval
    mode with gradients off, on ``device``.

    The file holds ``{"D": state_dict}`` (a bare state dict is accepted too). Errors name the file: a
    missing file (:class:`IFQAWeightsUnavailable`, a ``FileNotFoundError``), no ``D`` entry, or keys /
    shapes that differ from IFQA's (:class:`IFQACheckpointError`, a ``ValueError``). ``weights_only``:
    ``torch.load``'s safe unpickler; pass ``False`` only for a trusted file that holds other objects.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise IFQAWeightsUnavailable(
            f"IFQA checkpoint {path} does not exist; IFQA's weights (IFQA_Metric.pth, Jo et al. WACV 2023) "
            "cannot be downloaded here, so the file must be supplied locally"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        raise IFQACheckpointError(
            f"IFQA checkpoint {path} could not be read with torch.load(weights_only={weights_only}): {err}"
            + (
                "; if the file is trusted, load it with load_ifqa(path, weights_only=False)"
                if weights_only
                else ""
            )
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise IFQACheckpointError(f"IFQA checkpoint {path} is not a readable torch file: {err}") from err
    sd = _state_dict_of(obj, path)
    with torch.device("meta"):
        model = IFQA()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_dict(sd, expected, path)
    # assign=True: the meta model takes the loaded tensors as its parameters (no 105 M random init)
    model.load_state_dict({k: v.detach().to(torch.float32) for k, v in sd.items()}, strict=True, assign=True)
    model.requires_grad_(False)
    return model.to(device).eval()
