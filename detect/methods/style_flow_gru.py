"""Style flows and the StyleGRU of Choi, Kim, Jeong, Baek and Choi, "Exploiting Style Latent Flows for
Generalizing Deepfake Video Detection", CVPR 2024 (arXiv:2403.06592); sizes read from the authors'
released stage-1 code (jongwook-Choi/StyleFlow: ``StyleGRU/model/StyleGRU.py``, ``train.py``;
docs/methods/style_flow.md).

* **Style flow** (the paper's "style latent flow", Fig. 2): the differences of consecutive frames' W+ latents,
  ``dS_t = S_{t+1} - S_t`` for a clip of ``T`` frames -> ``T - 1`` flows of ``18 * 512`` values
  (:func:`style_flow`).
* **StyleGRU** (the paper's StyleGRU module): latent dropout (one Bernoulli mask over half the feature
  positions, the same for both halves and every time step; p = 0.2), batch normalisation over the ``T - 1``
  time steps as channels, a 2-layer bidirectional GRU (4096 units, dropout 0.1) started from a learnt hidden
  state; the style feature ``E_style`` is the concatenation of the 4 final hidden states (16384 values); a
  classification head (dropout 0.5, residual MLP 16384 -> 4096 -> 16384, dropout 0.5, Linear -> 1 logit)
  trains it in stage 1.
* **Stage-1 loss** (the paper's supervised contrastive learning; Fig. 2 ``L_tri + L_cls``): for triplets
  (anchor, a positive of the same label, a negative of the other label),
  ``L_tri = max(0, ||E_a - E_p||_2 - ||E_a - E_n||_2 + margin)`` (margin 1.0) and ``L_cls`` = BCE of every
  clip's logit (:func:`triplet_loss`, :func:`pick_triplets`).

Attribute names follow the authors' ``StyleGRU`` (``hidden_state``, ``gru``, ``dense``, ``bn``), so a stage-1
state dict of their code loads strictly (``module.``/``model.`` prefixes removed).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def style_flow(latents: Tensor) -> Tensor:
    """``[B, T, n_styles, dim]`` W+ latents of a clip -> ``[B, T - 1, n_styles * dim]`` consecutive
    differences."""
    if latents.dim() != 4 or latents.shape[1] < 2:
        raise ValueError(f"latents of shape {tuple(latents.shape)}: need [B, T >= 2, n_styles, dim]")
    flow = latents[:, 1:] - latents[:, :-1]
    return flow.flatten(2)


class LatentDropout(nn.Module):
    """Dropout of feature positions shared by time and by the two halves of the feature vector: in training,
    a Bernoulli(1 - p) mask ``m`` over ``D / 2`` positions, ``x * [m, m] / (1 - p)`` at every time step."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"latent dropout p={p}: must be in [0, 1)")
        self.p = float(p)

    def mask(self, dim: int, device: torch.device) -> Tensor:
        half = torch.bernoulli(torch.full((dim // 2,), 1.0 - self.p, device=device))
        return torch.cat([half, half]) / (1.0 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.shape[-1] % 2:
            raise ValueError(f"latent dropout needs an even feature size, got {x.shape[-1]}")
        return x * self.mask(x.shape[-1], x.device).to(x.dtype)


class ResidualMLP(nn.Module):
    """``x + Linear(ReLU-Dropout(Linear(x)))``: the head's residual feed-forward block."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) + x


class Residual(nn.Module):
    """Holds the residual MLP under ``fn`` (the authors' key layout ``dense.1.fn.net.*``)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class StyleGRU(nn.Module):
    """``[B, T - 1, D]`` style flows -> (stage-1 logit ``[B]``, ``E_style [B, 2 * layers * hidden]``)."""

    def __init__(
        self,
        feature_size: int = 18 * 512,
        steps: int = 31,
        hidden: int = 4096,
        layers: int = 2,
        latent_dropout: float = 0.2,
        gru_dropout: float = 0.1,
        head_dropout: float = 0.5,
        head_hidden: int = 4096,
    ) -> None:
        super().__init__()
        self.feature_size, self.steps = int(feature_size), int(steps)
        self.out_dim = 2 * int(layers) * int(hidden)
        self.hidden_state = nn.Parameter(torch.randn(2 * layers, 1, hidden))
        self.dropout_latent = LatentDropout(latent_dropout)
        self.gru = nn.GRU(
            feature_size,
            hidden,
            num_layers=layers,
            dropout=gru_dropout if layers > 1 else 0.0,
            batch_first=True,
            bidirectional=True,
        )
        self.dense = nn.Sequential(
            nn.Dropout(head_dropout),
            Residual(ResidualMLP(self.out_dim, head_hidden, head_dropout)),
            nn.Dropout(head_dropout),
            nn.Linear(self.out_dim, 1),
        )
        self.bn = nn.BatchNorm1d(self.steps)  # the T - 1 time steps are the channels (the authors' layout)

    def features(self, flows: Tensor) -> Tensor:
        """``E_style``: the final hidden states of both directions of every layer, concatenated."""
        if flows.shape[1:] != (self.steps, self.feature_size):
            raise ValueError(
                f"style flows of shape {tuple(flows.shape[1:])}, but StyleGRU takes ({self.steps}, "
                f"{self.feature_size}) (clip_len - 1 flows of n_styles * style_dim)"
            )
        x = self.bn(self.dropout_latent(flows))
        h0 = self.hidden_state.expand(-1, x.shape[0], -1).contiguous().to(x.dtype)
        _, h_n = self.gru(x, h0)  # [2 * layers, B, hidden]
        return h_n.transpose(0, 1).reshape(x.shape[0], self.out_dim)

    def forward(self, flows: Tensor) -> tuple[Tensor, Tensor]:
        e_style = self.features(flows)
        return self.dense(e_style).squeeze(1), e_style


def pick_triplets(labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """In-batch triplets ``[N, 3]`` (anchor, positive, negative) for every clip that has another clip of its
    label and one of the other label in the batch: the positive and negative drawn uniformly."""
    labels = labels.view(-1)
    rows = []
    for a in range(labels.numel()):
        same = (labels == labels[a]).nonzero().view(-1)
        same = same[same != a]
        other = (labels != labels[a]).nonzero().view(-1)
        if same.numel() == 0 or other.numel() == 0:
            continue
        p = same[torch.randint(same.numel(), (1,), generator=generator)]
        n = other[torch.randint(other.numel(), (1,), generator=generator)]
        rows.append(torch.cat([torch.tensor([a]), p.cpu(), n.cpu()]))
    return torch.stack(rows) if rows else torch.zeros(0, 3, dtype=torch.long)


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0) -> Tensor:
    """Per-triplet ``max(0, ||a - p||_2 - ||a - n||_2 + margin)`` (the authors' ``MarginRankingLoss`` with
    target -1 on the two Euclidean distances)."""
    d_ap = (anchor - positive).norm(dim=1)
    d_an = (anchor - negative).norm(dim=1)
    return F.relu(d_ap - d_an + margin)


def read_style_gru_state(path: Path) -> dict[str, Tensor]:
    """A stage-1 StyleGRU state dict (the authors' ``g.state_dict()`` or their ``TripletNet`` checkpoint under
    ``state_dict`` with ``module.model.`` prefixes), read with ``weights_only``."""
    source = torch.load(str(path), map_location="cpu", weights_only=True)
    state = source.get("state_dict", source) if isinstance(source, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a StyleGRU state dict")
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}
