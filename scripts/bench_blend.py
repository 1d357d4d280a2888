"""SBI and CBI throughput per core at 256×256: one process, one thread, one JSON line.

Frames (training reals of a DeepfakeBench-layout root; the embedded synthetic benchmark by default) are
held in memory, so the figures time the blending (``cbi_read_per_s`` adds reading the foreground PNG).
The blend config is the one training uses: the ``method.blend`` node of ``--method`` (``prodet`` by
default, composed as ``train.py`` would), then ``--config`` YAML and ``--set`` overrides; its hash is printed
beside the figures. ``tuple_per_s`` times whole training items of ProDet's ``AnchorTupleDataset`` (read real,
landmarks, foreground and deepfake; SBI; CBI; the method's shared augmentation, resize and normalisation at
the backbone's input size), printed with the training pipeline's hash. The comparison
detectors' syntheses (issue 17): ``xray`` = Face X-ray's blended image and boundary map (CBI with blend
ratio 1, ``method=face_xray``, plus B = 4·M·(1−M)); ``fwa`` / ``fwa_dfb`` = FWA's face warp with the
authors' and DeepfakeBench's parameters (``method=fwa``, ``fwa/dfb``); SBI's detector (``method=sbi``)
blends as ``sbi``. Each is images/s on one core (one thread) at 256. Reference figures: the official SBI
self-blending ≈ 18 ms/image, DeepfakeBench's Face X-ray blend ≈ 64 ms/image (``cbi`` and ``xray`` are
compared with it); FWA has none.

    python scripts/bench_blend.py --iters 300
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

from detect.analysis.engine_bench import compose_config
from detect.data.anchor_tuples import AnchorTupleDataset
from detect.data.blend import BlendConfig, CrossBlender, SelfBlender, load_landmark_index
from detect.data.blend.face_warp import FaceWarpConfig, face_warp
from detect.data.images import read_landmarks, read_rgb
from detect.data.index import DatasetSpec, load_split
from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic
from detect.data.transforms import build_pipeline
from detect.methods.face_xray import boundary_map

REFERENCE_MS = {"sbi": 18.0, "cbi": 64.0, "xray": 64.0}
SIZE = 256


def training_config(method: str):
    """The training config of ``method=<method>`` as ``train.py`` composes it (from ./conf)."""
    return compose_config(Path.cwd() / "conf", [f"method={method}"])


def blend_config(path: str | None, overrides: list[str], base: dict | None = None) -> BlendConfig:
    """``BlendConfig`` from the method's ``blend`` node, an optional YAML (its ``blend`` node when it has one)
    and ``key=value`` pairs."""
    cfg: dict = dict(base or {})
    if path:
        with open(path, encoding="utf-8") as fh:
            node = yaml.safe_load(fh) or {}
        cfg.update(node.get("blend", node))
    for item in overrides:
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    return BlendConfig.from_mapping(cfg)


def load_frames(root: str, max_frames: int) -> tuple[list, list]:
    """Training real frames at 256×256 as (path, image, landmarks), and the training table."""
    spec = DatasetSpec.from_config(dataset_config("FaceForensics++", root))
    table = load_split(spec, "train")
    frames = []
    for r in table[table["label"] == 0].head(max_frames).itertuples():
        img, lm = read_rgb(r.path), read_landmarks(r.landmark_path)
        if img.shape[:2] != (SIZE, SIZE):
            lm = lm * np.array([SIZE / img.shape[1], SIZE / img.shape[0]], np.float32)
            img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        frames.append((r.path, img, lm))
    return frames, table


def per_second(fn, n: int) -> float:
    """Calls per second of ``fn(i)`` over ``n`` calls."""
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="DeepfakeBench-layout data root (default: the synthetic benchmark)")
    ap.add_argument("--cache-dir", default=os.environ.get("DETECT_CACHE_DIR", "cache"))
    ap.add_argument(
        "--config", help="YAML with the blend parameters (or a method config with a 'blend' node)"
    )
    ap.add_argument(
        "--method", default="prodet", help="the method config whose blend and augmentation to use"
    )
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="blend config overrides")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-frames", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    train_cfg = training_config(args.method)
    node = train_cfg.method.get("blend")
    base = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    cfg = blend_config(args.config, args.set, base)
    root = args.root or str(
        ensure_synthetic(args.cache_dir, SyntheticConfig(n_source_videos=8, frames_per_video=4, standins=()))
    )
    frames, table = load_frames(root, args.max_frames)
    index = load_landmark_index(table, os.path.join(args.cache_dir, "blend"), k=cfg.n_neighbours)
    sbi, cbi = SelfBlender(cfg, args.seed), CrossBlender(index, cfg, args.seed)
    images = {path: img for path, img, _ in frames}
    fg_paths = [cbi.pick_foreground(path) for path, _, _ in frames]
    foregrounds = [images[p] if p in images else read_rgb(p) for p in fg_paths]
    foregrounds = [cv2.resize(f, (SIZE, SIZE)) if f.shape[:2] != (SIZE, SIZE) else f for f in foregrounds]
    n = len(frames)

    def run_sbi(i: int) -> None:
        _, img, lm = frames[i % n]
        sbi(img, lm)

    def run_cbi(i: int) -> None:
        _, img, lm = frames[i % n]
        cbi(img, lm, foregrounds[i % n])

    def run_cbi_read(i: int) -> None:
        path, img, lm = frames[i % n]
        cbi(img, lm, read_rgb(cbi.pick_foreground(path)))

    xray_cfg = BlendConfig.from_mapping(training_config("face_xray").method.blend)
    xray = CrossBlender(index, xray_cfg, args.seed)

    def run_xray(i: int) -> None:
        _, img, lm = frames[i % n]
        boundary_map(xray(img, lm, foregrounds[i % n]).mask)

    warps = {}
    for name, method in (("fwa", "fwa"), ("fwa_dfb", "fwa/dfb")):
        node = OmegaConf.to_container(training_config(method).method.warp, resolve=True)
        warps[name] = FaceWarpConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in node.items()})
    rng = np.random.default_rng(args.seed)

    def warp_runner(warp: FaceWarpConfig):
        def run(i: int) -> None:
            _, img, lm = frames[i % n]
            face_warp(img, lm, rng, warp)

        return run

    pipeline = build_pipeline(train_cfg.input, train_cfg.augment.train)
    tuples = AnchorTupleDataset(
        table, pipeline, blend=cfg, cache_dir=os.path.join(args.cache_dir, "blend"), seed=args.seed
    )
    pipeline.set_seed(args.seed)

    def run_tuple(i: int) -> None:
        tuples[i % len(tuples)]

    out = {"config_hash": cfg.key(), "size": SIZE, "threads": 1, "frames": n, "iters": args.iters}
    runs = (
        ("sbi", run_sbi),
        ("cbi", run_cbi),
        ("cbi_read", run_cbi_read),
        ("xray", run_xray),
        ("fwa", warp_runner(warps["fwa"])),
        ("fwa_dfb", warp_runner(warps["fwa_dfb"])),
        ("tuple", run_tuple),
    )
    for name, fn in runs:
        per_second(fn, args.warmup)
        rate = per_second(fn, args.iters if name != "tuple" else max(1, args.iters // 4))
        out[f"{name}_per_s"] = round(rate, 1)
        out[f"{name}_ms"] = round(1000.0 / rate, 3)
    out["tuple_pipeline_hash"] = pipeline.config_hash
    out["tuple_input_size"] = int(train_cfg.input.size)
    for name, ref in REFERENCE_MS.items():
        out[f"{name}_reference_ms"] = ref
        out[f"{name}_speedup"] = round(ref / out[f"{name}_ms"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
