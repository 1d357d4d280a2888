"""ProDet's figures (NeurIPS 2024: Figs. 4a, 4b, 5, 8, 9, 10) as PNGs from trained runs.

Logic in ``detect.analysis.prodet_figures``; ``--compare`` draws a second run (e.g. VHT) beside ``--run``
on the same held-out tuples. Figs. 4a/4b need a toy model (``method.feature_dim=2``).

    python train.py method=prodet method.feature_dim=2 run_name=prodet_toy
    python train.py method=prodet/vht method.feature_dim=2 run_name=vht_toy
    python scripts/prodet_figures.py --run outputs/runs/prodet_toy --compare outputs/runs/vht_toy \\
        --figures toy,pd,tsne --out figures/toy
    python scripts/prodet_figures.py --run outputs/runs/prodet --compare outputs/runs/vht \\
        --figures robustness,gradcam,tsne,confidence --out figures/original
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from detect.analysis.prodet_figures import FIGURES, make_figures


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run folder, outputs/runs/<run_name>")
    ap.add_argument("--compare", help="a second run folder drawn beside --run (e.g. VHT)")
    ap.add_argument("--figures", default=",".join(FIGURES), help=f"comma-separated, of {','.join(FIGURES)}")
    ap.add_argument("--out", help="output folder (default: <run>/figures)")
    ap.add_argument("--n-tuples", type=int, default=64, help="held-out real/SBI/CBI/deepfake tuples")
    ap.add_argument(
        "--split", choices=("val", "test"), default="test", help="where held-out tuples come from"
    )
    ap.add_argument("--draws", type=int, default=10, help="perturbed versions per image for PD (Fig. 4b)")
    ap.add_argument("--cam-tuples", type=int, default=4, help="tuples (rows) of the Grad-CAM figure")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=2, help="DataLoader workers for the test sets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--recompute-logits",
        action="store_true",
        help="Fig. 10: take the logits of saturated P(fake) from the model instead of clipping them",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    runs = [args.run] + ([args.compare] if args.compare else [])
    paths = make_figures(
        runs,
        [f.strip() for f in args.figures.split(",") if f.strip()],
        args.out or Path(args.run) / "figures",
        n_tuples=args.n_tuples,
        split=args.split,
        draws=args.draws,
        cam_tuples=args.cam_tuples,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        recompute=args.recompute_logits,
    )
    for path in paths.values():
        print(path)
    return paths


if __name__ == "__main__":
    main()
