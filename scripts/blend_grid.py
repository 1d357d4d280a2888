"""A PNG grid to look at the blendfakes: per real frame, real | SBI | CBI | deepfake, masks underneath.

Reads a DeepfakeBench-layout root (the embedded synthetic benchmark by default, generated into the cache
folder), takes training real frames that have a fake of ``--domain`` from the same source video and frame,
and draws SBI and CBI (``detect.data.blend``, default ``BlendConfig``) beside them.

    python scripts/blend_grid.py --out blend_grid.png --n 4
    python scripts/blend_grid.py --root data --domain F2F --out grid.png
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import pandas as pd

from detect.data.blend import BlendConfig, CrossBlender, SelfBlender, load_landmark_index
from detect.data.images import read_landmarks, read_mask, read_rgb
from detect.data.index import DatasetSpec, load_split
from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic
from detect.utils.io import atomic_write


def synthetic_root(cache_dir: str) -> str:
    """A small synthetic FF++ set under ``cache_dir`` (generated on first use)."""
    cfg = SyntheticConfig(n_source_videos=8, frames_per_video=4, standins=())
    return str(ensure_synthetic(cache_dir, cfg))


def training_table(root: str, compression: str = "c23") -> pd.DataFrame:
    """The FF++ training split of a DeepfakeBench-layout root, every stored frame."""
    return load_split(DatasetSpec.from_config(dataset_config("FaceForensics++", root, compression)), "train")


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _mask_rgb(mask: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def grid(table: pd.DataFrame, cache_dir: str, n: int, seed: int, domain: str) -> np.ndarray:
    """The grid image (RGB): two rows (images, masks) per example, four columns."""
    cfg = BlendConfig()
    rng = np.random.default_rng(seed)
    sbi = SelfBlender(cfg)
    cbi = CrossBlender(load_landmark_index(table, os.path.join(cache_dir, "blend")), cfg)
    reals = table[table["label"] == 0]
    fakes = table[table["domain"] == domain].set_index(["source_video", "frame"])
    pairs = [
        (r, fakes.loc[(r.source_video, r.frame)])
        for r in reals.itertuples()
        if (r.source_video, r.frame) in fakes.index
    ]
    if not pairs:
        raise SystemExit(f"no training real frame has a {domain} fake of the same source video and frame")
    chosen = rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
    rows = []
    for i in chosen:
        real, fake = pairs[int(i)]
        if isinstance(fake, pd.DataFrame):
            fake = fake.iloc[0]
        img, lm = read_rgb(real.path), read_landmarks(real.landmark_path)
        s = sbi(img, lm, rng)
        fg_path = cbi.pick_foreground(real.path, rng)
        c = cbi(img, lm, read_rgb(fg_path), rng)
        df = read_rgb(fake["path"])
        df_mask = read_mask(fake["mask_path"], df.shape[:2])
        rows.append(
            np.concatenate(
                [
                    _label(img, f"real {real.video_id}/{real.frame}"),
                    _label(s.image, f"SBI {s.hull_type} r={s.ratio} ({s.transformed})"),
                    _label(
                        c.image,
                        f"CBI {c.hull_type} r={c.ratio} fg {os.path.basename(os.path.dirname(fg_path))}",
                    ),
                    _label(df, f"{domain} {fake['video_id']}"),
                ],
                axis=1,
            )
        )
        rows.append(
            np.concatenate(
                [
                    _mask_rgb(np.zeros(img.shape[:2])),
                    _mask_rgb(s.mask),
                    _mask_rgb(c.mask),
                    _mask_rgb(df_mask),
                ],
                axis=1,
            )
        )
    return np.concatenate(rows, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="DeepfakeBench-layout data root (default: the synthetic benchmark)")
    ap.add_argument("--cache-dir", default=os.environ.get("DETECT_CACHE_DIR", "cache"))
    ap.add_argument("--compression", default="c23")
    ap.add_argument("--domain", default="DF", help="the deepfake column's manipulation")
    ap.add_argument("--n", type=int, default=4, help="examples (rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="blend_grid.png")
    args = ap.parse_args()
    root = args.root or synthetic_root(args.cache_dir)
    image = grid(training_table(root, args.compression), args.cache_dir, args.n, args.seed, args.domain)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SystemExit("PNG encoding failed")
    atomic_write(args.out, lambda tmp: buf.tofile(tmp))
    print(args.out)


if __name__ == "__main__":
    main()
