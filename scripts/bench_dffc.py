"""DFFC's cost in ``make bench`` (DFFC issue: goal ≤ 1.05× the baseline step): one DFFC step against one
step of the detector it wraps, the curriculum's per-epoch work amortised per step, and the quality prior's
time per image.

* Steps: the baseline step is the wrapped detector's ``fit_step`` alone, the DFFC step
  ``Curriculum.fit_step`` (that step, then recording the batch's per-sample losses, indices, easy flags,
  learning rate and step), on the same model, batch (``image``, ``label``, ``index``; plus
  ``curriculum_easy`` for DFFC, as ``PoolDataset`` yields), backbone and optimiser (the curriculum's SGD,
  which replaces the detector's own for both). They alternate, one step each per round in rotating order,
  so drift and a busy machine hit both alike; ``*_step_ms`` are medians, ``dffc_step_ratio`` their ratio,
  ``dffc_step_ratio_paired`` the median of the per-round ratios. ``wrapper_overhead_us_per_step`` times
  ``Curriculum.fit_step`` around a stubbed-out detector step: the wrapper's own cost, free of model noise.
* Per epoch, for a training set of ``--n-samples`` N (default 100,000), at the first milestone after T0 (k
  shrinks, so Algorithm 1 sorts): ``epoch_pool_ms`` = ``on_epoch_start`` (DFH, the k hardest and the E
  easiest) + ``train_indices`` made the loader's index array; ``epoch_end_ms`` = ``on_epoch_end`` (gathering
  the epoch's records, the hardness update of Eqs. 1–2, the DFH history) after that epoch's
  ``steps_per_epoch`` = (k + E) / batch records, written by ``Curriculum.fit_step`` itself (detector step
  stubbed, random losses, on the device). ``epoch_overhead_us_per_step`` spreads both over the epoch's steps;
  ``dffc_step_ratio_amortised`` adds it to the DFFC step (``meets_goal`` tests it), and
  ``wrapper_ratio_amortised`` = (baseline + wrapper + epoch work per step) / baseline is the noise-free form.
* Quality prior (computed once per dataset, before training): ms per image of each prior's scorer
  (preprocessing to its native input size + model) on ``--prior-images`` synthetic PNGs; the score cache is
  bypassed (the scorer is called on images already read; the read is ``image_read_ms``).
  ``classical``: no weights; ``clip_iqa``: the tiny random CLIP the synthetic benchmark uses (64 px: says
  nothing of RN50's cost; ``--clip-rn50`` adds a random-initialised RN50 at 224 px); ``ifqa``: a
  random-initialised network of IFQA's real architecture (105.2 M parameters, 256 px), since the authors'
  ``IFQA_Metric.pth`` is not available here: the time is the architecture's, the scores mean nothing.
  ``quality_minutes_for_n_samples`` = N × that time.

One JSON line on stdout (everything else goes to stderr), with ``config_hash``: the hash of the composed
method, curriculum (less its cache folder), backbone and input config.

    python scripts/bench_dffc.py                                  # resnet10t at 96 px, batch 16, 1 thread
    python scripts/bench_dffc.py --backbone xception --size 256 --batch 32 --device cuda --clip-rn50
    python scripts/bench_dffc.py --method srm --priors classical  # another detector; one prior
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from detect.analysis.engine_bench import compose_config
from detect.analysis.timing import alternate, sync_device

GOAL_RATIO = 1.05
PRIORS = ("classical", "clip_iqa", "ifqa")
IFQA_NOTE = (
    "random-initialised IFQA of the real architecture (105.2M parameters, 256 px): the authors' "
    "IFQA_Metric.pth is not available here, so the time is the architecture's and the scores mean nothing"
)
CLIP_NOTE = "the tiny random CLIP of the synthetic benchmark (64 px): not RN50's cost"


def _config(args: argparse.Namespace):
    """The training config ``train.py`` would compose for the detector under the curriculum."""
    overrides = [
        f"method={args.method}",
        f"curriculum={args.curriculum}",
        f"backbone={args.backbone}",
        f"trainer.batch_size={args.batch}",
        f"runtime.device={args.device}",
        f"runtime.threads={args.threads}",
        "runtime.distributed=none",
        "data=synthetic",
        "logger=none",
    ]
    if args.size:
        overrides.append(f"backbone.input_size={args.size}")
    return compose_config(Path(__file__).resolve().parents[1] / "conf", overrides)


def config_hash(cfg) -> str:
    """sha1 (12 hex digits) of the resolved method, curriculum (less its machine-local cache folder),
    backbone and input config."""
    keys = ("method", "curriculum", "backbone", "input")
    node = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in keys}
    node["curriculum"].pop("cache_dir", None)
    return hashlib.sha1(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------- steps


def measure_steps(cfg, args: argparse.Namespace) -> tuple[dict, torch.device]:
    """Baseline vs DFFC step, the wrapper's own cost, and the per-epoch work at ``args.n_samples``; and the
    device they ran on."""
    from detect.engine.context import StepContext
    from detect.engine.method_builder import build_method
    from detect.engine.method_contract import StepOutput
    from detect.engine.predict_loop import to_device
    from detect.engine.runtime import setup_runtime
    from detect.methods.curriculum.hardness import HardnessTable
    from detect.methods.curriculum.wrapper import Curriculum

    rt = setup_runtime(cfg.runtime)
    dev = rt.device
    torch.manual_seed(int(cfg.seed))
    method = build_method(cfg.method, cfg.backbone, cfg.curriculum).to(dev)
    if not isinstance(method, Curriculum):
        raise TypeError(f"curriculum={args.curriculum} did not wrap the detector in a Curriculum")
    n, b = int(args.n_samples), int(args.batch)
    method.configure_optimizers(int(cfg.trainer.epochs), max(1, n // b))
    ctx = StepContext(rt, cfg.trainer.get("grad_clip"))
    g = torch.Generator().manual_seed(0)
    size = int(cfg.input.size)
    plain = {
        "image": torch.randn(b, 3, size, size, generator=g),
        "label": (torch.arange(b) % 2).float(),
        "index": torch.arange(b),
    }
    plain = to_device(plain, rt)  # as the engine's loop does, "index" included
    batch = {**plain, "curriculum_easy": (torch.arange(b) % 8 == 7).to(dev)}  # PoolDataset's flag
    method.train()

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            sync_device(dev)
            t0 = time.perf_counter()
            fn()
            ctx.end_iteration()
            sync_device(dev)
            return time.perf_counter() - t0

        return run

    contenders = {
        "baseline": timed(lambda: method.detector.fit_step(plain, ctx)),
        "dffc": timed(lambda: method.fit_step(batch, ctx)),
    }
    for _ in range(args.warmup):
        for fn in contenders.values():
            fn()
    times = alternate(contenders, args.rounds)
    base, dffc = (1e3 * statistics.median(times[k]) for k in ("baseline", "dffc"))
    paired = statistics.median(d / a for a, d in zip(times["baseline"], times["dffc"], strict=True))

    # the wrapper alone: Curriculum.fit_step around a stubbed detector step (an instance attribute shadows it)
    out = method.detector.fit_step(plain, ctx)
    ctx.end_iteration()
    method.detector.fit_step = lambda batch, ctx: out
    calls = 2000
    try:
        best = float("inf")
        for _ in range(5):
            method._records = []
            t0 = time.perf_counter()
            for _ in range(calls):
                method.fit_step(batch, ctx)
            best = min(best, time.perf_counter() - t0)
    finally:
        del method.detector.fit_step
        method._records = []  # none of these steps belongs to the epoch below
    wrapper_us = 1e6 * best / calls

    # the epoch's work at N samples, at the first milestone after T0 (k shrinks: Algorithm 1's sorts),
    # driven through the real hooks: on_epoch_start picks the pool, the loader's index array is built from
    # train_indices, Curriculum.fit_step records that epoch's batches (the detector's step stubbed out, its
    # per-sample losses random, on the device), on_epoch_end gathers them and updates the hardness
    method.table = HardnessTable(n, **method.hp)
    method.table.set_quality(np.random.default_rng(0).uniform(size=n))
    method.e = min(method.n_easy, int(method.n_easy_fraction * n))
    dataset = SimpleNamespace(plain=None)  # on_epoch_start hands dataset.plain to the detector only
    later = [int(m) for m in method.milestones[1:]]
    epoch = (later[0] if later else int(method.milestones[0]) + 1) - 1  # 0-based; pool of t = epoch + 1
    rng = np.random.default_rng(0)
    start_ms, end_ms, epoch_steps = [], [], []
    for _ in range(args.epoch_repeats):
        method.k = n
        t0 = time.perf_counter()
        method.on_epoch_start(epoch, dataset, ctx)
        items = np.asarray(list(method.train_indices(epoch)), np.int64)  # as the engine's _epoch_indices
        start_ms.append(1e3 * (time.perf_counter() - t0))
        items = items[rng.permutation(len(items))]
        chunks = [items[i : i + b] for i in range(0, len(items) - b + 1, b)]  # drop_last, as the loader
        outs = iter(
            [
                StepOutput(
                    torch.zeros((), device=dev),
                    {},
                    torch.rand(len(c), generator=g).to(dev),
                    torch.from_numpy(c % n).to(dev),
                )
                for c in chunks
            ]
        )
        method.detector.fit_step = lambda batch, ctx, outs=outs: next(outs)
        try:
            for c in chunks:
                method.fit_step({"curriculum_easy": torch.from_numpy(c >= n).to(dev)}, ctx)
                ctx.end_iteration()
        finally:
            del method.detector.fit_step
        sync_device(dev)
        t0 = time.perf_counter()
        method.on_epoch_end(epoch, ctx)
        end_ms.append(1e3 * (time.perf_counter() - t0))
        epoch_steps.append(len(chunks))
    epoch_pool, epoch_end = statistics.median(start_ms), statistics.median(end_ms)
    steps_per_epoch = int(statistics.median(epoch_steps))
    amortised_us = 1e3 * (epoch_end + epoch_pool) / max(1, steps_per_epoch)
    amortised_ms = amortised_us / 1e3
    figures = {
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "threads": torch.get_num_threads(),
        "optimizer": str(method.detector.optim_cfg.get("_target_", "?")).rsplit(".", 1)[-1] + " (both)",
        "rounds": args.rounds,
        "baseline_step_ms": round(base, 2),
        "dffc_step_ms": round(dffc, 2),
        "dffc_step_ratio": round(dffc / base, 3),
        "dffc_step_ratio_paired": round(paired, 3),
        "wrapper_overhead_us_per_step": round(wrapper_us, 1),
        "n_samples": n,
        "epoch_t": epoch + 1,
        "pool_k": int(method.k),
        "pool_easy": int(len(method.pool.easy)),
        "steps_per_epoch": steps_per_epoch,
        "epoch_end_ms": round(epoch_end, 2),
        "epoch_pool_ms": round(epoch_pool, 2),
        "epoch_overhead_us_per_step": round(amortised_us, 2),
        "dffc_step_ratio_amortised": round((dffc + amortised_ms) / base, 3),
        "wrapper_ratio_amortised": round((base + wrapper_us / 1e3 + amortised_ms) / base, 4),
    }
    return figures, dev


# -------------------------------------------------------------------------------------- the priors


def _write_faces(folder: Path, count: int, size: int) -> list[str]:
    """``count`` smooth random RGB PNGs (size × size): synthetic stand-ins for face crops."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        img = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"face_{i:03d}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    return paths


