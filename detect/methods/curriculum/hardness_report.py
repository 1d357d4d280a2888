"""What DFFC's hardness finds (Sec. 3.3): Table 4's tampering ratio (TAR) and SSIM of the fakes with the
highest and lowest DFH per manipulation, Fig. 4's DFH over training and Fig. 5's faces of top and bottom DFH.

TAR (docs/methods/dffc.md): the share of the face crop with manipulation mask > 0.5; SSIM (Wang et al., IEEE
TIP 2004, scikit-image) between a fake frame and the real frame it was made from (the same source video,
the nearest frame index).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from skimage.metrics import structural_similarity

from detect.data.images import read_rgb


def tampering_ratio(mask: np.ndarray) -> float:
    """TAR: the fraction of pixels whose mask value exceeds 0.5 (uint8 masks are scaled by 255)."""
    m = mask.astype(np.float64)
    if mask.dtype == np.uint8:
        m = m / 255.0
    if m.ndim == 3:
        m = m.max(axis=2)
    return float((m > 0.5).mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two HxWx3 uint8 images (scikit-image, Gaussian-free 7x7 windows, per channel, averaged)."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of one shape, got {a.shape} and {b.shape}")
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def _real_of(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per source video: the (frame indices, rows) of its real frames."""
    reals = table[table["label"] == 0]
    return {
        str(v): (g["frame"].to_numpy(), g.index.to_numpy())
        for v, g in reals.groupby("source_video", sort=False)
    }


def top_bottom_metrics(table: pd.DataFrame, dfh: np.ndarray, n: int = 100) -> dict[str, dict[str, float]]:
    """Table 4 per manipulation (``domain``): mean TAR (%) and SSIM of its ``n`` fakes with the highest DFH
    (``tar_top``, ``ssim_top``) and the ``n`` with the lowest (``tar_bottom``, ``ssim_bottom``). A fake with
    no mask file (TAR) or no real frame of its source video (SSIM) is left out of that mean: ``n_<end>`` is
    the number picked, ``n_tar_<end>`` / ``n_ssim_<end>`` the numbers each mean is over (NaN when 0)."""
    table = table.reset_index(drop=True)
    reals = _real_of(table)
    out: dict[str, dict[str, float]] = {}
    for domain, group in table[table["label"] == 1].groupby("domain", sort=True):
        rows = group.index.to_numpy()
        order = rows[np.lexsort((rows, -dfh[rows]))]
        res: dict[str, float] = {}
        for end, pick in (("top", order[:n]), ("bottom", order[::-1][:n])):
            tars, sims = [], []
            for r in pick:
                mask_path = table.at[r, "mask_path"] if "mask_path" in table else None
                if isinstance(mask_path, str) and mask_path:
                    tars.append(tampering_ratio(read_rgb(mask_path)))
                real = reals.get(str(table.at[r, "source_video"]))
                if real is not None:
                    frames, real_rows = real
                    j = int(real_rows[int(np.argmin(np.abs(frames - int(table.at[r, "frame"]))))])
                    sims.append(ssim(read_rgb(table.at[r, "path"]), read_rgb(table.at[j, "path"])))
            res[f"tar_{end}"] = 100.0 * float(np.mean(tars)) if tars else float("nan")
            res[f"ssim_{end}"] = float(np.mean(sims)) if sims else float("nan")
            res[f"n_{end}"] = len(pick)
            res[f"n_tar_{end}"], res[f"n_ssim_{end}"] = len(tars), len(sims)
        out[str(domain)] = res
    return out


def _figure_to_array(fig) -> np.ndarray:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    import cv2

    arr = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def dfh_curves(history: np.ndarray, k: int = 5) -> dict[str, np.ndarray]:
    """Fig. 4's samples: the ``k`` of highest, median and lowest final DFH, and their DFH per epoch
    (``history`` [epochs, N]); returns {"high", "median", "low"} -> [k, epochs]."""
    final = history[-1]
    order = np.lexsort((np.arange(len(final)), final))  # ascending, ties by index
    mid = len(order) // 2
    picks = {
        "low": order[:k],
        "median": order[max(0, mid - k // 2) : max(0, mid - k // 2) + k],
        "high": order[-k:],
    }
    return {name: history[:, idx].T for name, idx in picks.items()}


def dfh_curve_figure(history: np.ndarray, k: int = 5) -> np.ndarray:
    """Fig. 4 as an RGB image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = dfh_curves(history, k)
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, history.shape[0] + 1)
    for name, colour in (("high", "tab:red"), ("median", "tab:orange"), ("low", "tab:blue")):
        for j, c in enumerate(curves[name]):
            ax.plot(epochs, c, color=colour, alpha=0.8, label=f"{name} DFH" if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("DFH")
    ax.set_title(f"DFH during training: {k} highest, {k} median, {k} lowest (by final DFH)")
    ax.legend()
    return _figure_to_array(fig)


def extreme_faces_grid(table: pd.DataFrame, dfh: np.ndarray, n: int = 6, size: int = 96) -> np.ndarray:
    """Fig. 5 as an RGB image: rows (a) real faces of top DFH, (b) real of bottom DFH, (c) fake of top DFH,
    (d) fake of bottom DFH; ``n`` faces each, highest (or lowest) first, each titled with its DFH."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.reset_index(drop=True)
    fig, axes = plt.subplots(4, n, figsize=(1.3 * n + 1.2, 5.8), squeeze=False)
    names = ("(a) real, top DFH", "(b) real, bottom DFH", "(c) fake, top DFH", "(d) fake, bottom DFH")
    line = 0
    for label in (0, 1):
        rows = np.flatnonzero(table["label"].to_numpy() == label)
        order = rows[np.lexsort((rows, -dfh[rows]))]
        for pick in (order[:n], order[::-1][:n]):
            for j, ax in enumerate(axes[line]):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(pick):
                    r = int(pick[j])
                    ax.imshow(cv2.resize(read_rgb(table.at[r, "path"]), (size, size)))
                    ax.set_title(f"{dfh[r]:.3g}", fontsize=7)
            axes[line][0].set_ylabel(names[line], fontsize=7)
            line += 1
    fig.tight_layout()
    return _figure_to_array(fig)
