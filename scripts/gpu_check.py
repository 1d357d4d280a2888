"""One bf16 training step and one evaluation batch of every method option, for a short GPU window.

For every option of the ``method`` config group (the YAML files under ``conf/method/``, found when the
script runs, so renamed or added methods are checked without editing it) and every phase of an option that
declares ``phases`` (DPL's two stages), the script composes the training config as ``train.py`` would,
builds the method with a randomly initialised backbone (``backbone.pretrained=false``: nothing is
downloaded; DPL's CLIP indicators fall back to their tiny random model as on the synthetic benchmark),
and feeds it synthetic in-memory batches shaped like its training view (single frames, meta pairs, anchor
tuples, multi-quality stacks, quality pairs, curriculum pools). No dataset is read. DPL's step counts,
which training scores from the dataset, are the largest (the costliest rollout), its bins fitted on the
batch's scores.

Per option it prints one row: the time of one training step (``fit_step`` + ``end_iteration``, after one
untimed warm-up step), the time of one evaluation batch (``predict`` under ``no_grad``), the peak memory
(CUDA: ``max_memory_allocated`` over the step and the batch; CPU: the process's peak resident size, which
only grows), and how many trainable parameters got no gradient in the warm-up step (epoch 0) or the timed
step (the last epoch, after any warm-up). A method that declares ``gradient_sync = "ddp"`` with idle
parameters but ``find_unused_parameters = False`` would fail under DistributedDataParallel: its row fails.

- CUDA (default when present): the paper recipe of each option (its batch size, backbone and resolution),
  ``runtime.precision=bf16``. Sized to finish in well under 10 minutes on one H100-class GPU;
  ``--budget-s`` stops starting new options after that many seconds and lists the ones not run.
- CPU: the same steps at smoke size (the tiny backbone at 64 px, ``--batch`` items, default 2; the
  recipe's epochs, so the timed step is past every warm-up), bf16 autocast on the CPU.

    python scripts/gpu_check.py                       # every option, CUDA if present
    python scripts/gpu_check.py --device cpu --methods baseline ltw prodet

Exit status 1 when any option failed (its row says why).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from detect.engine.context import StepContext
from detect.engine.distributed import gradient_sync_of
from detect.engine.method_builder import build_method
from detect.engine.runtime import setup_runtime
from detect.methods.curriculum import Curriculum

CONF = Path(__file__).resolve().parents[1] / "conf"
COLUMNS = ("method", "sync", "batch", "size", "backbone", "step_ms", "eval_ms", "peak_MiB", "idle", "status")


def method_options(conf: Path = CONF) -> list[str]:
    """Every option of the ``method`` group: ``conf/method/x.yaml`` -> ``x``, ``conf/method/p/x.yaml`` ->
    ``p/x``."""
    root = conf / "method"
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def compose_option(option: str, device: str, batch: int | None, extra: list[str]) -> DictConfig:
    """The training config of ``option``: its paper recipe on CUDA, smoke size on the CPU."""
    overrides = [
        f"method={option}",
        "backbone.pretrained=false",
        f"runtime.device={device}",
        "runtime.precision=bf16",
        "runtime.distributed=off",
        "runtime.num_workers=0",
        "logger=none",
    ]
    if device == "cpu":  # smoke size; the recipe's epochs stay, so the last epoch is past every warm-up
        overrides += ["backbone=tiny", "backbone.input_size=64", "input.size=64", "input.crop=null"]
    overrides += extra
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if cfg.method.get("pretrained", False) is None:  # a method's own weights file (FTCN's I3D): the
        with open_dict(cfg):  # step and memory are the point here, not the start
            cfg.method.pretrained = False
    if batch is not None:
        with open_dict(cfg):
            cfg.trainer.batch_size = batch
            cfg.trainer.eval_batch_size = batch
    return cfg


def phases_of(cfg: DictConfig) -> list[tuple[str, dict]]:
    """(suffix, method overrides) per phase of the option (one unnamed phase when it declares none); a
    phase's ``init_from`` is dropped (weights are random here)."""
    if not cfg.get("phases"):
        return [("", {})]
    out = []
    for phase in cfg.phases:
        sets = {k: v for k, v in OmegaConf.to_container(phase.get("set", {})).items() if k != "init_from"}
        out.append((f"[{phase.name}]", sets))
    return out


