"""Check that the synthetic benchmark carries a real, manipulation-specific learning signal, and that its
cross-dataset stand-ins are calibrated like the real tables (``docs/synthetic.md``).

Without ``--run-dir``: trains a small CNN on FF++ c23 (plain PyTorch, CPU) and prints
- in-domain frame AUC on the FF++ c23 test split when training on all manipulations (per method too);
- the cross-manipulation AUC matrix: train on real + one of DF/F2F/FS/NT, test on real + each of them,
  and how many held-out manipulations lose at least 0.10.

With ``--run-dir outputs/runs/<run>`` of ``python train.py protocol=cross_dataset``: reads its saved
predictions and prints each set's frame AUC with a bootstrap standard error over videos, FF++'s AUC per
manipulation, the gap of every stand-in to FF++, the mean gap, Spearman's rank correlation with the
reference order of an FF++-trained Xception, and whether the calibration holds (exit status 1 if not).

Usage: ``python scripts/check_synthetic_signal.py --cache-dir .cache/synthetic [--size 96 --steps 400]``
or ``python scripts/check_synthetic_signal.py --run-dir outputs/runs/<run> [--json report.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from detect.data.index import DatasetSpec, load_split
from detect.data.synthetic import FF_LABELS, SyntheticConfig, dataset_config, ensure_synthetic
from detect.evaluation.calibration import IN_DOMAIN, REFERENCE, auc_with_se, calibration_report

CROSS = ("DF", "F2F", "FS", "NT")


class SmallCNN(nn.Module):
    """Four conv blocks (conv-BN-ReLU-pool), global average + max pooling, a linear logit."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        chans = (3, width, 2 * width, 4 * width, 8 * width)
        blocks: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            blocks += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)).squeeze(1)


