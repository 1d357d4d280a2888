"""ProDet's modules (Cheng et al., "Can We Leave Deepfake Data Behind in Training Deepfake Detector?",
NeurIPS 2024), with the shapes of the released code (docs/methods/prodet.md, "Architecture"):

- ``ClassifierHead``: GAP → Linear(C, 256) → LeakyReLU → Linear(256, k): each head of the attribute
  classifier Ca (Eq. 1) and the final classifier Cf (Eq. 3);
- ``AttributeClassifier``: Ca with the triplet-binary strategy (three 2-way heads: blending clue, identity
  inconsistency, generative artifacts), multi-label (one 3-way sigmoid head) or multi-class (one head over
  the anchors) of Sec. 3.1 / appendix 7.3;
- ``Projector``: P of Eq. 2, each head's raw logits → Linear(k, 256) → LeakyReLU → Linear(256, C) → a
  C×1×1 map → ConvTranspose2d with a kernel the size of the feature map → C×h×w; the maps and F are fused by
  1×1 conv + BN + ReLU, 1×1 conv + BN + ReLU, 3×3 conv, sigmoid into the attention map M;
- ``TransitionModule``: T of Eq. 5, noise N of F's shape → two 3×3 conv + LeakyReLU; concatenated with F
  → 1×1 conv + LeakyReLU → 3×3 conv + LeakyReLU.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """GAP → Linear(C, hidden) → LeakyReLU → Linear(hidden, out)."""

    def __init__(self, channels: int, out: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.LeakyReLU(), nn.Linear(hidden, out))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.mlp(feature.mean(dim=(2, 3)) if feature.dim() == 4 else feature)


STRATEGIES = ("triplet", "multilabel", "multiclass")


class AttributeClassifier(nn.Module):
    """Ca: a list of logit tensors, one per head (triplet: three [N, 2]; multilabel: one [N, 3];
    multiclass: one [N, n_anchors])."""

    def __init__(self, channels: int, strategy: str, n_classes: int, hidden: int = 256) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"method.attribute_classifier={strategy!r}; choose from {STRATEGIES} or none")
        self.strategy = strategy
        outs = {"triplet": [2, 2, 2], "multilabel": [3], "multiclass": [n_classes]}[strategy]
        self.heads = nn.ModuleList(ClassifierHead(channels, k, hidden) for k in outs)

    @property
    def out_dims(self) -> list[int]:
        return [h.mlp[-1].out_features for h in self.heads]

    def forward(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [h(feature) for h in self.heads]

    def probabilities(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """Triplet: P(attribute) per head [N, 3]; multilabel: sigmoid [N, 3]; multiclass: softmax."""
        if self.strategy == "triplet":
            return torch.stack([lg.float().softmax(-1)[:, 1] for lg in logits], dim=1)
        if self.strategy == "multilabel":
            return logits[0].float().sigmoid()
        return logits[0].float().softmax(-1)


class Projector(nn.Module):
    """P (Eq. 2) and the fusion into the attention map M; ``map_size`` = the feature map's (h, w)."""

    def __init__(self, channels: int, head_dims: list[int], map_size: tuple[int, int], hidden: int = 256):
        super().__init__()
        self.channels = channels
        self.lift = nn.ModuleList(
            nn.Sequential(nn.Linear(k, hidden), nn.LeakyReLU(), nn.Linear(hidden, channels))
            for k in head_dims
        )
        self.expand = nn.ModuleList(
            nn.ConvTranspose2d(channels, channels, kernel_size=tuple(map_size)) for _ in head_dims
        )
        c_in = channels * (1 + len(head_dims))
        self.fuse = nn.Sequential(
            nn.Conv2d(c_in, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, feature: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
        """The attention map M ∈ (0, 1)^{C×h×w} for ``feature`` given Ca's raw logits (not detached)."""
        maps = [
            expand(lift(lg).reshape(lg.shape[0], self.channels, 1, 1))
            for lift, expand, lg in zip(self.lift, self.expand, logits, strict=True)
        ]
        return torch.sigmoid(self.fuse(torch.cat([feature, *maps], dim=1)))


class TransitionModule(nn.Module):
    """T(N, F) of Eq. 5: maps a feature (with fresh standard-normal noise) towards the next anchor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.noise = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(),
        )
        self.merge = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1),
            nn.LeakyReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(),
        )

    def forward(self, feature: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        noise = torch.randn_like(feature) if noise is None else noise
        return self.merge(torch.cat([self.noise(noise), feature], dim=1))
