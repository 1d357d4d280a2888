"""Throughput benchmark of the engine against a bare PyTorch loop (``scripts/bench.py``, ``make bench``).

For each backbone it composes the training config as ``train.py`` would (on a small synthetic benchmark
generated into ``paths.cache_dir``), runs ``Trainer.setup()`` and measures, in the same process:

1. training images/s over pre-loaded batches already on the device (no data loading, warm-up excluded):
   ``engine`` = ``method.fit_step`` + ``ctx.end_iteration`` + per-step scheduler steps (what
   ``Trainer._train_epoch`` runs per batch, minus its bookkeeping); ``loop`` = the whole
   ``Trainer._train_epoch`` fed with those batches (adds the non-finite check, ``float(loss)``, the
   logging and the progress bar); ``bare`` = a hand-written loop on the same architecture
   (``build_backbone`` + ``nn.Linear``), Adam, BCE-with-logits, same batch/precision/threads;
2. evaluation images/s: ``predict_table``'s per-batch body (``method.predict`` under ``no_grad`` and the
   runtime's autocast, results to NumPy) against a bare ``model(x).sigmoid()`` loop;
3. data-loader samples/s: the engine's own training ``DataLoader`` (``Trainer._loader``: ``FrameDataset``,
   the training ``Pipeline`` with ``augment.train``) at each requested worker count.

Measurements alternate between the contenders in rotating order over several rounds; figures are
medians, ratios are ratios of medians (goal for the training ratio: >= 0.95). Everything but the final
JSON line goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.utils.data import default_collate

log = logging.getLogger(__name__)

#: A small synthetic benchmark (FF++ only: 10 source videos, 8 frames each, 4 manipulations, no stand-ins).
SYNTHETIC = {
    "n_source_videos": 10,
    "frames_per_video": 8,
    "standin_videos": 2,
    "standins": [],
    "methods": ["DF", "F2F", "FS", "NT"],
}


@dataclass
class BenchOptions:
    """What to measure and how long."""

    backbones: list[str] = field(default_factory=lambda: ["auto"])
    size: int | None = None
    batch: int = 32
    precision: str = "fp32"
    threads: int = 2
    steps: int = 0
    warmup: int = 3
    rounds: int = 5
    target_s: float = 1.0
    workers: list[int] = field(default_factory=lambda: [0, 2])
    loader_rounds: int = 2
    data_size: int = 256
    cache_dir: str | None = None
    overrides: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds taken by ``fn()``, the device synchronised before and after."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def alternate(
    contenders: Mapping[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Call each contender once per round, the order rotating each round; returns each one's results."""
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(contenders[name]())
    return out


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def _r(x: float, nd: int = 1) -> float:
    return round(float(x), nd)


def available_backbones(config_dir: Path) -> list[str]:
    """The default set: ``tiny``, plus ``small`` when ``conf/backbone/small.yaml`` exists."""
    names = ["tiny"]
    if (config_dir / "backbone" / "small.yaml").is_file():
        names.append("small")
    else:
        print("bench: conf/backbone/small.yaml not found; measuring tiny only", file=sys.stderr)
    return names