def load(root: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FF++ c23 frames of one split resized to ``size``: (images N×3×S×S uint8, labels, domains)."""
    spec = DatasetSpec.from_config(dataset_config("FaceForensics++", root, "c23"))
    table = load_split(spec, split)
    images = np.stack(
        [
            cv2.resize(cv2.imread(p)[..., ::-1], (size, size), interpolation=cv2.INTER_AREA).transpose(
                2, 0, 1
            )
            for p in table["path"]
        ]
    )
    return images, table["label"].to_numpy(), table["domain"].to_numpy()


def train(images: np.ndarray, labels: np.ndarray, steps: int, seed: int, batch: int = 32) -> SmallCNN:
    """Train with balanced batches (half real, half fake), Adam + one-cycle, horizontal flips."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    x = torch.from_numpy(images).float().div_(127.5).sub_(1)
    y = torch.from_numpy(np.array(labels, np.float32))
    real, fake = np.nonzero(labels == 0)[0], np.nonzero(labels == 1)[0]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(steps):
        idx = np.concatenate([rng.choice(real, batch // 2), rng.choice(fake, batch // 2)])
        xb = x[idx]
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        loss = nn.functional.binary_cross_entropy_with_logits(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def scores(model: SmallCNN, images: np.ndarray) -> np.ndarray:
    """Fake probabilities."""
    x = torch.from_numpy(images).float().div_(127.5).sub_(1)
    return torch.cat([torch.sigmoid(model(x[i : i + 256])) for i in range(0, len(x), 256)]).numpy()


def auc_by_domain(p: np.ndarray, labels: np.ndarray, domains: np.ndarray, keep: tuple[str, ...]) -> dict:
    """AUC of reals vs the fakes of each domain in ``keep``, and of reals vs all of them."""
    real = labels == 0
    out = {d: float(roc_auc_score(labels[real | (domains == d)], p[real | (domains == d)])) for d in keep}
    sel = real | np.isin(domains, keep)
    out["all"] = float(roc_auc_score(labels[sel], p[sel]))
    return out


def calibration(run_dir: Path, n_boot: int) -> dict:
    """The calibration report of a cross-dataset run, from its ``predictions/<set>.csv``."""
    pred_dir = run_dir / "predictions"
    sets = [IN_DOMAIN] + [r.name for r in REFERENCE]
    missing = [s for s in sets if not (pred_dir / f"{s}.csv").is_file()]
    if missing:
        raise SystemExit(
            f"{pred_dir} has no predictions for {missing}: give the run directory of "
            "`python train.py protocol=cross_dataset`"
        )
    aucs, ses, per_method = {}, {}, {}
    for name in sets:
        p = pd.read_csv(pred_dir / f"{name}.csv")
        aucs[name], ses[name] = auc_with_se(p["label"], p["prob"], p["video"].astype(str), n_boot)
        if name == IN_DOMAIN:
            real = p[p["label"] == 0]
            for dom in sorted(set(p["domain"]) - {"real"}):
                sel = pd.concat([real, p[p["domain"] == dom]])
                per_method[dom] = float(roc_auc_score(sel["label"], sel["prob"]))
    report = calibration_report(aucs)
    report.update(aucs=aucs, standard_errors=ses, in_domain_per_method=per_method, run_dir=str(run_dir))
    results = run_dir / "results.json"
    if results.is_file():
        res = json.loads(results.read_text())
        report["seed"] = res.get("seed")
        report["video_auc_in_domain"] = res.get("metrics", {}).get(IN_DOMAIN, {}).get("video_auc")
    return report


def print_calibration(report: dict) -> None:
    """The report as text: one line per set, then the criteria."""
    ff = report["in_domain_auc"]
    print(f"run {report['run_dir']} (seed {report.get('seed')})")
    print(f"{'set':8s} {'frame AUC':>10s} {'± SE':>7s} {'gap':>7s}  reference (easiest first)")
    print(f"{IN_DOMAIN:8s} {ff:10.3f} {report['standard_errors'][IN_DOMAIN]:7.3f}")
    for r in REFERENCE:
        a, se, gap = report["aucs"][r.name], report["standard_errors"][r.name], report["gaps"][r.name]
        print(f"{r.name:8s} {a:10.3f} {se:7.3f} {gap:7.3f}  #{r.rank}: {r.source}")
    print(
        f"{IN_DOMAIN} per manipulation: "
        + " ".join(f"{m} {v:.3f}" for m, v in report["in_domain_per_method"].items())
    )
    c = report["checks"]
    print(
        f"every stand-in below {IN_DOMAIN}: {c['all_below_in_domain']} | mean gap {report['mean_gap']:.3f} "
        f"(>= 0.08: {c['mean_gap']}) | Spearman {report['spearman']:.3f} (>= 0.7: {c['spearman']})"
    )
    print(f"calibration holds: {report['holds']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--run-dir", type=Path, help="a `train.py protocol=cross_dataset` run: calibration report"
    )
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the videos")
    ap.add_argument("--json", type=Path, help="also write the calibration report here")
    ap.add_argument("--cache-dir", default=".cache/synthetic", help="where the benchmark is cached")
    ap.add_argument("--size", type=int, default=96, help="network input size (frames are resized)")
    ap.add_argument("--steps", type=int, default=1500, help="training steps (batches of 32, half real)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--data-seed", type=int, default=0, help="SyntheticConfig.seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ff-only", action="store_true", help="generate FF++ only (no stand-ins): faster")
    args = ap.parse_args()
    if args.run_dir is not None:
        report = calibration(args.run_dir, args.bootstrap)
        print_calibration(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        sys.exit(0 if report["holds"] else 1)
    torch.set_num_threads(args.threads)
    cfg = SyntheticConfig(seed=args.data_seed, standins=() if args.ff_only else None)
    root = ensure_synthetic(args.cache_dir, cfg)
    xtr, ytr, dtr = load(root, "train", args.size)
    xte, yte, dte = load(root, "test", args.size)
    print(f"data: {root} train {len(ytr)} frames, test {len(yte)} frames, input {args.size}px")
    methods = tuple(d for d in FF_LABELS if d != "real")

    t = time.perf_counter()
    model = train(xtr, ytr, args.steps, args.seed)
    res = auc_by_domain(scores(model, xte), yte, dte, methods)
    print(
        f"in-domain (train all, {time.perf_counter() - t:.0f} s): AUC all {res['all']:.3f} | "
        + " ".join(f"{m} {res[m]:.3f}" for m in methods)
    )

    matrix = np.zeros((len(CROSS), len(CROSS)))
    for i, m in enumerate(CROSS):
        sel = (dtr == "real") | (dtr == m)
        t = time.perf_counter()
        model = train(xtr[sel], ytr[sel], args.steps, args.seed)
        res = auc_by_domain(scores(model, xte), yte, dte, CROSS)
        matrix[i] = [res[c] for c in CROSS]
        print(f"  trained on {m} in {time.perf_counter() - t:.0f} s")
    print("cross-manipulation AUC (rows: train, cols: test)")
    print("train\\test " + " ".join(f"{c:>6}" for c in CROSS))
    for i, m in enumerate(CROSS):
        print(f"{m:>10} " + " ".join(f"{v:6.3f}" for v in matrix[i]))
    drops = [
        matrix[j, j] - np.mean([matrix[i, j] for i in range(len(CROSS)) if i != j]) for j in range(len(CROSS))
    ]
    print(
        "drop of the held-out manipulation (diagonal - mean of the column's off-diagonal): "
        + " ".join(f"{c} {d:.3f}" for c, d in zip(CROSS, drops, strict=True))
    )
    held = sum(d >= 0.10 for d in drops)
    print(f"held-out manipulations with a drop >= 0.10: {held}/4")


if __name__ == "__main__":
    main()
