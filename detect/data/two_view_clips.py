"""Two views of each training clip for RealForensics' stage 2 (Haliassos et al., CVPR 2022; the authors'
``stage2/data/combined_dm.py``, read): an augmented view the detector trains on, and a "clean" view from
which the frozen stage-1 target network computes the self-supervised targets.

Both views are drawn independently from the same frames, one draw per clip each. The clean view gets only
the recipe's augmentations named in ``clean_transforms`` (the authors': the random crop, here a
translation, and the horizontal flip). The augmented view gets the whole augmentation list (crop, flip
and random grayscale in the authors' recipe), then, on the normalised tensor, random erasing (one
``torchvision.transforms.RandomErasing`` rectangle for every frame, value 0) and the time mask (with
probability ``p``: ``t`` uniform in ``[0, max_len)`` consecutive frames from a uniform start set to 0,
their ``TimeMask`` "v1").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor
from torchvision.transforms import RandomErasing

from detect.data.clip_view import ClipDataset
from detect.data.transforms import Pipeline


def time_mask(clip: Tensor, max_len: int, g: torch.Generator) -> tuple[Tensor, list[int]]:
    """``clip`` [T, ...] with ``t ~ U{0, max_len - 1}`` consecutive frames from ``s ~ U{0, T - t - 1}`` set
    to 0 (no frame where ``t = 0`` or ``T - t <= 0``); returns the masked copy and the masked frames."""
    t = int(torch.randint(0, max(int(max_len), 1), (1,), generator=g))
    n = clip.shape[0]
    if t == 0 or n - t <= 0:
        return clip, []
    start = int(torch.randint(0, n - t, (1,), generator=g))
    out = clip.clone()
    out[start : start + t] = 0
    return out, list(range(start, start + t))


def erase(clip: Tensor, scale: Sequence[float], ratio: Sequence[float], g: torch.Generator) -> Tensor:
    """One ``RandomErasing`` rectangle (value 0) at the same place in every frame of ``clip`` [T, C, H, W]
    (torchvision's draw, made with ``g``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        i, j, h, w, _ = RandomErasing.get_params(clip, scale=tuple(scale), ratio=tuple(ratio), value=[0.0])
    out = clip.clone()
    out[..., i : i + h, j : j + w] = 0
    return out


class TwoViewClipDataset(ClipDataset):
    """:class:`ClipDataset` for training with ``clip`` (augmented view) and ``clip_clean`` (clean view)."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        clip_len: int,
        rule: str = "consecutive",
        clean_transforms: Sequence[str] = ("Affine", "HorizontalFlip"),
        erasing: Mapping | None = None,
        masking: Mapping | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(table, pipeline, clip_len, train=True, rule=rule, seed=seed)
        spec = self.pipeline.spec
        names = set(clean_transforms)
        kept = [a for a in spec["augment"] if str(a["_target_"]).rsplit(".", 1)[-1] in names]
        self.clean_pipeline = Pipeline(
            size=spec["size"],
            mean=spec["mean"],
            std=spec["std"],
            augment=kept,
            crop=spec["crop"],
            max_group=self.pipeline.max_group,
        )
        self.erasing = dict(erasing or {"p": 0.0})
        self.masking = dict(masking or {"p": 0.0})
        self.seed = int(seed)

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self.clean_pipeline.set_seed(int(seed) + 104729)
        self.seed = int(seed)

    def _generator(self, i: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + int(i)) % 2**62)

    def __getitem__(self, i: int) -> dict:
        rows = self.clips[i]
        frames = self.load(i)
        g = self._generator(i)
        clip = torch.stack(self.pipeline.apply_shared(frames, augment=True)[0])
        if float(torch.rand(1, generator=g)) < float(self.erasing.get("p", 0.0)):
            clip = erase(clip, self.erasing["scale"], self.erasing["ratio"], g)
        if float(torch.rand(1, generator=g)) < float(self.masking.get("p", 0.0)):
            clip, _ = time_mask(clip, int(self.masking["max_len"]), g)
        clean = torch.stack(self.clean_pipeline.apply_shared(frames, augment=True)[0])
        return {
            "clip": clip,
            "clip_clean": clean,
            "label": torch.tensor(self.frame_labels[int(rows[0])], dtype=torch.float32),
            "clip_index": i,
            "indices": torch.as_tensor(rows),
        }