def apply_sets(cfg: DictConfig, sets: Mapping) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        for key, value in sets.items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


# -- synthetic batches shaped like each training view ------------------------------------------------
def _frames(b: int, s: int, method, g: torch.Generator) -> dict:
    return {
        "image": torch.randn(b, 3, s, s, generator=g),
        "label": (torch.arange(b) % 2).float(),
        "index": torch.arange(b),
    }


def _meta_pairs(b: int, s: int, method, g: torch.Generator) -> dict:
    out = _frames(b, s, method, g)
    out.update(meta_image=torch.randn(b, 3, s, s, generator=g), meta_label=1 - out["label"])
    out["meta_index"] = torch.arange(b, 2 * b)
    return out


def _anchor_tuples(b: int, s: int, method, g: torch.Generator) -> dict:
    from detect.data.anchor_tuples import TUPLE_ANCHORS

    anchors = [a for a in TUPLE_ANCHORS if a in getattr(method, "anchors", ("real", "sbi"))]  # SBI: real, sbi
    ids = torch.tensor([TUPLE_ANCHORS.index(a) for a in anchors]).repeat(b, 1)
    return {
        "images": torch.randn(b, len(anchors), 3, s, s, generator=g),
        "anchors": ids,
        "labels": (ids != 0).float(),
        "indices": torch.arange(b * len(anchors)).view(b, len(anchors)),
    }


