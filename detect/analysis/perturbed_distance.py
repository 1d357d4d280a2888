"""Perturbed distance (PD, ProDet appendix 7.4, Eq. 9) of held-out images under Sec. 4.4's random unseen
perturbations."""

from __future__ import annotations

import logging

import numpy as np
import torch

from detect.analysis.held_out import (
    AnchorTuples,
    map_images,
    pooled,
)
from detect.analysis.runs import Run
from detect.evaluation.perturbations import Perturbation, build_perturbation, draw_keys
from detect.evaluation.regularity import perturbed_distance

log = logging.getLogger(__name__)


# Sec. 4.4: the three unseen perturbations at the random intensities of Table 4 (the registry's defaults:
# block-wise ratio 0.1 of a 4x4 grid, noise variance U(10, 50), shift U{-50..50} on both axes).
PD_PERTURBATIONS = ("prodet_blockwise", "prodet_noise", "prodet_shift")


def random_perturbation(seed: int = 0) -> Perturbation:
    """Sec. 4.4's "random perturbation at a random intensity": per sample key, one of block-wise masking,
    Gaussian noise or shift, chosen from ``(seed, key)``, each drawing its intensity from ``(seed, key)``."""
    kinds = [build_perturbation({"name": name, "seed": seed}) for name in PD_PERTURBATIONS]

    def fn(image: np.ndarray, key: int) -> np.ndarray:
        pick = int(np.random.default_rng(np.random.SeedSequence([seed, int(key), 1])).integers(len(kinds)))
        return kinds[pick](image, key)

    return fn


def perturbed_distances(
    run: Run,
    tuples: AnchorTuples,
    clean: np.ndarray,
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """PD of every tuple image (appendix 7.4, Eq. 9; ``detect.evaluation.regularity``): ``draws`` perturbed
    versions of image ``j`` use keys ``draw_keys(j, draws)``; ``clean`` are its features [M, C] (F_std is
    taken over them: the plotted distribution). mPD is the mean of the result."""
    pert = random_perturbation(seed)
    perturbed = []
    for i in range(draws):

        def make(j: int, i: int = i) -> torch.Tensor:
            return run.pipeline(pert(tuples.raw[j], draw_keys(j, draws)[i]), augment=False)

        perturbed.append(map_images(run, pooled, make, len(tuples), batch_size))
    pd_ = perturbed_distance(torch.from_numpy(clean), torch.from_numpy(np.stack(perturbed, 1)))
    return pd_.numpy()
