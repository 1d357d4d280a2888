"""Class-activation heat maps for ``predict.py visualize=true visualize_cam=true``: Grad-CAM (Selvaraju et
al., ICCV 2017) of the fake logit at the method's backbone's last feature stage, computed by the
``grad-cam`` package (``pytorch_grad_cam.GradCAM``), and drawn back onto the frame through the crop's map.

The package needs a module from images to class scores and the layer it hooks. The module is the method's
own ``predict`` (P(fake), with its ``torch.no_grad`` decorator unwrapped) turned into the logit
``log(p / (1 - p))``; the layer is the last entry of timm's ``feature_info`` of ``method.backbone`` (e.g.
EfficientNet's ``blocks.6``, Xception's ``act4``, ConvNeXt's ``stages.3``; NHWC stages are permuted). The
package's map is ReLU(Σ_c w_c F_c), w_c the spatially averaged gradients of the logit, scaled to [0, 1] and
resized to the model's input.
"""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from detect.data.transforms import Pipeline
from detect.engine.method_contract import Method
from detect.models.backbone import Backbone


class FakeLogit(nn.Module):
    """``images -> [N, 1]`` logit of the method's P(fake), differentiable."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method
        self.predict = inspect.unwrap(type(method).predict)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = self.predict(self.method, images).float()
        if not p.requires_grad:
            raise RuntimeError(
                f"visualize_cam: {type(self.method).__name__}.predict computes P(fake) without gradients; "
                "no heat map can be drawn for it (run without visualize_cam)"
            )
        return torch.logit(p.clamp(1e-6, 1 - 1e-6))[:, None]


def last_feature_layer(method: Method) -> tuple[nn.Module, bool]:
    """The module of ``method.backbone`` whose output is its last feature stage, and whether it is NHWC."""
    backbone = getattr(method, "backbone", None)
    if not isinstance(backbone, Backbone):
        raise ValueError(f"visualize_cam needs a method with a `backbone`; {type(method).__name__} has none")
    info = getattr(backbone.model, "feature_info", None)
    if not info:
        raise ValueError(f"visualize_cam: timm's {backbone.timm_name} lists no feature stages (feature_info)")
    return backbone.model.get_submodule(info[-1]["module"]), backbone.nhwc


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def heat_maps(
    method: Method, pipeline: Pipeline, crops: list[np.ndarray], batch_size: int = 16
) -> list[np.ndarray]:
    """Grad-CAM of the fake logit for each face crop (RGB uint8), each ``[size, size]`` float32 in [0, 1] at
    the crop's own size. The method's mode and its parameters' gradients are left as they were."""
    layer, nhwc = last_feature_layer(method)
    device = next(method.parameters()).device
    model = FakeLogit(method)
    was_training = method.training
    grads = {p: p.grad for p in method.parameters()}
    out: list[np.ndarray] = []
    try:
        cam = GradCAM(model=model, target_layers=[layer], reshape_transform=_nchw if nhwc else None)
        for s in range(0, len(crops), batch_size):
            chunk = crops[s : s + batch_size]
            x = torch.stack([pipeline(c, augment=False) for c in chunk]).to(device)
            with torch.enable_grad():
                maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * len(chunk))
            for crop, m in zip(chunk, maps, strict=True):
                h, w = crop.shape[:2]
                resized = cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                out.append(np.clip(resized, 0.0, 1.0))
    finally:
        for p, g in grads.items():
            p.grad = g
        method.train(was_training)
    return out


def overlay(
    frame: np.ndarray,
    heat: np.ndarray,
    matrix: np.ndarray | None,
    box: tuple[float, float, float, float],
    alpha: float = 0.5,
) -> np.ndarray:
    """``frame`` (RGB uint8) with ``heat`` (crop pixels, [0, 1]) blended in as a jet colour map where the
    crop came from: through the inverse of the crop's ``matrix`` (frame -> crop), or stretched over ``box``
    when there is none (``faces=crops``)."""
    h, w = frame.shape[:2]
    if matrix is None:
        x0, y0, x1, y1 = box
        sx, sy = heat.shape[1] / max(x1 - x0, 1e-6), heat.shape[0] / max(y1 - y0, 1e-6)
        matrix = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    m = np.asarray(matrix, np.float64)
    back = cv2.warpAffine(heat.astype(np.float32), m, (w, h), flags=flags, borderValue=0.0)
    inside = cv2.warpAffine(np.ones_like(heat, np.float32), m, (w, h), flags=flags, borderValue=0.0)
    colour = cv2.applyColorMap(np.uint8(np.clip(back, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    a = (alpha * np.clip(inside, 0, 1))[..., None]
    return np.uint8(np.clip((1 - a) * frame + a * colour, 0, 255))