def _synth_pairs(b: int, s: int, method, g: torch.Generator) -> dict:
    masks = torch.zeros(b, 2, s, s)
    masks[:, 1, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 1.0  # each pair's synthesised fake: a square
    return {
        "images": torch.randn(b, 2, 3, s, s, generator=g),
        "masks": masks,
        "labels": torch.tensor([0.0, 1.0]).repeat(b, 1),
        "indices": torch.arange(b).repeat_interleave(2).view(b, 2),
    }


def _sladd_pairs(b: int, s: int, method, g: torch.Generator) -> dict:
    from detect.data.sladd_pairs import REGIONS

    regions = torch.zeros(b, len(REGIONS), s, s)
    for r in range(len(REGIONS)):  # one square per region, shifted
        regions[:, r, r : s // 2 + r, s // 4 : 3 * s // 4] = 1.0
    return {
        "image": torch.randn(b, 3, s, s, generator=g),
        "source": torch.randn(b, 3, s, s, generator=g),
        "regions": regions,
        "label": (torch.arange(b) % 2).float(),
        "index": torch.arange(b),
    }


def _clips(b: int, s: int, method, g: torch.Generator) -> dict:
    t = int(method.clip_len)
    return {
        "clip": torch.randn(b, t, 3, s, s, generator=g),
        "label": (torch.arange(b) % 2).float(),
        "clip_index": torch.arange(b),
        "indices": torch.arange(b * t).view(b, t),
    }


def _two_view_clips(b: int, s: int, method, g: torch.Generator) -> dict:
    """RealForensics: the augmented clip and its clean view (the frozen target network's input)."""
    return {
        **_clips(b, s, method, g),
        "clip_clean": torch.randn(b, int(method.clip_len), 3, s, s, generator=g),
    }


def _multi_quality(b: int, s: int, method, g: torch.Generator) -> dict:
    q = len(method.qualities)
    return {
        "images": torch.randn(b, q, 3, s, s, generator=g),
        "qualities": torch.full((b, q), 100),
        "label": (torch.arange(b) % 2).float(),
        "index": torch.arange(b),
    }


def _quality_pairs(b: int, s: int, method, g: torch.Generator) -> dict:
    high = torch.randn(b, 3, s, s, generator=g)
    return {
        "images": torch.stack([high, high + 0.1 * torch.randn(b, 3, s, s, generator=g)], dim=1),
        "label": (torch.arange(b) % 2).float(),
        "index": torch.arange(b),
        "indices": torch.arange(2 * b).view(b, 2),
        "quality": torch.full((b,), 100),
    }


def _real_fake_pairs(b: int, s: int, method, g: torch.Generator) -> dict:
    k = len(method.manipulations)
    return {
        "images": torch.randn(b, 2, 3, s, s, generator=g),
        "labels": torch.tensor([[0.0, 1.0]]).repeat(b, 1),
        "classes": torch.stack([torch.zeros(b, dtype=torch.long), 1 + torch.arange(b) % k], dim=1),
        "indices": torch.arange(2 * b).view(b, 2),
    }


def _pool(b: int, s: int, method, g: torch.Generator) -> dict:
    out = _frames(b, s, method, g)
    out["curriculum_easy"] = torch.arange(b) % 2 == 1
    return out


def _masked_frames(b: int, s: int, method, g: torch.Generator) -> dict:
    out = _frames(b, s, method, g)
    mask = torch.zeros(b, 1, s, s)
    mask[1::2, :, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 1.0  # fakes (odd rows): a square
    out["mask"] = mask
    return out


def _two_views(b: int, s: int, method, g: torch.Generator) -> dict:
    if getattr(method, "pairing", "views") != "views":  # CORE's batch_halves: single frames
        return _frames(b, s, method, g)
    out = _frames(b, s, method, g)
    out["images"] = torch.randn(b, 2, 3, s, s, generator=g)
    del out["image"]
    return out


def _i2g_pairs(b: int, s: int, method, g: torch.Generator) -> dict:
    masks = torch.zeros(b, 2, 1, s, s)
    masks[:, 1, :, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 0.8  # the I2G fake of each pair: a square
    return {
        "images": torch.randn(b, 2, 3, s, s, generator=g),
        "masks": masks,
        "labels": torch.tensor([0.0, 1.0]).repeat(b, 1),
        "indices": torch.arange(b).repeat_interleave(2).view(b, 2),
    }


def _identities(b: int, s: int, method, g: torch.Generator) -> dict:
    out = _frames(b, s, method, g)
    out["identity"] = torch.randint(0, method.num_identities, (b,), generator=g)
    return out


#: the training view a method's ``build_train_dataset`` returns (its return annotation) -> a batch of it.
#: A method with a new view adds its builder here.
BATCHES: dict[str, Callable] = {
    "Dataset": _frames,
    "FrameDataset": _frames,
    "MetaPairDataset": _meta_pairs,
    "AnchorTupleDataset": _anchor_tuples,
    "MultiQualityDataset": _multi_quality,
    "QualityPairDataset": _quality_pairs,
    "PoolDataset": _pool,
    "MaskedFrameDataset": _masked_frames,
    "MaskedFrameDataset | FrameDataset": _masked_frames,  # FFD: masks unless map_weight = 0
    "TwoViewDataset | FrameDataset": _two_views,  # CORE: two views, or single frames (batch_halves)
    "I2GPairDataset": _i2g_pairs,  # I2G-PCL: (real, I2G fake) pairs with masks
    "IdentityFrameDataset": _identities,  # IID: frames with identity indices
    "RealFakePairDataset": _real_fake_pairs,  # UCF: (real, fake) pairs with manipulation classes
    "SynthPairDataset": _synth_pairs,  # Face X-ray, FWA: (real, its synthesised fake) with the blend masks
    "ClipDataset": _clips,  # clip detectors (FTCN): T consecutive frames of one face track
    "TwoViewClipDataset": _two_view_clips,  # RealForensics: augmented + clean view of each clip
    "MouthClipDataset": _clips,  # LipForensics: clips of mouth squares (RGB; the model takes their luma)
    "SladdPairDataset": _sladd_pairs,  # SLADD: target, source and region masks (the policy blends in-step)
}


def synthetic_batch(method, b: int, s: int, seed: int = 0) -> dict:
    view = inspect.signature(type(method).build_train_dataset).return_annotation
    view = view if isinstance(view, str) else getattr(view, "__name__", str(view))
    if view not in BATCHES:
        raise KeyError(f"{type(method).__name__} trains on {view}: add a batch builder to BATCHES")
    return BATCHES[view](b, s, method, torch.Generator().manual_seed(seed))


class _StubView:
    """What ``on_epoch_start`` hooks read from a training view, without data: two manipulation domains
    (LTW's meta-split), ``set_epoch`` / ``set_domains`` as no-ops."""

    by_domain = {"DF": {}, "F2F": {}}

    def set_epoch(self, epoch: int) -> None:
        pass

    def set_domains(self, *args, **kwargs) -> None:
        pass


def _epoch_hook(method, epoch: int, ctx: StepContext) -> str:
    """Run the method's ``on_epoch_start`` on the stub view (warm-ups, stage switches, meta-splits); a
    curriculum's pool needs a real table, so its detector's hook runs instead, and a hook that reads data
    from the view is left out. Returns a note for the row ('' when the hook ran as in training)."""
    if isinstance(method, Curriculum):
        method.detector.on_epoch_start(epoch, _StubView(), ctx)
        return "curriculum pool not built"
    try:
        method.on_epoch_start(epoch, _StubView(), ctx)
    except AttributeError as err:
        return f"on_epoch_start needs data ({err})"
    return ""


def _dpl_steps(method, batch: Mapping, device: torch.device) -> None:
    """DPL scores every training image with its indicators before an epoch and bins the scores (the bins
    then serve evaluation): here the bins are fitted on the batch's own scores and every image gets the
    most steps (``n_steps`` for both branches), the costliest rollout."""
    if not (hasattr(method, "_train_steps") and hasattr(method, "fit_bins") and "images" in batch):
        return
    b, q = batch["images"].shape[:2]
    if method.indicators is not None and not bool(method.bins_fitted):
        with torch.no_grad():
            method.fit_bins(method.indicators.scores(batch["images"].flatten(0, 1).to(device)))
    method._train_steps = torch.full((b, q, 2), int(method.n_steps), dtype=torch.long)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _to(batch: Mapping, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def check_option(name: str, cfg: DictConfig) -> dict:
    """Build, step twice (untimed at epoch 0, timed at the last epoch), evaluate one batch."""
    rt = setup_runtime(cfg.runtime)
    torch.manual_seed(0)
    row = {"method": name, "backbone": str(cfg.backbone.name)}
    method = build_method(cfg.method, cfg.backbone, cfg.get("curriculum")).to(rt.device)
    row["sync"] = gradient_sync_of(method)
    epochs = int(cfg.trainer.epochs)
    method.configure_optimizers(epochs, 10)
    ctx = StepContext(rt, cfg.trainer.grad_clip)
    b, s = int(cfg.trainer.batch_size), int(cfg.input.crop or cfg.input.size)
    row.update(batch=b, size=s)
    trainable = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    got: set[str] = set()
    hooks = [p.register_post_accumulate_grad_hook(lambda _p, n=n: got.add(n)) for n, p in trainable]
    notes = []
    idle = {}
    method.train()
    for epoch, timed in ((0, False), (epochs - 1, True)):
        ctx.epoch = epoch
        note = _epoch_hook(method, epoch, ctx)
        if note and note not in notes:
            notes.append(note)
        batch = synthetic_batch(method, b, s, seed=epoch)
        _dpl_steps(method, batch, rt.device)
        batch = _to(batch, rt.device)
        got.clear()
        if timed:
            _sync(rt.device)
            if rt.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(rt.device)
            t0 = time.perf_counter()
        method.fit_step(batch, ctx)
        ctx.end_iteration()
        if timed:
            _sync(rt.device)
            row["step_ms"] = 1000 * (time.perf_counter() - t0)
        idle[epoch] = len([n for n, p in trainable if p.requires_grad and n not in got])
    for h in hooks:
        h.remove()
    method.eval()
    frames = (int(method.clip_len),) if getattr(method, "clip_len", None) else ()  # clip detectors: clips
    images = torch.randn(int(cfg.trainer.eval_batch_size), *frames, 3, s, s).to(rt.device)
    _sync(rt.device)
    t0 = time.perf_counter()
    with torch.no_grad(), rt.autocast():
        prob = method.predict(images)
    _sync(rt.device)
    row["eval_ms"] = 1000 * (time.perf_counter() - t0)
    row["peak_MiB"] = _peak_mib(rt.device)
    row["idle"] = "/".join(str(idle[e]) for e in sorted(idle))
    if prob.shape != (images.shape[0],) or not bool(torch.isfinite(prob.float()).all()):
        n = images.shape[0]
        raise ValueError(f"predict returned shape {tuple(prob.shape)} or non-finite values for {n} images")
    if row["sync"] == "ddp" and any(idle.values()) and not getattr(method, "find_unused_parameters", False):
        raise ValueError(
            f"{row['idle']} trainable parameters got no gradient but find_unused_parameters=False: "
            "DistributedDataParallel would fail; declare find_unused_parameters = True"
        )
    row["status"] = "ok" + (f" ({'; '.join(notes)})" if notes else "")
    return row


def _cell(row: Mapping, key: str) -> str:
    value = row.get(key, "-")
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict], out=sys.stdout) -> None:
    widths = {c: max(len(c), *(len(_cell(r, c)) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS), file=out)
    print("  ".join("-" * widths[c] for c in COLUMNS), file=out)
    for r in rows:
        print("  ".join(_cell(r, c).ljust(widths[c]) for c in COLUMNS), file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--methods", nargs="*", help="options to check (default: every conf/method option)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the paper's; CPU: 2)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="start no new option after this")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--list", action="store_true", help="print the method options and exit")
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every option (key=value)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(method_options()))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device.startswith("cuda") else args.device
    batch = args.batch if args.batch is not None else (2 if device == "cpu" else None)
    options = args.methods or method_options()
    known = set(method_options())
    unknown = [o for o in options if o not in known]
    if unknown:
        ap.error(f"unknown method options {unknown}; known: {sorted(known)}")
    print(
        f"gpu_check: {len(options)} method options on {device} "
        f"({'paper batch size and resolution' if device != 'cpu' else f'smoke size, batch {batch}'}), "
        "bf16 autocast; step = one training step after a warm-up step; peak = "
        f"{'CUDA max allocated' if device != 'cpu' else 'process peak RSS'}; idle = trainable parameters "
        "without gradient at epoch 0 / the last epoch",
        flush=True,
    )
    rows, failed, skipped = [], [], []
    t_start = time.perf_counter()
    for option in options:
        if time.perf_counter() - t_start > args.budget_s:
            skipped.append(option)
            continue
        try:
            base = compose_option(option, device, batch, list(args.overrides))
            phases = phases_of(base)
        except Exception as err:  # a config that does not compose is a failure of its own row
            rows.append({"method": option, "status": f"FAIL compose: {type(err).__name__}: {err}"})
            failed.append(option)
            continue
        for suffix, sets in phases:
            name = option + suffix
            try:
                rows.append(check_option(name, apply_sets(base, sets)))
            except Exception as err:
                traceback.print_exc(file=sys.stderr)
                rows.append({"method": name, "status": f"FAIL {type(err).__name__}: {err}".splitlines()[0]})
                failed.append(name)
            finally:
                with contextlib.suppress(Exception):
                    torch.cuda.empty_cache()
    print_table(rows)
    total = time.perf_counter() - t_start
    print(f"{len(rows)} rows, {len(failed)} failed, {len(skipped)} not run (budget), {total:.0f} s")
    if skipped:
        print(f"not run (over --budget-s {args.budget_s:.0f}): {' '.join(skipped)}", flush=True)
    if failed:
        print(f"failed: {' '.join(failed)}", flush=True)
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
