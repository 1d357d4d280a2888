"""Feature regularity: ProDet's perturbed distance (PD) and its mean over a distribution (mPD).

ProDet (NeurIPS 2024), Sec. 4.5 "Feature Regularity", Fig. 4b and Table 4; definition in appendix 7.4,
Eqs. 9-10, whose text extraction garbles the formula. Reading adopted (docs/methods/prodet.md): for a
sample with feature ``F`` (the pooled feature fed to the final classifier) and ``n`` perturbed versions
``F_1..F_n`` (the paper: ten, each a random perturbation at a random intensity, see
:func:`detect.evaluation.perturbations.draw_keys`)::

    PD  = (1/n) * sum_i ||F_i - F||_2 / F_std                       (Eq. 9)
    mPD = (1/(m n)) * sum_j sum_i ||F^j_i - F^j||_2 / F_std = mean_j PD_j   (Eq. 10)

with ``F_std`` the per-dimension standard deviation of the (clean) features over the distribution's ``m``
samples, averaged over the dimensions, so a single scalar. We take the population standard deviation
(``correction=0``, divide by ``m``, not ``m - 1``); the paper does not say which.

Computed in float64; inputs may be tensors or arrays on any device.
"""

from __future__ import annotations

import math

import torch

__all__ = ["feature_std", "mean_perturbed_distance", "perturbed_distance"]


def _as_float64(x: torch.Tensor, what: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} must be a real-valued tensor, got dtype {t.dtype}")
    return t.detach().to(torch.float64)


def _check_features(features: torch.Tensor, what: str = "features") -> torch.Tensor:
    f = _as_float64(features, what)
    if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"{what} must be a non-empty [N, D] tensor, got shape {tuple(f.shape)}")
    return f


def feature_std(features: torch.Tensor) -> float:
    """``F_std``: the per-dimension population standard deviation of ``features`` ([N, D]) over its N
    samples (``correction=0``), averaged over the D dimensions (ProDet App. 7.4, Eq. 9)."""
    f = _check_features(features)
    return float(f.std(dim=0, correction=0).mean().item())


def _resolve_std(f_std: float | torch.Tensor | None, clean: torch.Tensor) -> float:
    """A positive finite scalar ``F_std``: from ``clean`` when None; a [D] tensor of per-dimension stds
    is averaged (the reading's "averaged over dimensions")."""
    if f_std is None:
        value = feature_std(clean)
    elif isinstance(f_std, (int, float)):
        value = float(f_std)
    else:
        t = _as_float64(f_std, "f_std")
        if t.numel() == 1:
            value = float(t.reshape(()).item())
        elif t.ndim == 1 and t.shape[0] == clean.shape[1]:
            value = float(t.mean().item())
        else:
            raise ValueError(
                f"f_std must be a scalar or a [D={clean.shape[1]}] tensor of per-dimension stds, "
                f"got shape {tuple(t.shape)}"
            )
    if not math.isfinite(value) or value <= 0:
        hint = " (computed from clean: are all clean features identical, or N == 1?)" if f_std is None else ""
        raise ValueError(f"F_std must be positive and finite, got {value}{hint}")
    return value


def perturbed_distance(
    clean: torch.Tensor, perturbed: torch.Tensor, f_std: float | torch.Tensor | None = None
) -> torch.Tensor:
    """PD per sample (ProDet App. 7.4, Eq. 9): ``mean_i ||perturbed[j, i] - clean[j]||_2 / F_std``.

    ``clean``: [N, D] features of the unperturbed samples; ``perturbed``: [N, n, D], the features of n
    perturbed versions of each sample; ``f_std``: ``F_std`` as a number, a 0-d tensor, or a [D] tensor of
    per-dimension stds (averaged); None computes :func:`feature_std` of ``clean`` (population std per
    dimension over the N samples, averaged over dimensions). Returns a float64 [N] tensor on ``clean``'s
    device. Raises ValueError on mismatched shapes or a non-positive / non-finite ``F_std``.
    """
    c = _check_features(clean, "clean")
    p = _as_float64(perturbed, "perturbed")
    n_samples, dim = c.shape
    if p.ndim != 3 or p.shape[0] != n_samples or p.shape[2] != dim or p.shape[1] < 1:
        raise ValueError(
            f"perturbed must be [N={n_samples}, n>=1, D={dim}] to match clean {tuple(c.shape)}, "
            f"got {tuple(p.shape)}"
        )
    std = _resolve_std(f_std, c)
    p = p.to(c.device)
    return torch.linalg.vector_norm(p - c[:, None, :], dim=2).mean(dim=1) / std


def mean_perturbed_distance(
    clean: torch.Tensor, perturbed: torch.Tensor, f_std: float | torch.Tensor | None = None
) -> float:
    """mPD of one distribution (ProDet App. 7.4, Eq. 10): the mean of :func:`perturbed_distance` over the
    N samples, i.e. ``sum_j sum_i ||F^j_i - F^j||_2 / (N n F_std)``. Same arguments and errors."""
    return float(perturbed_distance(clean, perturbed, f_std).mean().item())
