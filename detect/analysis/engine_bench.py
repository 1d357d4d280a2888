"""Throughput benchmark of the engine against a bare PyTorch loop (``scripts/bench.py``, ``make bench``).

The trainer is driven through its public API (``setup``, ``make_loader``, ``train_epoch``); timing helpers
are in :mod:`detect.analysis.timing`.

For each backbone it composes the training config as ``train.py`` would (on a small synthetic benchmark
generated into ``paths.cache_dir``), runs ``Trainer.setup()`` and measures, in the same process:

1. training images/s over pre-loaded batches already on the device (no data loading, warm-up excluded):
   ``engine`` = ``method.fit_step`` + ``ctx.end_iteration`` + per-step scheduler steps (what
   ``Trainer.train_epoch`` runs per batch, minus its bookkeeping); ``loop`` = the whole
   ``Trainer.train_epoch`` fed with those batches (adds the non-finite check, ``float(loss)``, the
   logging and the progress bar); ``bare`` = a hand-written loop on the same architecture
   (``build_backbone`` + ``nn.Linear``), Adam, BCE-with-logits, same batch/precision/threads.
   ``loop_overhead_us_per_step`` / ``loop_epoch_overhead_ms`` time ``Trainer.train_epoch`` with ``fit_step``
   stubbed out: the engine's own per-step and per-epoch cost, free of the model's noise;
   ``train_minflt_per_step`` counts minor page faults per step (memory glibc's allocator gave back to the
   OS and touches again: on the CPU this costs both loops system time, and can differ between them;
   ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` set high, or jemalloc/tcmalloc, remove it);
2. evaluation images/s: ``predict_table``'s per-batch body (``method.predict`` under ``no_grad`` and the
   runtime's autocast, results to NumPy) against a bare ``model(x).sigmoid()`` loop;
3. data-loader samples/s: the engine's own training ``DataLoader`` (``Trainer.make_loader``: ``FrameDataset``,
   the training ``Pipeline`` with ``augment.train``) at each requested worker count, in steady state (after
   the first batch; the time to it, worker start-up included, is reported apart), printed with the
   pipeline's ``config_hash``.

Measurements alternate between the contenders in rotating order over several rounds. ``*_ratio`` is the
ratio of the median images/s (goal for ``train_ratio``: >= 0.95), ``*_ratio_best`` that of the best
rounds, ``*_ratio_cpu`` (CPU device only) that of the median images per process-CPU second, which does
not count time spent waiting for a core that another process holds. On a shared machine wall-clock
figures at ``--threads 2`` swing widely (``loadavg_1m`` says how busy it was); ``--threads 1`` or
``OMP_WAIT_POLICY=PASSIVE`` gives far steadier ratios. Everything but the final JSON line goes to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import default_collate

from detect.analysis.timing import alternate, median, race, ratio, timed

#: A small synthetic benchmark (FF++ only: 10 source videos, 8 frames each, 4 manipulations, no stand-ins).
SYNTHETIC: dict[str, object] = {
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
    rounds: int = 7
    target_s: float = 0.5
    workers: list[int] = field(default_factory=lambda: [0, 2])
    loader_rounds: int = 2
    data_size: int = 256
    cache_dir: str | None = None
    overrides: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ helpers


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
    ]
    if opts.size:
        ov.append(f"backbone.input_size={opts.size}")
    if opts.cache_dir:
        ov.append(f"paths.cache_dir={opts.cache_dir}")
    from detect.data.synthetic import SyntheticConfig

    known = {f.name for f in dataclasses.fields(SyntheticConfig)}
    for key, value in {**SYNTHETIC, "image_size": opts.data_size}.items():
        if key not in known:  # tolerate a generator that no longer has the knob
            continue
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        ov.append(f"++data.generator.{key}={text}")
    return [*ov, *opts.overrides]


# ------------------------------------------------------------------------------------ the contenders


def preload_batches(dataset, batch: int, count: int, runtime) -> list[dict]:
    """``count`` collated training batches (augmented, as the engine's loader yields them) on the device."""
    from detect.engine.predict_loop import to_device

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
    return torch.autocast(
        device_type=device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    )


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
        self.bare_opt = torch.optim.Adam(
            self.bare.parameters(), lr=float(optim.lr), weight_decay=float(optim.get("weight_decay", 0.0))
        )
        self.epoch = 0

    # training
    def engine_train(self, steps: int) -> float:
        """``fit_step`` + ``end_iteration`` + per-step schedulers, as ``train_epoch`` runs them per batch."""
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

        return timed(run, self.device)

    def loop_train(self, steps: int) -> float:
        """The engine's whole epoch (``Trainer.train_epoch``) over the pre-loaded batches."""
        batches = _cycle(self.batches, steps)
        self.epoch += 1
        return timed(lambda: self.trainer.train_epoch(self.epoch, batches), self.device)

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

        return timed(run, self.device)

    def loop_bookkeeping(self, steps: int, repeats: int = 3) -> tuple[float, float]:
        """``Trainer.train_epoch``'s own cost with ``fit_step`` stubbed out: (ms per epoch, µs per step).

        Everything the engine does around the update is kept (device transfer of on-device batches,
        non-finite check, ``end_iteration``, schedulers, ``float(loss)``, logging, progress bar); the best
        of ``repeats`` runs of an empty epoch and of a ``steps``-batch epoch give the two figures.
        """
        from detect.engine.method_contract import StepOutput

        tr = self.trainer
        out = StepOutput(torch.zeros((), device=self.device), {}, None, None)
        # the method's step becomes a constant for this measurement (an instance attribute on the method,
        # removed below); the trainer runs unchanged
        tr.method.fit_step = lambda batch, ctx: out

        def epoch(n: int) -> float:
            return self.loop_train(n) if n else self._empty_epoch()

        try:
            empty = min(epoch(0) for _ in range(repeats))
            full = min(epoch(steps) for _ in range(repeats))
        finally:
            del tr.method.fit_step
        return empty * 1e3, max(0.0, full - empty) / steps * 1e6

    def _empty_epoch(self) -> float:
        self.epoch += 1
        return timed(lambda: self.trainer.train_epoch(self.epoch, []), self.device)

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

        return timed(run, self.device)

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

        return timed(run, self.device)


def measure_loader(trainer, workers: Sequence[int], rounds: int) -> dict[int, tuple[float, float]]:
    """``{workers: (samples/s, seconds to the first batch)}`` of the engine's training DataLoader (medians).

    Each round is one epoch through a fresh loader (``persistent_workers=False``, as in training). The
    samples/s are counted after the first batch (steady state); worker start-up and the first batch are
    reported apart, as they weigh on a short epoch only.
    """
    cfg = trainer.cfg
    configured = cfg.runtime.num_workers
    epoch = [0]
    first: dict[int, list[float]] = {w: [] for w in workers}

    def one(w: int) -> Callable[[], float]:
        def run() -> float:
            with open_dict(cfg):
                cfg.runtime.num_workers = w
            epoch[0] += 1
            t0 = time.perf_counter()
            t1, n, n_first = t0, 0, 0
            for batch in trainer.make_loader(epoch[0]):
                n += len(batch["label"])
                if not n_first:
                    t1, n_first = time.perf_counter(), n
            end = time.perf_counter()
            first[w].append(t1 - t0)
            if n == n_first:  # a single batch: no steady state to speak of
                return n / max(end - t0, 1e-9)
            return (n - n_first) / max(end - t1, 1e-9)

        return run

    try:
        res = alternate({str(w): one(w) for w in workers}, rounds)
    finally:
        with open_dict(cfg):
            cfg.runtime.num_workers = configured
    return {int(w): (median(v), median(first[int(w)])) for w, v in res.items()}


def prepare_synthetic(cfg: DictConfig) -> Path:
    """Generate (or find cached) the configured synthetic benchmark in this process (no worker pool)."""
    from hydra.utils import to_absolute_path

    from detect.data.synthetic import SyntheticConfig, ensure_synthetic

    gen = OmegaConf.to_container(cfg.data.generator, resolve=True)
    return ensure_synthetic(
        Path(to_absolute_path(str(cfg.paths.cache_dir))), SyntheticConfig(**gen), workers=1
    )


def _figures(
    prefix: str, a: str, b: str, ips: Mapping[str, list[float]], cpu: Mapping[str, list[float]] | None
) -> dict[str, float]:
    """``a`` over ``b``: ``{prefix}_ratio`` (of the medians), ``{prefix}_ratio_best`` (of the best rounds)
    and, on the CPU, ``{prefix}_ratio_cpu`` (of the medians of images per process-CPU second)."""
    out = {
        f"{prefix}_ratio": _r(ratio(median(ips[a]), median(ips[b])), 3),
        f"{prefix}_ratio_best": _r(ratio(max(ips[a]), max(ips[b])), 3),
    }
    if cpu is not None:
        out[f"{prefix}_ratio_cpu"] = _r(ratio(median(cpu[a]), median(cpu[b])), 3)
    return out


# ------------------------------------------------------------------------------------------- one run


def bench_backbone(config_dir: Path, backbone: str, opts: BenchOptions) -> dict:
    """Measure one backbone; returns its figures (see the module docstring)."""
    from detect.engine.runtime import cleanup
    from detect.engine.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="detect-bench-") as tmp:
        cfg = compose_config(config_dir, bench_overrides(backbone, opts, Path(tmp) / "outputs"))
        if cfg.data.kind == "synthetic":
            prepare_synthetic(cfg)
        torch.set_num_threads(opts.threads)
        trainer = Trainer(cfg, Path(tmp) / "run")
        try:
            trainer.setup()
            rt = trainer.runtime
            batches = preload_batches(trainer.train_dataset, opts.batch, max(1, min(4, opts.steps or 4)), rt)
            c = Contenders(trainer, batches)
            timing = (opts.batch, opts.warmup, opts.rounds, opts.steps, opts.target_s)
            tr_race = race({"engine": c.engine_train, "loop": c.loop_train, "bare": c.bare_train}, *timing)
            ev_race = race({"engine": c.engine_eval, "bare": c.bare_eval}, *timing)
            epoch_ms, step_us = c.loop_bookkeeping(max(tr_race.steps, 50))
            loader = measure_loader(trainer, opts.workers, opts.loader_rounds)
            pipeline_hash = trainer.train_pipeline.config_hash
        finally:
            cleanup()

    on_cpu = rt.device.type == "cpu"  # host CPU time says nothing about an accelerator's throughput
    t, e, train_steps, eval_steps = tr_race.wall, ev_race.wall, tr_race.steps, ev_race.steps
    t_cpu, e_cpu = (tr_race.cpu, ev_race.cpu) if on_cpu else (None, None)
    result = {
        "backbone": backbone,
        "timm_name": str(cfg.backbone.timm_name),
        "size": int(cfg.input.size),
        "batch": opts.batch,
        "precision": opts.precision,
        "threads": torch.get_num_threads(),
        "steps": train_steps,
        "eval_steps": eval_steps,
        "rounds": opts.rounds,
        "train_ips_engine": _r(median(t["engine"])),
        "train_ips_loop": _r(median(t["loop"])),
        "train_ips_bare": _r(median(t["bare"])),
        **_figures("train", "engine", "bare", t, t_cpu),
        **_figures("train_loop", "loop", "bare", t, t_cpu),
        "train_minflt_per_step": {k: _r(median(v)) for k, v in tr_race.faults.items()},
        "loop_overhead_us_per_step": _r(step_us),
        "loop_overhead_pct": _r(100 * step_us * 1e-6 * median(t["bare"]) / opts.batch, 3),
        "loop_epoch_overhead_ms": _r(epoch_ms, 2),
        "eval_ips_engine": _r(median(e["engine"])),
        "eval_ips_bare": _r(median(e["bare"])),
        **_figures("eval", "engine", "bare", e, e_cpu),
        **{f"loader_sps_w{w}": _r(v) for w, (v, _) in loader.items()},
        **{f"loader_first_batch_s_w{w}": _r(f, 3) for w, (_, f) in loader.items()},
        "loader_workers_configured": int(cfg.runtime.num_workers),
        "transform_hash": pipeline_hash,
        "n_train": len(trainer.train_dataset),
        "data": Path(str(cfg.data.root)).name,
        "device": str(rt.device) if rt.device.type != "cuda" else torch.cuda.get_device_name(rt.device),
    }
    say = functools.partial(print, file=sys.stderr)
    for w, (v, f) in loader.items():
        say(
            f"bench[{backbone}]: loader {v:.1f} samples/s with {w} workers, first batch after {f:.2f} s "
            f"(transform {pipeline_hash})"
        )
    r = result
    for name, rounds in (("train", t), ("eval", e)):
        shown = "; ".join(f"{k} " + " ".join(f"{v:.0f}" for v in vs) for k, vs in rounds.items())
        say(f"bench[{backbone}]: {name} img/s per round: {shown}")
    say(
        f"bench[{backbone}]: train img/s engine {r['train_ips_engine']} / loop {r['train_ips_loop']} / bare "
        f"{r['train_ips_bare']}: ratio {r['train_ratio']} (best {r['train_ratio_best']}), loop "
        f"{r['train_loop_ratio']} (best {r['train_loop_ratio_best']}); {train_steps} steps x "
        f"{opts.rounds} rounds"
    )
    if t_cpu is not None and e_cpu is not None:
        say(
            f"bench[{backbone}]: per CPU-second: train ratio {r['train_ratio_cpu']}, loop "
            f"{r['train_loop_ratio_cpu']}, eval ratio {r['eval_ratio_cpu']}"
        )
    faults = ", ".join(f"{k} {v:.0f}" for k, v in r["train_minflt_per_step"].items())
    say(f"bench[{backbone}]: minor page faults per training step: {faults}")
    say(
        f"bench[{backbone}]: train_epoch bookkeeping {r['loop_overhead_us_per_step']} us/step "
        f"({r['loop_overhead_pct']}% of a bare step) + {r['loop_epoch_overhead_ms']} ms/epoch"
    )
    say(
        f"bench[{backbone}]: eval img/s engine {r['eval_ips_engine']} / bare {r['eval_ips_bare']}: ratio "
        f"{r['eval_ratio']} (best {r['eval_ratio_best']}); {eval_steps} steps x {opts.rounds} rounds"
    )
    return result


def run_bench(config_dir: Path, opts: BenchOptions) -> dict:
    """All requested backbones; the first one's figures at the top level, the others under ``more``."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    names = [
        b for name in opts.backbones for b in (available_backbones(config_dir) if name == "auto" else [name])
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            results = [bench_backbone(config_dir, name, opts) for name in names]
    finally:
        torch.set_num_threads(threads)
    out = {**results[0], "torch": torch.__version__, "cpu_count": os.cpu_count(), "loadavg_1m": _r(load, 2)}
    out["device"] = out.pop("device")
    if len(results) > 1:
        out["more"] = results[1:]
    return out
