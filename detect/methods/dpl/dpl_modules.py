"""DPL's modules (Zhang et al., ACCV 2024, Sec. 3.1–3.3; docs/methods/dpl.md).

* :func:`window_mask`, :func:`select_features`: the feature selection module's masking, M_t = 0 on a
  channel window of width δ starting at the scaled position l_t, 1 elsewhere, and
  f_{t+1} = f_t − M_t ⊙ f'_t with f'_t the average-pooled f_t (Sec. 3.1, "Feature Selection Module").
* :class:`ProgressiveBranch`: a sequential detection module P (a GRU) run for each sample's own number
  of steps k; its feature is the sum (paper: f_VQ = Σ_t h_t) or the running mean (released code) of the
  outputs h_1..h_k. Step 1 takes the pooled backbone feature, later steps a 1×1 projection of the selected
  feature (released code), pooled.
* :class:`AFF`: attentional feature fusion (Dai et al., WACV 2021) for the "Attention" row of Table 7.
* :class:`Policy`: Φ of the feature selection module (Fig. 4): encoder, GRU, a Gaussian over the window
  position (actor) and a value head V (critic, Eq. 5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def window_start(actions: torch.Tensor, channels: int, width: int, scale: str) -> torch.Tensor:
    """The first channel of each window: ⌊l·(c − δ)⌋ (``scale="c_minus_delta"``, the released code: the
    window always fits) or ⌊l·c⌋ (``scale="c"``, the paper: "scale it to the range [0, c]"; a window
    running past the last channel is cut there). ``actions`` [N] in [0, 1]."""
    span = channels - width if scale == "c_minus_delta" else channels
    if scale not in ("c_minus_delta", "c"):
        raise ValueError(f"window scale {scale!r}; use 'c' (paper) or 'c_minus_delta' (code)")
    return torch.floor(actions.clamp(0.0, 1.0) * span).long().clamp(0, channels - 1)


def window_mask(actions: torch.Tensor, channels: int, width: int, scale: str = "c") -> torch.Tensor:
    """M_t [N, c]: 0 on channels [start, start + δ) (the retained window), 1 elsewhere."""
    start = window_start(actions, channels, width, scale)
    idx = torch.arange(channels, device=actions.device)
    inside = (idx[None] >= start[:, None]) & (idx[None] < start[:, None] + width)
    return (~inside).float()


def select_features(fmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """f_{t+1} = f_t − M_t ⊙ f'_t: the pooled feature f'_t = GAP(f_t) [N, c], masked, is subtracted from
    every position of ``fmap`` [N, c, h, w]; the window's channels are kept as they are."""
    pooled = fmap.mean(dim=(2, 3))
    return fmap - (mask.to(fmap.dtype) * pooled)[:, :, None, None]


class ProgressiveBranch(nn.Module):
    """A progressive-learning branch (VQPL or FIPL): GRU steps over the selected features."""

    def __init__(self, channels: int, aggregate: str = "sum") -> None:
        super().__init__()
        if aggregate not in ("sum", "mean"):
            raise ValueError(f"branch aggregate {aggregate!r}; use 'sum' (paper) or 'mean' (code)")
        self.cell = nn.GRUCell(channels, channels)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)
        self.aggregate = aggregate

    def step_input(self, fmap: torch.Tensor, t: int) -> torch.Tensor:
        """The GRU input at step ``t`` (1-based): GAP(f) at step 1, GAP(proj(f_t)) later. The 1×1
        projection and the pooling are both linear, so GAP(proj(f_t)) = proj(GAP(f_t)) exactly; the
        cheaper right-hand side is computed."""
        pooled = fmap.mean(dim=(2, 3))
        if t == 1:
            return pooled
        w = self.proj.weight.view(self.proj.out_channels, self.proj.in_channels)
        return F.linear(pooled, w, self.proj.bias)

    def forward(self, maps: list[torch.Tensor], steps: torch.Tensor) -> torch.Tensor:
        """Branch features after each step, [T, N, C] for T = len(maps): row t is built from the outputs
        h_1..h_{min(t, k_i)} of sample i. Sample i runs exactly k_i GRU steps (``steps`` [N], 1..T):
        at step t only the samples with k_i ≥ t enter the GRU."""
        n = steps.shape[0]
        h = maps[0].new_zeros(n, self.cell.hidden_size)
        total = torch.zeros_like(h)
        out = []
        for t, fmap in enumerate(maps, start=1):
            active = steps >= t
            if bool(active.all()):
                h = self.cell(self.step_input(fmap, t), h)
                total = total + h
            elif bool(active.any()):
                idx = active.nonzero().squeeze(1)
                h_new = self.cell(self.step_input(fmap[idx], t), h[idx])
                h = h.index_put((idx,), h_new)
                total = total.index_put((idx,), total[idx] + h_new)
            count = steps.clamp(max=t).to(total.dtype)[:, None]
            out.append(total if self.aggregate == "sum" else total / count)
        return torch.stack(out)