def compose_config(config_dir: Path, overrides: Sequence[str]) -> DictConfig:
    """The training config as ``train.py`` composes it, with ``overrides`` applied."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def bench_overrides(backbone: str, opts: BenchOptions, out_dir: Path) -> list[str]:
    """Config overrides for one measured setting (the user's ``--override``s come last)."""
    ov = [
        f"backbone={backbone}",
        f"trainer.batch_size={opts.batch}",
        f"trainer.eval_batch_size={opts.batch}",
        f"runtime.precision={opts.precision}",
        f"runtime.threads={opts.threads}",
        "logger=none",
        "resume=never",
        f"paths.output_dir={out_dir}",
        "data=synthetic",
        f"++data.generator.image_size={opts.data_size}",
    ]
    if opts.size:
        ov.append(f"backbone.input_size={opts.size}")
    if opts.cache_dir:
        ov.append(f"paths.cache_dir={opts.cache_dir}")
    for key, value in SYNTHETIC.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        ov.append(f"++data.generator.{key}={text}")
    return [*ov, *opts.overrides]


# ------------------------------------------------------------------------------------ the contenders


def preload_batches(dataset, batch: int, count: int, runtime) -> list[dict]:
    """``count`` collated training batches (augmented, as the engine's loader yields them) on the device."""
    from detect.engine.evaluate import to_device

    n = len(dataset)
    out = []
    for b in range(count):
        items = [dataset[(b * batch + i) % n] for i in range(batch)]
        out.append(to_device(default_collate(items), runtime))
    return out


def _cycle(batches: Sequence[dict], n: int) -> list[dict]:
    return [batches[i % len(batches)] for i in range(n)]


class BareModel(nn.Module):
    """The baseline's architecture written out by hand: backbone, then one linear logit."""

    def __init__(self, backbone_cfg: Mapping) -> None:
        from detect.models.backbone import build_backbone

        super().__init__()
        self.backbone = build_backbone(backbone_cfg)
        self.head = nn.Linear(self.backbone.num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)).squeeze(1)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


class Contenders:
    """The measured loops of one setting, sharing the pre-loaded batches."""

    def __init__(self, trainer, batches: list[dict]) -> None:
        self.trainer, self.batches = trainer, batches
        rt = trainer.runtime
        self.device, self.precision = rt.device, rt.precision
        cfg = trainer.cfg
        torch.manual_seed(int(cfg.seed))
        self.bare = BareModel(cfg.backbone).to(rt.device)
        if rt.channels_last:
            self.bare = self.bare.to(memory_format=torch.channels_last)
        optim = cfg.method.optim
        self.bare_opt = torch.optim.Adam(self.bare.parameters(), lr=float(optim.lr),
                                         weight_decay=float(optim.get("weight_decay", 0.0)))
        self.epoch = 0

    # training
    def engine_train(self, steps: int) -> float:
        """``fit_step`` + ``end_iteration`` + per-step schedulers, as ``_train_epoch`` runs them per batch."""
        tr = self.trainer
        method, ctx, specs = tr.method, tr.ctx, tr.specs
        batches = _cycle(self.batches, steps)
        method.train()

        def run() -> None:
            for batch in batches:
                method.fit_step(batch, ctx)
                ctx.end_iteration()
                for spec in specs:
                    if spec.scheduler is not None and spec.interval == "step":
                        spec.scheduler.step()

        return _timed(run, self.device)

    def loop_train(self, steps: int) -> float:
        """The engine's whole ``_train_epoch`` over the pre-loaded batches (its loader replaced)."""
        tr = self.trainer
        batches = _cycle(self.batches, steps)
        tr._loader = lambda epoch: batches  # an instance attribute shadows the method
        self.epoch += 1
        try:
            return _timed(lambda: tr._train_epoch(self.epoch), self.device)
        finally:
            del tr._loader

    def bare_train(self, steps: int) -> float:
        """zero_grad; autocast forward; BCE-with-logits; backward; Adam step."""
        model, opt = self.bare, self.bare_opt
        batches = _cycle(self.batches, steps)
        model.train()

        def run() -> None:
            for batch in batches:
                opt.zero_grad(set_to_none=True)
                with _autocast(self.device, self.precision):
                    logits = model(batch["image"])
                    loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
                loss.backward()
                opt.step()

        return _timed(run, self.device)

    # evaluation
    def engine_eval(self, steps: int) -> float:
        """``predict_table``'s per-batch body: ``predict`` under no_grad and autocast, results to NumPy."""
        method, rt = self.trainer.method, self.trainer.runtime
        batches = _cycle(self.batches, steps)

        @torch.no_grad()
        def run() -> None:
            was = method.training
            method.eval()
            indices, probs = [], []
            for batch in batches:
                with rt.autocast():
                    p = method.predict(batch["image"])
                indices.append(batch["index"].cpu().numpy())
                probs.append(p.float().cpu().numpy())
            method.train(was)

        return _timed(run, self.device)

    def bare_eval(self, steps: int) -> float:
        """``model(x).sigmoid()`` under no_grad and autocast."""
        model = self.bare
        batches = _cycle(self.batches, steps)

        @torch.no_grad()
        def run() -> None:
            model.eval()
            out = []
            with _autocast(self.device, self.precision):
                for batch in batches:
                    out.append(model(batch["image"]).sigmoid())
            model.train()

        return _timed(run, self.device)


