"""t-SNE (van der Maaten & Hinton, JMLR 2008) embeddings of features (ProDet Fig. 9, DPL's figures)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-d t-SNE (scikit-learn's Barnes-Hut, PCA initialisation, ``random_state=seed``) of [M, C]
    features; the perplexity defaults to min(30, (M - 1) / 3)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    m = len(features)
    if m < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {m}: raise --n-tuples")
    perp = perplexity if perplexity is not None else min(30.0, (m - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    # one OpenMP thread: the same embedding, and Barnes-Hut's threads crawl on a busy machine
    with threadpool_limits(1, user_api="openmp"):
        return tsne.fit_transform(np.asarray(features, np.float64))
