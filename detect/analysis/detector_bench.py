"""Training and evaluation throughput of each detector against the baseline on the same backbone and input
size, in one process (``scripts/bench_detectors.py``, ``make bench``).

For each method option the training config is composed as ``train.py -m ... +scale=smoke`` would (tiny
backbone at 64 px unless the method has its own network) on a small synthetic benchmark, the trainer is set
up (so each method's own training view is used: masks, paired qualities, two views, blends), a few batches
are pre-loaded, and then, alternating with the baseline in rotating order:

- ``train_ips``: images/s of ``method.fit_step`` + ``ctx.end_iteration`` over the pre-loaded batches
  (what ``Trainer.train_epoch`` runs per batch; the images counted are the batch's frames, so a method that
  sees two views or two qualities of each frame is charged for both passes, as it should be);
- ``eval_ips``: images/s of ``method.predict`` under ``no_grad`` and the runtime's autocast on the
  baseline's single-image batches (a clip detector gets them as clips of its length, each frame counted).

A clip detector (a method declaring ``clip_len``, e.g. FTCN) adds two clip figures:

- ``train_clips_per_s``: its training rate above in clips/s (clips per batch over the same time);
- ``load_clips_per_s``: clips/s of its training ``DataLoader`` (``Trainer.make_loader``: ``ClipDataset`` on
  the synthetic benchmark, one augmentation draw per clip) with ``loader_workers`` workers (2), in steady
  state after the first batch (:func:`detect.analysis.engine_bench.measure_loader`; median of
  ``loader_rounds`` epochs), and ``load_first_batch_s``, the time to the first batch (workers' start-up).

``*_vs_baseline`` is the ratio of the medians (per process-CPU second on the CPU as well); no figure is
taken in a timed test. A method whose set-up fails is reported with its error and makes the script exit
non-zero.
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from detect.analysis.engine_bench import (
    BenchOptions,
    bench_overrides,
    compose_config,
    measure_loader,
    preload_batches,
    prepare_synthetic,
)
from detect.analysis.timing import median, race, ratio, timed


@dataclass
class DetectorBenchOptions:
    """Which methods, batch, rounds; the size and backbone are the smoke scale's."""

    methods: list[str]
    batch: int = 16
    threads: int = 1
    warmup: int = 2
    rounds: int = 5
    steps: int = 0
    target_s: float = 0.5
    cache_dir: str | None = None
    loader_workers: int = 2
    loader_rounds: int = 3


def method_options(config_dir: Path) -> list[str]:
    """Every top-level method option (``conf/method/<name>.yaml``) but the baseline, sorted."""
    return sorted(p.stem for p in (config_dir / "method").glob("*.yaml") if p.stem != "baseline")


def _trainer(config_dir: Path, method: str, opts: DetectorBenchOptions, out: Path):
    from detect.engine.trainer import Trainer

    base = BenchOptions(backbones=["tiny"], size=64, batch=opts.batch, threads=opts.threads)
    base.cache_dir = opts.cache_dir
    overrides = [*bench_overrides("tiny", base, out / "outputs"), f"method={method}", "+scale=smoke"]
    overrides += [f"trainer.batch_size={opts.batch}", "backbone.input_size=64", "runtime.num_workers=0"]
    cfg = compose_config(config_dir, overrides)
    if cfg.data.kind == "synthetic":
        prepare_synthetic(cfg)
    trainer = Trainer(cfg, out / f"run-{method.replace('/', '_')}")
    trainer.setup()
    return trainer


def _train_fn(trainer, batches: Sequence[dict]):
    method, ctx = trainer.method, trainer.ctx

    def run(steps: int) -> float:
        method.train()

        def body() -> None:
            for i in range(steps):
                method.fit_step(batches[i % len(batches)], ctx)
                ctx.end_iteration()

        return timed(body, trainer.runtime.device)

    return run