def calibrate_steps(fn: Callable[[int], float], warmup: int, target_s: float) -> int:
    """Steps per measurement lasting about ``target_s`` (from a warm-up run), clamped to [3, 200]."""
    per_step = fn(max(1, warmup)) / max(1, warmup)
    return int(min(200, max(3, round(target_s / max(per_step, 1e-6)))))


def measure_loader(trainer, workers: Sequence[int], rounds: int) -> dict[int, float]:
    """Samples/s of one epoch of the engine's training DataLoader at each worker count (median)."""
    cfg = trainer.cfg
    configured = cfg.runtime.num_workers
    epoch = [0]

    def one(w: int) -> Callable[[], float]:
        def run() -> float:
            with open_dict(cfg):
                cfg.runtime.num_workers = w
            epoch[0] += 1
            t0 = time.perf_counter()
            n = 0
            for batch in trainer._loader(epoch[0]):
                n += len(batch["label"])
            return n / (time.perf_counter() - t0)

        return run

    try:
        res = alternate({str(w): one(w) for w in workers}, rounds)
    finally:
        with open_dict(cfg):
            cfg.runtime.num_workers = configured
    return {int(w): _median(v) for w, v in res.items()}


# ------------------------------------------------------------------------------------------- one run


def bench_backbone(config_dir: Path, backbone: str, opts: BenchOptions) -> dict:
    """Measure one backbone; returns the figures (see the module docstring)."""
    from detect.engine.runtime import cleanup
    from detect.engine.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="detect-bench-") as tmp:
        cfg = compose_config(config_dir, bench_overrides(backbone, opts, Path(tmp) / "outputs"))
        torch.set_num_threads(opts.threads)
        trainer = Trainer(cfg, Path(tmp) / "run")
        try:
            trainer.setup()
            rt = trainer.runtime
            n_distinct = max(1, min(4, opts.steps or 4))
            batches = preload_batches(trainer.train_dataset, opts.batch, n_distinct, rt)
            c = Contenders(trainer, batches)

            steps = opts.steps
            train = {"engine": c.engine_train, "loop": c.loop_train, "bare": c.bare_train}
            if steps <= 0:
                for fn in train.values():
                    fn(opts.warmup)
                steps = calibrate_steps(c.bare_train, opts.warmup, opts.target_s)
            else:
                for fn in train.values():
                    fn(opts.warmup)
            print(f"bench[{backbone}]: {steps} steps x {opts.rounds} rounds, batch {opts.batch}", file=sys.stderr)
            t = alternate({k: (lambda fn=fn: steps * opts.batch / fn(steps)) for k, fn in train.items()},
                          opts.rounds)

            evals = {"engine": c.engine_eval, "bare": c.bare_eval}
            for fn in evals.values():
                fn(opts.warmup)
            e = alternate({k: (lambda fn=fn: steps * opts.batch / fn(steps)) for k, fn in evals.items()},
                          opts.rounds)

            loader = measure_loader(trainer, opts.workers, opts.loader_rounds)
            pipeline_hash = trainer.train_pipeline.config_hash
        finally:
            cleanup()

    tr_e, tr_l, tr_b = _median(t["engine"]), _median(t["loop"]), _median(t["bare"])
    ev_e, ev_b = _median(e["engine"]), _median(e["bare"])
    per_round = [_ratio(a, b) for a, b in zip(t["engine"], t["bare"], strict=True)]
    result = {
        "backbone": backbone,
        "timm_name": str(cfg.backbone.timm_name),
        "size": int(cfg.input.size),
        "batch": opts.batch,
        "precision": opts.precision,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "rounds": opts.rounds,
        "train_ips_engine": _r(tr_e),
        "train_ips_loop": _r(tr_l),
        "train_ips_bare": _r(tr_b),
        "train_ratio": _r(_ratio(tr_e, tr_b), 3),
        "train_loop_ratio": _r(_ratio(tr_l, tr_b), 3),
        "train_ratio_range": [_r(min(per_round), 3), _r(max(per_round), 3)],
        "eval_ips_engine": _r(ev_e),
        "eval_ips_bare": _r(ev_b),
        "eval_ratio": _r(_ratio(ev_e, ev_b), 3),
        **{f"loader_sps_w{w}": _r(v) for w, v in loader.items()},
        "loader_workers_configured": int(cfg.runtime.num_workers),
        "transform_hash": pipeline_hash,
        "n_train": len(trainer.train_dataset),
        "data": Path(str(cfg.data.root)).name,
        "device": str(rt.device) if rt.device.type != "cuda" else torch.cuda.get_device_name(rt.device),
    }
    for w, v in loader.items():
        print(f"bench[{backbone}]: loader {v:.1f} samples/s with {w} workers (transform {pipeline_hash})",
              file=sys.stderr)
    print(f"bench[{backbone}]: train engine {tr_e:.1f} / loop {tr_l:.1f} / bare {tr_b:.1f} img/s "
          f"(ratio {result['train_ratio']}, loop {result['train_loop_ratio']}); eval engine {ev_e:.1f} / "
          f"bare {ev_b:.1f} img/s (ratio {result['eval_ratio']})", file=sys.stderr)
    return result


