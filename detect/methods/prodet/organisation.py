"""How ProDet arranges its anchors in the latent space: the attribute labels of each anchor and the edges
between adjacent anchors (feature bridging and the transition loss act on edges).

- ``r2b2d`` (the paper's, Sec. 3.1 and Fig. 2): real → SBI → CBI → deepfake, attributes (blending clue,
  identity inconsistency, generative artifacts) accumulate: real (0,0,0), SBI (1,0,0), CBI (1,1,0),
  deepfake (1,1,1); edges real–SBI, SBI–CBI, CBI–deepfake.
- ``r2d2b`` (Table 5, "Real to Deepfake to Blendfake"): the same cumulative code along real → deepfake →
  SBI → CBI: deepfake (1,0,0), SBI (1,1,0), CBI (1,1,1); edges real–deepfake, deepfake–SBI, SBI–CBI.
- ``surround`` (Table 5, "blendfake and deepfake surround real with similar distances"): each fake anchor
  gets its own attribute, SBI (1,0,0), CBI (0,1,0), deepfake (0,0,1); edges real–SBI, real–CBI,
  real–deepfake.

The paper describes R2D2B and Surround in one sentence each (Sec. 4.6); the codes above are our reading.
With a subset of anchors (Table 3) the edges join the anchors present that are adjacent in the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

ANCHORS = ("real", "sbi", "cbi", "deepfake")
"""Canonical anchor ids: a dataset item's ``anchors`` holds indices into this tuple."""

ATTRIBUTES = ("blending", "identity", "generative")


@dataclass(frozen=True)
class Organisation:
    """Anchor order, attribute codes and edges (``(earlier, later)`` anchor names)."""

    name: str
    order: tuple[str, ...]
    codes: dict[str, tuple[float, float, float]]
    chain: bool  # edges join consecutive anchors of ``order`` (else: real to every other anchor)

    def edges(self, anchors: Sequence[str]) -> list[tuple[str, str]]:
        """The edges among the anchors present."""
        present = [a for a in self.order if a in anchors]
        if self.chain:
            return list(zip(present[:-1], present[1:], strict=True))
        return [(present[0], a) for a in present[1:]]

    def attribute_targets(self, anchor_ids: torch.Tensor) -> torch.Tensor:
        """[N] canonical anchor ids → [N, 3] attribute targets."""
        table = torch.tensor([self.codes[a] for a in ANCHORS], dtype=torch.float32, device=anchor_ids.device)
        return table[anchor_ids]

    def class_targets(self, anchor_ids: torch.Tensor, anchors: Sequence[str]) -> torch.Tensor:
        """[N] canonical anchor ids → [N, len(anchors)] one-hot over the anchors present, in ``order``
        (the multi-class strategy's 4-way labels: real, SBI, CBI, deepfake = 0..3 for ``r2b2d``)."""
        present = [a for a in self.order if a in anchors]
        lookup = torch.full((len(ANCHORS),), -1, dtype=torch.long, device=anchor_ids.device)
        for k, a in enumerate(present):
            lookup[ANCHORS.index(a)] = k
        cls = lookup[anchor_ids]
        if (cls < 0).any():
            raise ValueError(f"anchor ids {anchor_ids.tolist()} outside the configured anchors {present}")
        return torch.nn.functional.one_hot(cls, len(present)).float()


ORGANISATIONS = {
    "r2b2d": Organisation(
        "r2b2d",
        ("real", "sbi", "cbi", "deepfake"),
        {"real": (0, 0, 0), "sbi": (1, 0, 0), "cbi": (1, 1, 0), "deepfake": (1, 1, 1)},
        chain=True,
    ),
    "r2d2b": Organisation(
        "r2d2b",
        ("real", "deepfake", "sbi", "cbi"),
        {"real": (0, 0, 0), "deepfake": (1, 0, 0), "sbi": (1, 1, 0), "cbi": (1, 1, 1)},
        chain=True,
    ),
    "surround": Organisation(
        "surround",
        ("real", "sbi", "cbi", "deepfake"),
        {"real": (0, 0, 0), "sbi": (1, 0, 0), "cbi": (0, 1, 0), "deepfake": (0, 0, 1)},
        chain=False,
    ),
}


def get_organisation(name: str) -> Organisation:
    if name not in ORGANISATIONS:
        raise ValueError(f"method.organisation={name!r}; choose from {sorted(ORGANISATIONS)}")
    return ORGANISATIONS[name]


def check_anchors(anchors: Sequence[str]) -> list[str]:
    """Validate an anchor list (real plus at least one fake anchor); returns it in canonical order."""
    unknown = [a for a in anchors if a not in ANCHORS]
    if unknown or "real" not in anchors or len(set(anchors)) < 2 or len(set(anchors)) != len(anchors):
        raise ValueError(
            f"method.anchors={list(anchors)}: list 'real' and at least one of sbi, cbi, deepfake "
            f"(no repeats; known: {list(ANCHORS)})"
        )
    return [a for a in ANCHORS if a in anchors]