class _ChannelAttention(nn.Module):
    """MS-CAM's bottleneck (Dai et al., WACV 2021, Fig. 2): point-wise conv, BN, ReLU, point-wise conv, BN;
    on pooled [N, C] features a point-wise conv is a Linear layer."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.net = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.BatchNorm1d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AFF(nn.Module):
    """Attentional feature fusion (Dai et al., WACV 2021, Eq. 4): Z = M(X ⊎ Y) ⊗ X + (1 − M(X ⊎ Y)) ⊗ Y,
    ⊎ the initial integration by addition, M = σ(L(·) ⊕ G(·)) the multi-scale channel attention (its local
    and global contexts, on [N, C] vectors, are two bottlenecks over the same 1×1 input)."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.local = _ChannelAttention(channels, ratio)
        self.glob = _ChannelAttention(channels, ratio)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = x + y
        m = torch.sigmoid(self.local(s) + self.glob(s))
        return m * x + (1.0 - m) * y


class Fusion(nn.Module):
    """Fuses the branch features (Table 7): ``add`` (paper: f_VQ + f_FI), ``average`` (the released code:
    (f_VQ + f_FI)/2), ``concat`` or ``attention`` (AFF). One branch passes through unchanged."""

    KINDS = ("add", "average", "concat", "attention")

    def __init__(self, kind: str, channels: int, n_branches: int) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"method.fusion={kind!r}; use one of {self.KINDS}")
        self.kind, self.n = kind, n_branches
        self.aff = AFF(channels) if kind == "attention" and n_branches == 2 else None
        self.out_dim = channels * n_branches if kind == "concat" else channels

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if len(feats) == 1:
            return feats[0]
        if self.kind == "concat":
            return torch.cat(feats, dim=-1)
        if self.kind == "attention":
            lead = feats[0].shape[:-1]
            x, y = (f.reshape(-1, f.shape[-1]) for f in feats)
            return self.aff(x, y).reshape(*lead, -1)
        total = feats[0] + feats[1]
        return total / 2 if self.kind == "average" else total


class Policy(nn.Module):
    """Φ (Fig. 4): μ_t, σ_t, g_t = Φ(f'_t, g_{t−1}) on the pooled selected feature f'_t.

    Encoder Linear(c, 2048)–ReLU–Linear(2048, H)–ReLU, a GRU cell (hidden H), actor Linear(H, 1)+sigmoid
    (μ ∈ (0, 1)), critic Linear(H, 1) (V of Eq. 5). σ: ``std="head"`` a Linear(H, 1)+softplus head (the
    paper: Φ outputs μ and σ) or ``std="log_param"`` one learnable log-σ, initialised at ``log_std_init``
    (the released code: 0.1, i.e. σ = e^0.1).
    """

    def __init__(self, channels: int, hidden: int, std: str = "head", log_std_init: float = 0.1) -> None:
        super().__init__()
        if std not in ("head", "log_param"):
            raise ValueError(f"method.policy.std={std!r}; use 'head' (paper) or 'log_param' (code)")
        self.encoder = nn.Sequential(
            nn.Linear(channels, 2048), nn.ReLU(inplace=True), nn.Linear(2048, hidden), nn.ReLU(inplace=True)
        )
        self.cell = nn.GRUCell(hidden, hidden)
        self.actor = nn.Linear(hidden, 1)
        self.critic = nn.Linear(hidden, 1)
        self.std_kind = std
        if std == "head":
            self.std_head = nn.Linear(hidden, 1)
            # start near σ = 0.1 (softplus⁻¹(0.1) ≈ −2.25): exploratory but inside [0, 1]
            nn.init.zeros_(self.std_head.weight)
            nn.init.constant_(self.std_head.bias, math.log(math.expm1(0.1)))
        else:
            self.log_std = nn.Parameter(torch.full((1,), float(log_std_init)))
        # set once Stage II has trained Φ; evaluation then uses Φ's mean action (a buffer: checkpointed)
        self.register_buffer("trained", torch.tensor(False))

    def forward(
        self, pooled: torch.Tensor, hidden: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(μ [N], σ [N], V [N], g [N, H])`` for pooled features [N, c] and the previous hidden state."""
        g = self.cell(self.encoder(pooled), hidden)
        mu = torch.sigmoid(self.actor(g)).squeeze(1)
        if self.std_kind == "head":
            sigma = F.softplus(self.std_head(g)).squeeze(1) + 1e-4
        else:
            sigma = self.log_std.exp().expand_as(mu)
        return mu, sigma, self.critic(g).squeeze(1), g