def _prior(kind: str, device: torch.device, folder: Path):
    """``(scorer, native input size, note)`` for ``kind``; models are built here, not timed."""
    from detect.quality import priors

    if kind == "classical":
        return priors._PRIORS[kind]({"kind": kind}, device), "native (sharpness at 256)", "no weights"
    if kind in ("clip_iqa", "clip_iqa_rn50"):
        from detect.quality.clip_indicators import drop_attnpool_positional_embedding, load_clip

        prior = priors._PRIORS["clip_iqa"]({"kind": "clip_iqa", "allow_random": True}, device)
        if kind == "clip_iqa":
            model, norm, tok = load_clip("RN50", None, allow_random=True)
            note = CLIP_NOTE
        else:
            import open_clip

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = open_clip.create_model("RN50", pretrained=None)
            tok, norm = open_clip.get_tokenizer("RN50"), {"image_size": 224}
            note = "random-initialised open_clip RN50 (224 px): the real architecture, no weights here"
        drop_attnpool_positional_embedding(model)
        size = int(norm["image_size"])
        prior.loaded = (model.eval().to(device), tok, size)
        return prior, size, note
    if kind == "ifqa":
        from detect.quality import ifqa

        placeholder = folder / "IFQA_random_init.pth"  # the prior checks that a checkpoint file exists;
        placeholder.touch()  # the network below is set in its place, so the file is never read
        prior = priors._PRIORS[kind]({"kind": kind, "checkpoint": str(placeholder)}, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = ifqa.IFQA()
        prior.model = model.requires_grad_(False).eval().to(device)
        return prior, ifqa.INPUT_SIZE, IFQA_NOTE
    raise ValueError(f"unknown prior {kind!r}; use {', '.join((*PRIORS, 'clip_iqa_rn50'))}")


def measure_priors(args: argparse.Namespace, device: torch.device) -> dict:
    """ms per image of each prior's scorer (preprocessing at its input size + model), cache bypassed."""
    from detect.quality.priors import _load
    from detect.quality.score_cache import ScoreKey

    kinds = [k for k in args.priors.split(",") if k]
    if args.clip_rn50:
        kinds.append("clip_iqa_rn50")
    if not kinds:
        return {}
    out: dict = {"prior_images": args.prior_images, "prior_image_size": args.image_size}
    ms, sizes, notes = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-dffc-") as tmp:
        folder = Path(tmp)
        paths = _write_faces(folder, args.prior_images, args.image_size)
        keys = [ScoreKey.for_file(p, "bench", "c23") for p in paths]
        t0 = time.perf_counter()
        images = [_load(k) for k in keys]  # what the prior's scorer reads (PNG decode; no JPEG level)
        out["image_read_ms"] = round(1e3 * (time.perf_counter() - t0) / len(images), 3)
        for kind in kinds:
            prior, sizes[kind], notes[kind] = _prior(kind, device, folder)
            heavy = kind in ("ifqa", "clip_iqa_rn50")
            scored = images[: args.ifqa_images] if heavy else images
            prior.raw(scored[:1])  # warm-up (allocators, text embeddings, kernels)
            per_image = []
            for _ in range(1 if heavy else args.prior_repeats):
                sync_device(device)
                t0 = time.perf_counter()
                for i in range(0, len(scored), args.prior_batch):
                    prior.raw(scored[i : i + args.prior_batch])
                sync_device(device)
                per_image.append(1e3 * (time.perf_counter() - t0) / len(scored))
            ms[kind] = round(statistics.median(per_image), 3)
            print(f"bench_dffc: {kind}: {ms[kind]} ms/image over {len(scored)} images", file=sys.stderr)
            del prior
    n = int(args.n_samples)
    out["quality_ms_per_image"] = ms
    out["quality_input_size"] = sizes
    out["quality_minutes_for_n_samples"] = {k: round(v * n / 6e4, 1) for k, v in ms.items()}
    out["quality_notes"] = notes
    return out


# --------------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="baseline", help="the wrapped single-frame detector (conf/method)")
    ap.add_argument("--curriculum", default="dffc", help="conf/curriculum: dffc, dih, babystep, ...")
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--size", type=int, default=None, help="input size (default: the backbone's)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps of each contender")
    ap.add_argument("--rounds", type=int, default=25, help="alternating rounds of one step each")
    ap.add_argument("--n-samples", type=int, default=100_000, help="training set size for the epoch work")
    ap.add_argument("--epoch-repeats", type=int, default=3, help="timed epochs' worth of work (median)")
    ap.add_argument(
        "--priors", default=",".join(PRIORS), help="quality priors to time, comma-separated ('' for none)"
    )
    ap.add_argument("--clip-rn50", action="store_true", help="also time a random-initialised RN50 CLIP-IQA")
    ap.add_argument("--prior-images", type=int, default=32, help="synthetic images for the priors")
    ap.add_argument("--ifqa-images", type=int, default=6, help="of which IFQA (and RN50) score this many")
    ap.add_argument("--prior-batch", type=int, default=32, help="images per scorer call")
    ap.add_argument("--prior-repeats", type=int, default=3, help="timed passes of the light priors (median)")
    ap.add_argument("--image-size", type=int, default=256, help="side of the synthetic PNGs")
    args = ap.parse_args(argv)
    if min(args.batch, args.threads, args.rounds, args.n_samples, args.prior_images, args.ifqa_images) < 1:
        ap.error("--batch, --threads, --rounds, --n-samples, --prior-images and --ifqa-images must be >= 1")
    if min(args.warmup, args.epoch_repeats, args.prior_batch, args.prior_repeats) < 1:
        ap.error("--warmup, --epoch-repeats, --prior-batch and --prior-repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    for key, value in (("HF_HUB_OFFLINE", "1"), ("WANDB_MODE", "offline"), ("NO_ALBUMENTATIONS_UPDATE", "1")):
        os.environ.setdefault(key, value)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        cfg = _config(args)
        out = {
            "method": args.method,
            "curriculum": args.curriculum,
            "backbone": args.backbone,
            "timm_name": str(cfg.backbone.timm_name),
            "size": int(cfg.input.size),
            "batch": args.batch,
            "config_hash": config_hash(cfg),
        }
        steps, device = measure_steps(cfg, args)
        out.update(steps)
        out["goal_ratio"] = GOAL_RATIO
        out["meets_goal"] = bool(out["dffc_step_ratio_amortised"] <= GOAL_RATIO)
        out.update(measure_priors(args, device))
    out["torch"] = torch.__version__
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
