"""Nearest real faces by landmark distance, for CBI's foreground (Face X-ray, Li et al., CVPR 2020: the
foreground is a real face with landmarks close to the background's; docs/blendfakes.md: one of the 3 nearest
real faces **from other videos**, through a KD-tree over flattened landmarks).

Features are the first 68 points divided by the image size: positions are kept (not centred or scaled
per face), because the foreground is blended in place, without warping, so its face must sit where the
background's does. Pure computation; the on-disk cache lives in ``detect.data.blend.index_cache``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree


def landmark_features(landmarks: np.ndarray, n_points: int = 68, image_size: float = 256.0) -> np.ndarray:
    """(N, P, 2) landmarks → (N, 2·n_points) float32 features: the first ``n_points``, / ``image_size``."""
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.shape[1] < n_points or lm.shape[2] != 2:
        raise ValueError(f"landmarks of shape {lm.shape[1:]} have fewer than {n_points} points")
    return np.ascontiguousarray(lm[:, :n_points].reshape(len(lm), -1) / float(image_size))


def nearest_other(features: np.ndarray, groups: np.ndarray, k: int, block: int = 512) -> np.ndarray:
    """(N, k): each row's ``k`` nearest rows of other groups, nearest first (ties: lower row), −1 padded.

    Exact blocked search (float64 squared distances through BLAS, same-group entries masked, k rounds of
    argmin): in 136 dimensions a KD-tree visits most leaves anyway, and this is several times faster at
    FF++ scale (23k frames of 720 videos: about 10 s on one busy core, against about 90 s for a
    ``cKDTree.query`` of the same neighbours).
    """
    x = np.asarray(features, np.float64)
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    out = np.full((n, k), -1, np.int64)
    for s in range(0, n, block):
        d = x[s : s + block] @ x.T  # the query's own |q|² does not change its ranking
        d *= -2.0
        d += sq[None, :]
        d[codes[s : s + block, None] == codes[None, :]] = np.inf
        rows = np.arange(len(d))
        for r in range(min(k, n)):
            j = d.argmin(axis=1)
            found = np.isfinite(d[rows, j])
            out[s : s + block, r] = np.where(found, j, -1)
            d[rows, j] = np.inf
    return out


class LandmarkIndex:
    """The landmark features of real frames, each tagged with its video (group), with a ``cKDTree``.

    ``neighbours[i]``: the ``k`` nearest frames of other groups, nearest first (−1 where fewer exist),
    computed once (``nearest_other``) unless given (from the cache); ``query`` finds them for landmarks
    that are not indexed, through the tree.
    """

    def __init__(
        self,
        features: np.ndarray,
        groups: Sequence[str],
        paths: Sequence[str],
        k: int = 3,
        neighbours: np.ndarray | None = None,
        workers: int = 1,
    ) -> None:
        self.features = np.ascontiguousarray(features, np.float32)
        self.groups = np.asarray(groups).astype(str)
        self.paths = np.asarray(paths).astype(str)
        if not (len(self.features) == len(self.groups) == len(self.paths)):
            raise ValueError("features, groups and paths must have one entry per frame")
        if len(np.unique(self.groups)) < 2:
            raise ValueError("the landmark index needs real frames of at least two videos")
        self.k, self.workers = int(k), int(workers)
        self.tree = cKDTree(self.features)
        self.position = {p: i for i, p in enumerate(self.paths)}
        if neighbours is None:
            neighbours = nearest_other(self.features, self.groups, self.k)
        if neighbours.shape != (len(self.paths), self.k):
            expected = (len(self.paths), self.k)
            raise ValueError(f"neighbours have shape {neighbours.shape}, expected {expected}")
        self.neighbours = neighbours

    def __len__(self) -> int:
        return len(self.paths)

    def query(self, features: np.ndarray, groups: Sequence[str], k: int | None = None) -> np.ndarray:
        """(M, k) indices of the ``k`` nearest frames whose group differs from each query's, −1 padded."""
        k = self.k if k is None else int(k)
        features = np.atleast_2d(np.asarray(features, np.float32))
        groups = np.asarray(groups).astype(str)
        _, counts = np.unique(self.groups, return_counts=True)
        # a query's own group holds at most counts.max() frames, all possibly nearer than any other
        kk = min(len(self.paths), k + int(counts.max()))
        _, idx = self.tree.query(features, k=kk, workers=self.workers)
        idx = idx.reshape(len(features), kk)
        other = self.groups[idx] != groups[:, None]
        order = np.argsort(~other, axis=1, kind="stable")[:, :k]
        picked = np.take_along_axis(idx, order, axis=1)
        valid = np.take_along_axis(other, order, axis=1)
        picked[~valid] = -1
        if k > kk:
            picked = np.pad(picked, ((0, 0), (0, k - kk)), constant_values=-1)
        return picked.astype(np.int64)

    def candidates(self, path: str) -> list[str]:
        """The paths of the nearest other-video frames of an indexed frame (nearest first)."""
        if path not in self.position:
            raise KeyError(f"{path} is not a real frame of the landmark index")
        return [str(self.paths[j]) for j in self.neighbours[self.position[path]] if j >= 0]
