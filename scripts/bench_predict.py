"""predict.py's throughput on this machine: faces per second with dlib detection (videos in, CSVs out)
and with ``faces=crops`` (face-crop images in), beside a bare PyTorch loop over the same crops, already
decoded and normalised, through the same model and batch size.

    python scripts/bench_predict.py [--backbone small] [--videos 4] [--frames 16] [--batch 64]

The videos are built from scikit-image's astronaut photo (a real face shipped with the package), one face
per frame. Wall and CPU seconds are both printed: on a shared machine the CPU figures are the stable ones.
Prints one JSON line on stdout; the summary goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from detect.data.preprocess.face_detection import build_face_models
from detect.engine.method_builder import build_method
from detect.engine.runtime import setup_runtime
from detect.inference.face_sampling import faces_of, sample_input
from detect.inference.load import load_detector
from detect.inference.prediction import face_models_config, predict_sources
from detect.inference.sources import find_sources
from detect.inference.visualize import write_mp4

CONF = Path(__file__).resolve().parents[1] / "conf"


def astronaut_video(path: Path, n: int, phase: float) -> None:
    """A 320x240 window onto the astronaut's face, moving and zooming a little per frame (H.264)."""
    img = skimage.data.astronaut()
    frames = []
    for t in range(n):
        s = 1.0 + 0.06 * np.sin(t + phase)
        cx, cy = 220.0 + 8.0 * np.cos(0.7 * t + phase), 140.0 + 5.0 * np.sin(0.5 * t + phase)
        m = np.array([[1 / s, 0, 160 - cx / s], [0, 1 / s, 120 - cy / s]])
        frames.append(cv2.warpAffine(img, m, (320, 240)))
    write_mp4(path, frames, 12)


def timed(fn) -> tuple[object, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        train_cfg = compose("train", overrides=["logger=none", f"backbone={args.backbone}"])
        cfg = compose(
            "predict",
            overrides=[
                f"ckpt={tmp / 'model.pt'}",
                f"input={tmp / 'videos'}",
                f"frames={args.frames}",
                f"batch_size={args.batch}",
                "progress=false",
                "runtime.device=cpu",
            ],
        )
    method = build_method(train_cfg.method, train_cfg.backbone)
    torch.save(
        {"config": OmegaConf.to_container(train_cfg, resolve=True), "method": method.state_dict()}, cfg.ckpt
    )
    for i in range(args.videos):
        astronaut_video(tmp / "videos" / f"{i}.mp4", args.frames, float(i))
    runtime = setup_runtime(cfg.runtime)
    detector = load_detector(cfg.ckpt, runtime.device)

    dlib_res, dlib_wall, dlib_cpu = timed(
        lambda: predict_sources(detector, find_sources(cfg.input), cfg, runtime)
    )
    n = len(dlib_res.faces)
    # the same faces as crop images, for faces=crops and the bare loop
    crops_dir = tmp / "crops"
    crops_dir.mkdir()
    crops = []
    models = build_face_models(face_models_config(cfg.detector))
    for src in find_sources(cfg.input):
        for face in faces_of(sample_input(src, args.frames), "largest", detector.crop, models):
            crops.append(face.crop)
            cv2.imwrite(str(crops_dir / f"{len(crops):05d}.png"), cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
    ccfg = cfg.copy()
    ccfg.faces, ccfg.input = "crops", str(crops_dir)
    # the bare loop's images, decoded and normalised once, outside the timing
    tensors = torch.stack([detector.pipeline(c, augment=False) for c in crops])

    def bare() -> int:
        with torch.no_grad():
            for i in range(0, len(tensors), args.batch):
                detector.method.predict(tensors[i : i + args.batch])
        return len(tensors)

    def crops_run():
        return predict_sources(detector, find_sources(ccfg.input), ccfg, runtime)

    bare()  # warm-up
    runs: dict[str, list[tuple[float, float]]] = {"crops": [], "bare": []}
    for _ in range(args.rounds):  # alternated, medians: the machine may be shared
        runs["crops"].append(timed(crops_run)[1:])
        runs["bare"].append(timed(bare)[1:])
    crops_wall, crops_cpu = (float(np.median([r[i] for r in runs["crops"]])) for i in (0, 1))
    bare_wall, bare_cpu = (float(np.median([r[i] for r in runs["bare"]])) for i in (0, 1))
    m = len(crops)
    out = {
        "backbone": args.backbone,
        "input_size": detector.input_size,
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "faces": n,
        "dlib_faces_per_s_wall": n / dlib_wall,
        "dlib_faces_per_cpu_s": n / dlib_cpu,
        "crops_faces_per_s_wall": m / crops_wall,
        "crops_faces_per_cpu_s": m / crops_cpu,
        "bare_faces_per_s_wall": m / bare_wall,
        "bare_faces_per_cpu_s": m / bare_cpu,
        "crops_vs_bare_cpu": (m / crops_cpu) / (m / bare_cpu),
        "dlib_vs_bare_cpu": (n / dlib_cpu) / (m / bare_cpu),
    }
    print(
        f"predict.py, {args.backbone} at {detector.input_size} px, batch {args.batch}, "
        f"{args.threads} threads, "
        f"{n} faces from {args.videos} videos:\n"
        f"  with dlib detection: {out['dlib_faces_per_s_wall']:.1f} faces/s wall, "
        f"{out['dlib_faces_per_cpu_s']:.1f} faces per CPU-s\n"
        f"  faces=crops:         {out['crops_faces_per_s_wall']:.1f} faces/s wall, "
        f"{out['crops_faces_per_cpu_s']:.1f} faces per CPU-s\n"
        f"  bare loop:           {out['bare_faces_per_s_wall']:.1f} faces/s wall, "
        f"{out['bare_faces_per_cpu_s']:.1f} faces per CPU-s\n"
        f"  CPU-time ratios to the bare loop: crops {out['crops_vs_bare_cpu']:.2f}, "
        f"dlib {out['dlib_vs_bare_cpu']:.2f}",
        file=sys.stderr,
    )
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
