"""Dataset views over the sample table, each a small ``torch.utils.data.Dataset``.

- ``FrameDataset``: single frames (every method's evaluation; the baseline's training).
- ``AlignedGroupDataset``: a real frame and the manipulated frames of the same source video and frame
  index (ProDet's aligned tuples build on it).
- ``MetaPairDataset``: LTW's meta pairs (a fake with the real of its source video and frame; a real with
  a fake of another domain), the domains set per epoch by the method.
- ``MultiQualityDataset``: one image at several compression qualities (DPL).

Every item carries ``index``: the row of the sample table (DFFC tracks per-sample losses by it).
Unreadable files raise ``ImageReadError`` naming the file (``detect.data.images``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset

from detect.data.images import read_rgb
from detect.data.jpeg import jpeg_compress
from detect.data.transforms import Pipeline

log = logging.getLogger(__name__)

Perturbation = Callable[[np.ndarray, int], np.ndarray]


def reseed(dataset: Dataset, seed: int) -> None:
    """Seed a view's random draws (augmentations; a view's own ``reseed`` when it has one), looking
    through ``Subset`` wrappers. Called at every epoch start and in every DataLoader worker."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    own = getattr(dataset, "reseed", None)
    if callable(own):
        own(seed)
    elif isinstance(getattr(dataset, "pipeline", None), Pipeline):
        dataset.pipeline.set_seed(seed)


def sample_key(path: str) -> int:
    """A stable per-image integer (seeds test-time perturbations identically for every method)."""
    return zlib.crc32(path.encode("utf-8"))


class FrameDataset(Dataset):
    """Single frames: ``{"image", "label", "index"}``; optional seeded test-time perturbation."""

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        train: bool,
        perturbation: Perturbation | None = None,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.paths = self.table["path"].tolist()
        self.labels = self.table["label"].to_numpy()
        self.pipeline, self.train, self.perturbation = pipeline, train, perturbation

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        """The raw (perturbed, when configured) image of row ``i``."""
        img = read_rgb(self.paths[i])
        if self.perturbation is not None:
            img = self.perturbation(img, sample_key(self.paths[i]))
        return img

    def __getitem__(self, i: int) -> dict:
        image = self.pipeline.apply_shared([self.load(i)], augment=self.train)[0][0]
        return {"image": image, "label": torch.tensor(self.labels[i], dtype=torch.float32), "index": i}