def run_bench(config_dir: Path, opts: BenchOptions) -> dict:
    """All requested backbones; the first one's figures at the top level, the others under ``more``."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_num_threads(opts.threads)
    names = [b for name in opts.backbones for b in (available_backbones(config_dir) if name == "auto" else [name])]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with contextlib.redirect_stdout(sys.stderr):
        results = [bench_backbone(config_dir, name, opts) for name in names]
    env = {
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_1m": _r(load, 2),
    }
    out = {**results[0], **env}
    out["device"] = out.pop("device")
    if len(results) > 1:
        out["more"] = results[1:]
    return out


# ----------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    """Command-line options -> :class:`BenchOptions`."""
    p = argparse.ArgumentParser(
        prog="scripts/bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backbone", default="auto",
                   help="backbone config name(s), comma-separated (auto: tiny, plus small if present)")
    p.add_argument("--size", type=int, default=None, help="input size (default: the backbone's input_size)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--steps", type=int, default=0,
                   help="steps per timed measurement (0: calibrated to about --target-s seconds)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before measuring")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (figures are medians)")
    p.add_argument("--target-s", type=float, default=1.0, help="seconds per measurement when --steps 0")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts to measure, comma-separated")
    p.add_argument("--loader-rounds", type=int, default=2, help="loader epochs per worker count (median)")
    p.add_argument("--data-size", type=int, default=256, help="synthetic benchmark image size (stored frames)")
    p.add_argument("--cache-dir", default=None, help="where the synthetic benchmark is cached "
                   "(default: the config's paths.cache_dir)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override (repeatable), e.g. runtime.channels_last=true")
    a = p.parse_args(argv)
    if a.batch < 1 or a.rounds < 1 or a.threads < 1 or a.steps < 0 or a.warmup < 1:
        p.error("--batch, --rounds, --threads and --warmup must be positive, --steps non-negative")
    return BenchOptions(
        backbones=[b for b in a.backbone.split(",") if b], size=a.size, batch=a.batch, precision=a.precision,
        threads=a.threads, steps=a.steps, warmup=a.warmup, rounds=a.rounds, target_s=a.target_s,
        workers=[int(w) for w in a.workers.split(",") if w != ""], loader_rounds=a.loader_rounds,
        data_size=a.data_size, cache_dir=a.cache_dir, overrides=list(a.override),
    )


def main(argv: Sequence[str] | None = None, config_dir: Path | None = None) -> dict:
    """Run the benchmark and print its one JSON line on stdout; returns the figures."""
    opts = parse_args(argv)
    if config_dir is None:
        config_dir = Path.cwd() / "conf"
    result = run_bench(Path(config_dir), opts)
    print(json.dumps(result), flush=True)
    return result