def _eval_fn(trainer, images: Sequence[torch.Tensor]):
    """``predict`` over ``images``; a clip detector gets each batch as clips of its ``clip_len`` frames (the
    baseline's frames repeated, so both see the same pixels), counted as that many images."""
    method, rt = trainer.method, trainer.runtime
    clip_len = getattr(method, "clip_len", None)
    if clip_len:
        images = [
            x[: max(1, x.shape[0] // clip_len)].unsqueeze(1).expand(-1, clip_len, -1, -1, -1) for x in images
        ]

    @torch.no_grad()
    def run(steps: int) -> float:
        method.eval()

        def body() -> None:
            for i in range(steps):
                with rt.autocast():
                    method.predict(images[i % len(images)]).float().cpu()

        return timed(body, rt.device)

    return run


def _frames_per_batch(batch: dict) -> int:
    """Frames a training batch holds: images [B, ...], or views/qualities [B, V, C, H, W]."""
    for key in ("image", "images", "views", "clip"):
        if key in batch and torch.is_tensor(batch[key]):
            t = batch[key]
            return int(t.shape[0] * (t.shape[1] if t.dim() == 5 else 1))
    return int(batch["label"].shape[0])


def _clip_figures(trainer, train_ips: float, opts: DetectorBenchOptions) -> dict:
    """A clip detector's training clips/s (from its frames/s) and its clip loader's clips/s."""
    clip_len = int(trainer.method.clip_len)
    rate, first = measure_loader(trainer, [opts.loader_workers], opts.loader_rounds)[opts.loader_workers]
    return {
        "clip_len": clip_len,
        "train_clips_per_s": round(train_ips / clip_len, 2),
        "load_clips_per_s": round(rate, 1),
        "load_workers": opts.loader_workers,
        "load_first_batch_s": round(first, 3),
    }


def bench_detectors(config_dir: Path, opts: DetectorBenchOptions) -> dict:
    """Figures per method option (see the module docstring); ``errors`` lists failed set-ups."""
    from detect.engine.runtime import cleanup

    torch.set_num_threads(opts.threads)
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="detect-bench-det-") as tmp:
        out = Path(tmp)
        try:
            base = _trainer(config_dir, "baseline", opts, out)
            base_batches = preload_batches(base.train_dataset, opts.batch, 3, base.runtime)
            images = [b["image"] for b in base_batches]
            for name in opts.methods:
                try:
                    tr = _trainer(config_dir, name, opts, out)
                    batches = preload_batches(tr.train_dataset, opts.batch, 3, tr.runtime)
                except Exception as err:  # reported in the output and by the exit status
                    errors[name] = f"{type(err).__name__}: {err}"
                    traceback.print_exc()
                    continue
                frames = _frames_per_batch(batches[0])
                timing = (opts.warmup, opts.rounds, opts.steps, opts.target_s)
                tr_race = race({name: _train_fn(tr, batches), "baseline": _train_fn(base, base_batches)},
                               opts.batch, *timing)  # fmt: skip
                ev_race = race({name: _eval_fn(tr, images), "baseline": _eval_fn(base, images)},
                               opts.batch, *timing)  # fmt: skip
                scale = frames / opts.batch  # the race counts opts.batch images per step
                t, e = tr_race.wall, ev_race.wall
                results[name] = {
                    "frames_per_step": frames,
                    "train_ips": round(median(t[name]) * scale, 1),
                    "train_ips_baseline": round(median(t["baseline"]), 1),
                    "train_vs_baseline": round(ratio(median(t[name]) * scale, median(t["baseline"])), 3),
                    "train_vs_baseline_cpu": round(
                        ratio(median(tr_race.cpu[name]) * scale, median(tr_race.cpu["baseline"])), 3
                    ),
                    "eval_ips": round(median(e[name]), 1),
                    "eval_ips_baseline": round(median(e["baseline"]), 1),
                    "eval_vs_baseline": round(ratio(median(e[name]), median(e["baseline"])), 3),
                    "params": sum(p.numel() for p in tr.method.parameters()),
                    "params_baseline": sum(p.numel() for p in base.method.parameters()),
                }
                if getattr(tr.method, "clip_len", None) is not None:
                    results[name].update(_clip_figures(tr, results[name]["train_ips"], opts))
        finally:
            cleanup()
    return {"batch": opts.batch, "threads": torch.get_num_threads(), "size": 64, "backbone": "tiny",
            "detectors": results, "errors": errors}  # fmt: skip