def _frame_lookup(table: pd.DataFrame, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """source_video -> (sorted frame numbers, table rows) for the given rows."""
    sub = table.iloc[rows]
    out = {}
    for key, grp in sub.groupby("source_video", sort=False):
        grp = grp.sort_values("frame")
        out[key] = (grp["frame"].to_numpy(), grp.index.to_numpy())
    return out


def _nearest(lookup: dict, source: str, frame: int) -> int | None:
    """Row of the frame of ``source`` nearest to ``frame`` (exact when it exists), or None."""
    if source not in lookup:
        return None
    frames, rows = lookup[source]
    return int(rows[int(np.argmin(np.abs(frames - frame)))])


class AlignedGroupDataset(Dataset):
    """A real frame with the manipulated frames of the same source video and frame index.

    Items: ``{"images": [1+K, 3, H, W], "labels": [1+K], "indices": [1+K], "domains": list[str]}``
    ordered ``[real, domains[0], ..., domains[K-1]]``; one augmentation draw is shared by the group.
    Only reals that have a fake of every requested domain form groups (the count dropped is logged).
    A fake whose exact frame number is absent is paired with the nearest frame of its video.
    """

    def __init__(
        self, table: pd.DataFrame, pipeline: Pipeline, train: bool, domains: Sequence[str] | None = None
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.pipeline, self.train = pipeline, train
        fakes = self.table[self.table["label"] == 1]
        self.domains = list(domains) if domains else sorted(fakes["domain"].unique())
        by_domain = {
            d: _frame_lookup(self.table, np.flatnonzero(self.table["domain"].to_numpy() == d))
            for d in self.domains
        }
        reals = self.table.index[self.table["label"] == 0].to_numpy()
        groups = []
        for r in reals:
            src, frame = self.table.at[r, "source_video"], int(self.table.at[r, "frame"])
            partners = [_nearest(by_domain[d], src, frame) for d in self.domains]
            if all(p is not None for p in partners):
                groups.append([int(r), *partners])
        if len(reals) and not groups:
            raise ValueError(
                f"no real frame has fakes of every domain {self.domains} from its source video; "
                "check the table's source_video keys (dataset.pairing)"
            )
        if len(groups) < len(reals):
            log.info(
                "aligned groups: %d of %d real frames have all of %s", len(groups), len(reals), self.domains
            )
        self.groups = np.asarray(groups, dtype=np.int64).reshape(-1, 1 + len(self.domains))

    def __len__(self) -> int:
        return len(self.groups)

    def load_group(self, i: int) -> list[np.ndarray]:
        """The raw images of group ``i`` (real first)."""
        return [read_rgb(self.table.at[int(r), "path"]) for r in self.groups[i]]

    def __getitem__(self, i: int) -> dict:
        rows = self.groups[i]
        images, _ = self.pipeline.apply_shared(self.load_group(i), augment=self.train)
        return {
            "images": torch.stack(images),
            "labels": torch.as_tensor(self.table["label"].to_numpy()[rows], dtype=torch.float32),
            "indices": torch.as_tensor(rows),
        }


class MetaPairDataset(Dataset):
    """LTW's meta-paired samples (docs/methods/ltw.md, "Meta-split and meta pairs").

    Items are the training samples: the reals and the fakes of ``train_domains``. Each comes with a
    meta partner: a training fake (video ``AAA_BBB``, frame f) with its real (``AAA``, frame f); a
    training real with a fake of a meta domain from the same source video and frame (the meta domain
    drawn per sample from a seeded generator). Call ``set_domains`` at every epoch's meta-split.
    """

    def __init__(self, table: pd.DataFrame, pipeline: Pipeline, train: bool = True, seed: int = 0) -> None:
        self.table = table.reset_index(drop=True)
        self.pipeline, self.train, self.seed = pipeline, train, seed
        self.reals = _frame_lookup(self.table, np.flatnonzero(self.table["label"].to_numpy() == 0))
        domains = self.table.loc[self.table["label"] == 1, "domain"]
        self.by_domain = {
            d: _frame_lookup(self.table, np.flatnonzero(self.table["domain"].to_numpy() == d))
            for d in sorted(domains.unique())
        }
        self.items = np.zeros((0, 2), np.int64)

    def set_domains(self, train_domains: Sequence[str], meta_domains: Sequence[str], epoch: int = 0) -> None:
        """Rebuild the (sample, meta partner) pairs for this epoch's split of the source domains."""
        overlap = set(train_domains) & set(meta_domains)
        if overlap or not train_domains or not meta_domains:
            raise ValueError(
                f"train {list(train_domains)} and meta {list(meta_domains)} domains must be "
                "non-empty and disjoint"
            )
        unknown = (set(train_domains) | set(meta_domains)) - set(self.by_domain)
        if unknown:
            raise ValueError(f"unknown domains {sorted(unknown)}; the table has {sorted(self.by_domain)}")
        rng = np.random.default_rng([self.seed, epoch])
        t = self.table
        pairs = []
        for row in range(len(t)):
            label, dom = int(t.at[row, "label"]), t.at[row, "domain"]
            src, frame = t.at[row, "source_video"], int(t.at[row, "frame"])
            if label == 1 and dom in train_domains:
                partner = _nearest(self.reals, src, frame)
            elif label == 0:
                choices = [d for d in meta_domains if src in self.by_domain[d]]
                partner = (
                    _nearest(self.by_domain[choices[rng.integers(len(choices))]], src, frame)
                    if choices
                    else None
                )
            else:
                continue
            if partner is not None:
                pairs.append((row, partner))
        self.train_domains, self.meta_domains = list(train_domains), list(meta_domains)
        self.items = np.asarray(pairs, np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, row: int) -> torch.Tensor:
        img = read_rgb(self.table.at[row, "path"])
        return self.pipeline.apply_shared([img], augment=self.train)[0][0]

    def __getitem__(self, i: int) -> dict:
        row, meta = (int(v) for v in self.items[i])
        labels = self.table["label"].to_numpy()
        return {
            "image": self._image(row),
            "label": torch.tensor(labels[row], dtype=torch.float32),
            "index": row,
            "meta_image": self._image(meta),
            "meta_label": torch.tensor(labels[meta], dtype=torch.float32),
            "meta_index": meta,
        }


class MultiQualityDataset(Dataset):
    """One image at several qualities: ``{"images": [Q, 3, H, W], "qualities": [Q], ...}``.

    ``qualities`` items: ``None`` (as stored), an int JPEG quality, or ``[low, high]`` drawn per sample
    and epoch (``redraw=True``) or once per run (``redraw=False``: the epoch-0 draw every epoch) from a
    seeded generator. One augmentation draw is shared by the Q versions; compression comes after
    augmentation, as the released DPL code applies it.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: Pipeline,
        qualities: Sequence[int | Sequence[int] | None],
        train: bool = True,
        seed: int = 0,
        redraw: bool = True,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.pipeline, self.train, self.seed, self.redraw = pipeline, train, seed, bool(redraw)
        self.qualities = [None if q is None else (int(q) if np.isscalar(q) else tuple(q)) for q in qualities]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Redraw the ranged qualities for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()

    def draw(self, i: int) -> list[int]:
        """The JPEG qualities of sample ``i`` this epoch (100 stands for 'as stored')."""
        rng = np.random.default_rng([self.seed, self.epoch if self.redraw else 0, i])
        out = []
        for q in self.qualities:
            out.append(100 if q is None else q if isinstance(q, int) else int(rng.integers(q[0], q[1] + 1)))
        return out

    def __getitem__(self, i: int) -> dict:
        img = read_rgb(self.table.at[i, "path"])
        if self.train:
            img = self.pipeline.augment_group([img])[0][0]
        qualities = self.draw(i)
        versions = [
            img if q is None else jpeg_compress(img, qv)
            for q, qv in zip(self.qualities, qualities, strict=True)
        ]
        images, _ = self.pipeline.finalize_group(versions)
        return {
            "images": torch.stack(images),
            "qualities": torch.as_tensor(qualities),
            "label": torch.tensor(self.table.at[i, "label"], dtype=torch.float32),
            "index": i,
        }


class PoolDataset(Dataset):
    """A curriculum's training view (DFFC): indices 0..N−1 are the detector's own single-frame view,
    N..2N−1 the same samples through ``easy`` (the light augmentation DA of DFFC's easy pool). Items carry
    ``index`` = the sample (i mod N) and ``curriculum_easy`` = whether they came through ``easy``."""

    def __init__(self, plain: FrameDataset, easy: FrameDataset) -> None:
        if len(plain) != len(easy):
            raise ValueError(f"the plain and easy views differ in length ({len(plain)} vs {len(easy)})")
        self.plain, self.easy = plain, easy
        self.table = plain.table
        self.n = len(plain)

    def __len__(self) -> int:
        return 2 * self.n

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([self.plain.labels, self.plain.labels])

    def reseed(self, seed: int) -> None:
        """Seed both views' augmentations (the easy view from a seed of its own)."""
        reseed(self.plain, seed)
        reseed(self.easy, (seed * 1_000_003 + 1) % 2**32)

    def __getitem__(self, j: int) -> dict:
        item = dict(self.plain[j] if j < self.n else self.easy[j - self.n])
        item["curriculum_easy"] = torch.tensor(j >= self.n)
        return item
