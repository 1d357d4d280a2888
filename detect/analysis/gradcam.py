"""Grad-CAM (Selvaraju et al., ICCV 2017) maps of held-out images (ProDet Fig. 8, DPL's figures), computed
by the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``).

The package needs a module from images to logits and the layer whose output is the map: a model is seen
through :class:`SplitAtFeature`, its ``feature_map`` (F), an identity layer the package hooks, then
``attend`` and ``classifier``. The package's maps are ReLU(Σ_c w_c F_c) with w_c the spatially averaged
gradients of the target logit, each scaled to [0, 1] by its own minimum and maximum at F's resolution,
resized to the image (OpenCV, bilinear) and scaled to [0, 1] once more. Nothing the figures need is missing
from the package, so no Grad-CAM of our own is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from detect.analysis.held_out import AnchorTuples
from detect.analysis.runs import Run
from detect.data.anchor_tuples import TUPLE_ANCHORS


class SplitAtFeature(nn.Module):
    """``images -> classifier(attend(F)[0])`` with F = ``feature_map(images)`` passed through ``self.feature``
    (an identity: the layer Grad-CAM hooks). ``model`` is a module with those three methods (ProDet, or a
    view of another model that provides them)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for part in ("feature_map", "attend", "classifier"):
            if not hasattr(model, part):
                raise TypeError(f"Grad-CAM needs a model with {part}(); {type(model).__name__} has none")
        self.model = model
        self.feature = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature = self.feature(self.model.feature_map(images).float())
        return self.model.classifier(self.model.attend(feature)[0]).float()


def grad_cam(model: nn.Module, images: torch.Tensor, target: int = 1) -> torch.Tensor:
    """Grad-CAM of the final classifier's logit ``target`` (1: fake) with respect to the feature map F of
    ``model`` (see the module's docstring). Returns [N, H, W] in [0, 1] on the CPU (all zeros where the map
    is); the model's mode and its parameters' gradients are left as they were."""
    split = SplitAtFeature(model)
    was_training = model.training
    params = list(split.parameters())
    grads = [p.grad for p in params]
    try:
        with torch.enable_grad():
            cams = GradCAM(model=split, target_layers=[split.feature])(
                input_tensor=images, targets=[ClassifierOutputTarget(int(target))] * len(images)
            )
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        model.train(was_training)
    return torch.from_numpy(np.clip(cams, 0.0, 1.0)).float()


def gradcam_maps(run: Run, tuples: AnchorTuples, n_tuples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_tuples`` tuples as displayed images [T, A, H, W, 3] (float in [0, 1], what the network
    sees) and their Grad-CAM maps [T, A, H, W]."""
    per = len(TUPLE_ANCHORS)
    rows = list(range(min(n_tuples * per, len(tuples))))
    x = tuples.inputs(run.pipeline, rows)
    cams = torch.cat(
        [grad_cam(run.method, x[s : s + 32].to(run.runtime.device)) for s in range(0, len(x), 32)]
    )
    mean = torch.as_tensor(run.pipeline.mean / 255.0).permute(2, 0, 1)
    std = torch.as_tensor(run.pipeline.std / 255.0).permute(2, 0, 1)
    shown = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    t = len(rows) // per
    return shown.reshape(t, per, *shown.shape[1:]), cams.numpy().reshape(t, per, *cams.shape[1:])
