"""Source architectures and helpers the converter tests share: published detectors' layouts rebuilt from
their own pip packages, random weights with random batch-norm statistics, and one conversion call."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from helpers import compose
from torch import nn

from detect.convert import get_format
from detect.convert.conversion import convert_file


def calibration_images(n: int, size: int, mean: float, std: float, g: torch.Generator) -> torch.Tensor:
    """Smooth random images in a source's input normalisation, (x - mean) / std with x in [0, 1]."""
    low = torch.rand(n, 3, 8, 8, generator=g)
    return (F.interpolate(low, size=(size, size), mode="bilinear") - mean) / std


def randomise(
    model: nn.Module, seed: int, size: int, mean: float, std: float, calibrate: int = 128
) -> nn.Module:
    """Random weights and random batch-norm statistics, in eval mode: convolutions and linear layers
    drawn anew, batch-norm running statistics measured on random images in the source's own input
    normalisation (so activations stay in range through a deep random net), then perturbed, with random
    affine parameters; the two-logit layers are rescaled (a few passes, as they feed each other) so that
    the logits of such images spread by ~2 (a random deep net's pooled features differ little between
    images: unscaled, every probability would be about equal, or saturated)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[0]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight.shape[1] ** 0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batch
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        model.train()
        model(calibration_images(4, calibrate, mean, std, g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.mul_(1.0 + 0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.mul_(1.0 + 0.2 * torch.rand(m.running_var.shape, generator=g))
        model.eval()
        logits = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 2]
        x = calibration_images(4, size, mean, std, g)
        seen: dict[nn.Linear, torch.Tensor] = {}
        for _ in range(3):
            seen.clear()
            hooks = [h.register_forward_hook(lambda m, a, o: seen.__setitem__(m, a[0])) for h in logits]
            model(x)
            for h in hooks:
                h.remove()
            for m in (h for h in logits if h in seen):  # the two-logit layers the forward pass uses
                diff = seen[m] @ (m.weight[1] - m.weight[0]) + (m.bias[1] - m.bias[0])
                scale = 2.0 / diff.std().clamp_min(1e-12)
                m.weight.mul_(scale)
                m.bias.copy_(m.bias * scale)
                m.bias[1] -= (diff * scale).mean()  # centre the logit difference
    return model.eval()


def convert(fmt: str, src: Path, dst: Path) -> Path:
    cfg = compose(["logger=none", *get_format(fmt).overrides])
    convert_file(fmt, src, dst, cfg)
    return dst


class DfbXception(nn.Module):
    """DeepfakeBench's Xception detector's layout: the FF++ Xception (timm legacy_xception names) with
    ``last_linear`` Linear(2048, 2) and an unused ``adjust_channel`` branch."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = timm.create_model("legacy_xception", pretrained=False, num_classes=2)
        self.backbone.last_linear = self.backbone.fc
        del self.backbone.fc
        self.backbone.adjust_channel = nn.Sequential(
            nn.Conv2d(2048, 512, 1, 1), nn.BatchNorm2d(512), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        logits = self.backbone.last_linear(F.adaptive_avg_pool2d(F.relu(f), 1).flatten(1))
        return logits.softmax(1)[:, 1]


#: Key-and-shape manifests of published detectors' state dicts (one JSON per converter format).
MANIFESTS = Path(__file__).parent / "data" / "dfb_manifests"


def manifest_state_dict(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict a manifest lists (``keys``: name -> shape), with random values: int64 batch-norm
    counters, positive running variances, normal draws elsewhere; keys carry DataParallel's ``module.``
    prefix as DeepfakeBench's saved checkpoints do."""
    import json

    keys = json.loads(path.read_text())["keys"]
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in keys.items():
        if name.endswith("num_batches_tracked"):
            value = torch.tensor(7, dtype=torch.int64)
        elif name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        else:
            value = torch.randn(shape, generator=g)
        out["module." + name] = value
    return out
