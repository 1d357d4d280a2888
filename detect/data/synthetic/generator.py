"""Generate the synthetic benchmark in DeepfakeBench's layout, cached and written atomically.

One job per target video (FF++'s and each stand-in pool's): render its real frames, make its fakes, pass
each video through H.264 and write frames, landmarks and masks. Jobs are independent and seeded from
``(seed, pool, kind, index)``, so the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import logging
import os
import shutil
import string
import time
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from detect.data.index import landmark_path_for, write_index
from detect.data.preprocess.clips import clip_frames, clip_starts
from detect.data.synthetic import faces as F
from detect.data.synthetic import landmarks as L
from detect.data.synthetic import manipulations as M
from detect.data.synthetic import temporal as T
from detect.data.synthetic.autoencoder import RandomAutoencoder
from detect.data.synthetic.codec import h264_roundtrip
from detect.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from detect.data.synthetic.standins import FF_LABELS, FF_METHODS, FF_NAME, FF_STYLE, STAND_INS, StandIn
from detect.utils.io import atomic_write_json, atomic_write_text
from detect.utils.scratch import exit_with_parent, make_scratch_dir, remove_stale_scratch

log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
SPLITS = ("train", "val", "test")
NOMINAL_CLIP = T.CLIP_FRAMES
PNG_PARAMS = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
FF_SWAPS = {
    "DF": M.SwapParams(
        gen_res=64, strength=0.04, checkerboard=True, colour="mean", mask="hull68", erode=0.05, feather=0.05
    ),
    "FSh": M.SwapParams(
        gen_res=128, strength=0.015, checkerboard=False, colour="full", mask="hull68", erode=0.04, feather=0.1
    ),
}


# ----------------------------------------------------------------------------------------------- seeding


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator seeded from the global seed and string/int keys (stable across processes)."""
    entropy = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def frame_numbers(n: int) -> list[int]:
    """Stored frame numbers: ``n`` evenly spaced over a nominal 300-frame clip (DeepfakeBench's sampling)."""
    if n >= NOMINAL_CLIP:
        return list(range(n))
    return [int(v) for v in np.linspace(0, NOMINAL_CLIP - 1, n).round()]


def stored_frames(n: int, clips: int = 0, clip_len: int = 0) -> tuple[list[int], list[list[int]]]:
    """(frame numbers, clips) a video stores: ``n`` evenly spaced frames and no clips, or (``clips`` > 0)
    ``clips`` clips of ``clip_len`` consecutive frames spread evenly over the nominal clip, placed by the
    rule of preprocessing's ``clips=K clip_len=L`` (:func:`detect.data.preprocess.clips.clip_starts`) and
    stored instead of the evenly spaced frames, as preprocessing does."""
    if clips <= 0:
        return frame_numbers(n), []
    runs = clip_frames(clip_starts(NOMINAL_CLIP, clips, clip_len), clip_len)
    return [f for run in runs for f in run], runs


def split_sizes(n_pairs: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Pairs per split: test and (from 3 pairs on) val get at least one; train takes the rest."""
    n_test = max(1, round(fractions[2] * n_pairs)) if n_pairs else 0
    n_val = max(1 if n_pairs >= 3 else 0, round(fractions[1] * n_pairs))
    n_val = min(n_val, n_pairs - n_test)
    return n_pairs - n_test - n_val, n_val, n_test


def pairing(seed: int, pool: str, n: int, fractions: Sequence[float]) -> tuple[list[int], list[str]]:
    """FF++-style pairs: video ``i`` is faked with identity ``partner[i]`` and vice versa; split by pair."""
    rng = rng_for(seed, pool, "pairs")
    order = [int(v) for v in rng.permutation(n)]
    pairs = [order[k : k + 2] for k in range(0, n - 1, 2)]
    n_train, n_val, _ = split_sizes(len(pairs), fractions)
    partner, split = [0] * n, [""] * n
    for k, (a, b) in enumerate(pairs):
        s = "train" if k < n_train else ("val" if k < n_train + n_val else "test")
        partner[a], partner[b] = b, a
        split[a] = split[b] = s
    if n % 2:  # the odd one out joins the last pair's split, faked with that pair's first identity
        odd = order[-1]
        partner[odd], split[odd] = pairs[-1][0], split[pairs[-1][0]]
    return partner, split


# ------------------------------------------------------------------------------------------------ videos


@dataclass
class Video:
    """One source video: identity, scene and the parameters of its frames numbered ``numbers``."""

    identity: F.Identity
    scene: F.Scene
    frames: list[F.Frame]
    pool: str = ""
    index: int = 0
    numbers: tuple[int, ...] = ()


def make_video(seed: int, pool: str, index: int, numbers: Sequence[int], size: int, style: F.Style) -> Video:
    """The ``index``-th video of ``pool`` at frame numbers ``numbers``: everything drawn from its own
    seeds, each frame's parameters a smooth function of its number (the same frame number gives the same
    frame whatever else is stored)."""
    ident = F.sample_identity(rng_for(seed, pool, "identity", index), style)
    scene = F.sample_scene(rng_for(seed, pool, "scene", index), size, style)
    frames = F.sample_frames(rng_for(seed, pool, "frames", index), scene, numbers, size, style)
    return Video(ident, scene, frames, pool, index, tuple(int(f) for f in numbers))


def frame_rng(seed: int, video: Video, maker: str, k: int) -> np.random.Generator:
    """The generator of ``maker``'s ``k``-th fake frame of ``video``: its own per frame (number), as a
    deepfake generates each frame independently."""
    return rng_for(seed, video.pool, maker, "frame", video.index, video.numbers[k])


def render_video(v: Video, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """All frames of a video: (images, landmarks)."""
    out = [F.render(v.identity, v.scene, fr, size) for fr in v.frames]
    return [o[0] for o in out], [o[1] for o in out]


def render_swap_sources(source: Video, target: Video, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The source identity in the target's scene, pose, expression and light (what a swap aims at).

    Rendered noise-free at half resolution (the generators work at 64-128 px) and upsampled.
    """
    images, lms = [], []
    half = size // 2
    for fr in target.frames:
        p = fr.pose
        small = replace(fr, pose=replace(p, scale=p.scale / 2, dx=p.dx / 2, dy=p.dy / 2))
        img, lm = F.render(source.identity, target.scene, small, half, noise=False)
        images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR))
        lms.append((lm * 2 + 0.5).astype(np.float32))
    return images, lms


def reenactment_targets(target: Video, source: Video, size: int) -> list[np.ndarray]:
    """Face2Face: per target frame, the target's landmarks under the source's most different expression.

    The transfer is made visible: the mouth opening moves by at least 0.4 and the eyes' openness by 0.5.
    """
    out = []
    for fr in target.frames:
        e = fr.expression

        def change(s: F.Frame, e: L.Expression = e) -> float:
            x = s.expression
            return abs(x.open - e.open) + 0.5 * abs(x.smile - e.smile) + 0.5 * abs(x.blink - e.blink)

        best = max(source.frames, key=change).expression
        if abs(best.open - e.open) < 0.4:
            best = replace(best, open=e.open + 0.4 if e.open < 0.5 else e.open - 0.4)
        if abs(best.blink - e.blink) < 0.5:
            best = replace(best, blink=e.blink + 0.5 if e.blink < 0.5 else e.blink - 0.5)
        out.append(L.landmarks(target.identity.geometry, best, fr.pose, size))
    return out


def mouth_targets(target: Video, source: Video, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """NeuralTextures: the target re-rendered with the source's mouth (smile, bounded opening change)."""
    images, lms = [], []
    for fr in target.frames:
        e = fr.expression
        best = max(source.frames, key=lambda s, e=e: abs(s.expression.smile - e.smile)).expression
        new = replace(e, smile=best.smile, open=e.open + float(np.clip(best.open - e.open, -0.15, 0.15)))
        img, lm = F.render(target.identity, target.scene, replace(fr, expression=new), size)
        images.append(img)
        lms.append(lm)
    return images, lms


@lru_cache(maxsize=32)
def _net(seed: int, name: str, checkerboard: bool) -> RandomAutoencoder:
    return RandomAutoencoder(zlib.crc32(f"{seed}/{name}".encode()), checkerboard=checkerboard)


def ff_fakes(
    cfg: SyntheticConfig,
    method: str,
    target: Video,
    reals: list[np.ndarray],
    lms: list[np.ndarray],
    sources: dict[str, list[np.ndarray]],
) -> list[M.Fake]:
    """One FF++ method's fake video of ``target`` (uncompressed)."""
    out = []
    for k, fr in enumerate(target.frames):
        s = fr.pose.scale
        rng = frame_rng(cfg.seed, target, method, k)
        jit = T.draw_jitter(rng)
        if method in FF_SWAPS:
            p = FF_SWAPS[method]
            net = _net(cfg.seed, method, p.checkerboard)
            out.append(
                M.swap(reals[k], lms[k], sources["swap"][k], sources["swap_lm"][k], s, net, p, rng, jit)
            )
        elif method == "FS":
            out.append(
                M.landmark_swap(reals[k], lms[k], sources["real"][k], sources["real_lm"][k], s, jitter=jit)
            )
        elif method == "F2F":  # the relighting's direction: one per video, jittered per frame
            seed = zlib.crc32(f"{cfg.seed}/F2F/{target.identity.texture_seed}".encode())
            out.append(M.expression_warp(reals[k], lms[k], sources["reenact"][k], s, seed=seed, jitter=jit))
        elif method == "NT":
            seed = zlib.crc32(f"{cfg.seed}/NT".encode())
            out.append(
                M.mouth_rerender(
                    reals[k], lms[k], sources["mouth"][k], sources["mouth_lm"][k], s, seed=seed, jitter=jit
                )
            )
        else:
            raise ValueError(f"unknown FF++ method {method!r}")
    return out


def standin_fakes(
    cfg: SyntheticConfig,
    stand_in: StandIn,
    kind_index: int,
    target: Video,
    reals: list[np.ndarray],
    lms: list[np.ndarray],
    sources: dict[str, list[np.ndarray]],
) -> list[M.Fake]:
    """One stand-in fake kind's video of ``target`` (uncompressed)."""
    kind = stand_in.fakes[kind_index]
    out = []
    for k, fr in enumerate(target.frames):
        s = fr.pose.scale
        rng = frame_rng(cfg.seed, target, f"{stand_in.name}/{kind.label}", k)
        jit = T.draw_jitter(rng)
        if kind.method == "swap":
            net = _net(cfg.seed, f"{stand_in.name}/{kind.label}", kind.swap.checkerboard)
            out.append(
                M.swap(
                    reals[k], lms[k], sources["swap"][k], sources["swap_lm"][k], s, net, kind.swap, rng, jit
                )
            )
        elif kind.method == "mouth":
            seed = zlib.crc32(f"{cfg.seed}/{stand_in.name}".encode())
            out.append(
                M.mouth_rerender(
                    reals[k],
                    lms[k],
                    sources["mouth"][k],
                    sources["mouth_lm"][k],
                    s,
                    block=kind.mouth_block,
                    texture=0.0,
                    seed=seed,
                    jitter=jit,
                )
            )
        else:
            raise ValueError(f"{stand_in.name}: unknown fake method {kind.method!r}")
    return out


# ---------------------------------------------------------------------------------------------- writing


def _write_frames(
    folder: Path, images: Sequence[np.ndarray], lms: Sequence[np.ndarray], nums: Sequence[int]
) -> list[str]:
    """Write RGB frames as ``NNN.png`` and their landmarks as ``.../landmarks/<video>/NNN.npy``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, lm, n in zip(images, lms, nums, strict=True):
        path = folder / f"{n:03d}.png"
        if not cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1]), PNG_PARAMS):
            raise OSError(f"could not write {path}")
        lpath = Path(landmark_path_for(str(path)))
        lpath.parent.mkdir(parents=True, exist_ok=True)
        np.save(lpath, np.asarray(lm, np.float32))
        paths.append(str(path))
    return paths


def _record(
    index: str,
    label: str,
    split: str,
    comp: str | None,
    vid: str,
    frames: list[str],
    masks: list[str] | None = None,
    clips: list[list[int]] | None = None,
) -> dict:
    out = {
        "index": index,
        "label_name": label,
        "split": split,
        "compression": comp,
        "video_id": vid,
        "frames": frames,
        "masks": masks or [],
    }
    if clips:
        out["clips"] = [list(c) for c in clips]
    return out


@dataclass
class Prepared:
    """A target video rendered, with what its fakes need from the source identity."""

    target: Video
    partner: int
    split: str
    reals: list[np.ndarray]
    lms: list[np.ndarray]
    sources: dict[str, list[np.ndarray]]
    clips: list[list[int]]


def prepare(cfg: SyntheticConfig, pool: str, i: int, needs: set[str]) -> Prepared:
    """Render video ``i`` of ``pool`` and what its fakes need (``swap``, ``real``, ``reenact``, ``mouth``)."""
    if pool == FF_NAME:
        n, nf, style, fractions = cfg.n_source_videos, cfg.frames_per_video, FF_STYLE, cfg.split_fractions
    else:
        n, nf = cfg.standin_videos, cfg.frames_standin
        style, fractions = _pool_members(cfg, pool)[0].style, cfg.standin_split_fractions
    size = cfg.image_size
    partner, split = pairing(cfg.seed, pool, n, fractions)
    j = partner[i]
    nums, clips = stored_frames(nf, cfg.clips, cfg.clip_len)
    target = make_video(cfg.seed, pool, i, nums, size, style)
    source = make_video(cfg.seed, pool, j, nums, size, style)
    reals, lms = render_video(target, size)
    sources: dict[str, list[np.ndarray]] = {}
    if "swap" in needs:
        sources["swap"], sources["swap_lm"] = render_swap_sources(source, target, size)
    if "real" in needs:
        sources["real"], sources["real_lm"] = render_video(source, size)
    if "reenact" in needs:
        sources["reenact"] = reenactment_targets(target, source, size)
    if "mouth" in needs:
        sources["mouth"], sources["mouth_lm"] = mouth_targets(target, source, size)
    return Prepared(target, j, split[i], reals, lms, sources, clips)


FF_NEEDS = {"DF": "swap", "FSh": "swap", "FS": "real", "F2F": "reenact", "NT": "mouth"}


def _ff_job(cfg: SyntheticConfig, rgb: Path, i: int) -> list[dict]:
    pr = prepare(cfg, FF_NAME, i, {FF_NEEDS[m] for m in cfg.methods})
    target, reals, lms, j = pr.target, pr.reals, pr.lms, pr.partner
    fakes = {m: ff_fakes(cfg, m, target, reals, lms, pr.sources) for m in cfg.methods}
    nums = list(target.numbers)
    vid, fid = f"{i:03d}", f"{i:03d}_{j:03d}"
    base = rgb / FF_NAME
    records = []
    mask_paths = {}
    for m in cfg.methods:
        folder = base / "manipulated_sequences" / FF_METHODS[m] / "masks" / "frames" / fid
        mask_paths[m] = _write_masks(folder, [f.mask for f in fakes[m]], nums)
    for comp, crf in (("c23", cfg.crf_c23), ("c40", cfg.crf_c40)):
        frames = h264_roundtrip(reals, crf, cfg.x264_preset)
        folder = base / "original_sequences" / "youtube" / comp / "frames" / vid
        paths = _write_frames(folder, frames, lms, nums)
        records.append(_record(FF_NAME, FF_LABELS["real"], pr.split, comp, vid, paths, clips=pr.clips))
        for m in cfg.methods:
            frames = h264_roundtrip([f.image for f in fakes[m]], crf, cfg.x264_preset)
            folder = base / "manipulated_sequences" / FF_METHODS[m] / comp / "frames" / fid
            paths = _write_frames(folder, frames, [f.landmarks for f in fakes[m]], nums)
            records.append(
                _record(FF_NAME, FF_LABELS[m], pr.split, comp, fid, paths, mask_paths[m], pr.clips)
            )
    return records


def _write_masks(folder: Path, masks: Sequence[np.ndarray], nums: Sequence[int]) -> list[str]:
    """Write grey 0/255 masks as ``NNN.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for mask, n in zip(masks, nums, strict=True):
        path = folder / f"{n:03d}.png"
        if not cv2.imwrite(str(path), mask, PNG_PARAMS):
            raise OSError(f"could not write {path}")
        paths.append(str(path))
    return paths


def video_names(cfg: SyntheticConfig, stand_in: StandIn, i: int, j: int, kind: int) -> tuple[str, str]:
    """(real id, fake id) in the naming style of the dataset a stand-in stands for."""
    naming = stand_in.naming
    if naming == "celeb":
        take = (7 * i + 3) % 10
        return f"id{i}_{take:04d}", f"id{i}_id{j}_{take:04d}"
    if naming == "dfdc":

        def name(*keys: object) -> str:
            letters = rng_for(cfg.seed, stand_in.pool_name, "name", *keys).choice(
                list(string.ascii_lowercase), 10
            )
            return "".join(letters)

        return name(i), name(i, "fake", kind)
    if naming == "dfd":
        scenes = (
            "walking_down_street",
            "kitchen_pan",
            "talking_against_wall",
            "outside_talking_still_laughing",
            "podium_speech_happy",
            "secret_conversation",
            "meeting_serious",
            "hugging_happy",
        )
        scene = scenes[i % len(scenes)]
        code = "".join(
            rng_for(cfg.seed, stand_in.pool_name, "code", i, kind).choice(list(string.ascii_uppercase), 8)
        )
        return f"{i:02d}__{scene}", f"{i:02d}_{j:02d}__{scene}__{code}"
    if naming == "ffiw":
        return f"{i:05d}", f"{i:05d}"
    return f"{i:03d}", f"{i:03d}_{j:03d}"


def _pool_members(cfg: SyntheticConfig, pool: str) -> list[StandIn]:
    return [STAND_INS[n] for n in cfg.standin_names if STAND_INS[n].pool_name == pool]


def _standin_job(cfg: SyntheticConfig, rgb: Path, pool: str, i: int) -> list[dict]:
    members = _pool_members(cfg, pool)
    lead = members[0]
    methods = {k.method for s in members for k in s.fakes}
    pr = prepare(cfg, pool, i, methods)
    target, reals, lms, j, sources = pr.target, pr.reals, pr.lms, pr.partner, pr.sources
    nums = list(target.numbers)
    records = []
    real_paths: list[str] | None = None
    for s in members:
        base = rgb / s.rgb_folder
        real_id, _ = video_names(cfg, s, i, j, 0)
        if real_paths is None:  # a pool's real videos are written once (at the lead's CRF)
            frames = h264_roundtrip(reals, lead.crf, cfg.x264_preset)
            real_paths = _write_frames(base / s.real_folder / "frames" / real_id, frames, lms, nums)
        rec = _record(s.name, s.real_label, pr.split, None, real_id, real_paths, clips=pr.clips)
        rec["folder"] = s.real_folder
        records.append(rec)
        for k, kind in enumerate(s.fakes):
            _, fake_id = video_names(cfg, s, i, j, k)
            fakes = standin_fakes(cfg, s, k, target, reals, lms, sources)
            frames = h264_roundtrip([f.image for f in fakes], s.crf, cfg.x264_preset)
            paths = _write_frames(
                base / kind.folder / "frames" / fake_id, frames, [f.landmarks for f in fakes], nums
            )
            rec = _record(s.name, kind.label, pr.split, None, fake_id, paths, clips=pr.clips)
            rec["original"], rec["folder"] = real_id, kind.folder
            records.append(rec)
    return records


def _set_threads() -> None:
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _worker_start(parent_pid: int) -> None:
    """Pool worker set-up: one thread each, and exit when the generating process dies."""
    exit_with_parent(parent_pid)
    _set_threads()


def run_job(args: tuple[SyntheticConfig, str, str, int]) -> list[dict]:
    """One job (pool, index) writing under the rgb root; returns its index records."""
    cfg, rgb, pool, i = args
    if pool == FF_NAME:
        return _ff_job(cfg, Path(rgb), i)
    return _standin_job(cfg, Path(rgb), pool, i)


def jobs(cfg: SyntheticConfig) -> list[tuple[str, int]]:
    """All (pool, index) jobs: FF++ first (the heaviest), then each stand-in pool."""
    out = [(FF_NAME, i) for i in range(cfg.n_source_videos)]
    pools = list(dict.fromkeys(STAND_INS[n].pool_name for n in cfg.standin_names))
    out += [(p, i) for i in range(cfg.standin_videos) for p in pools]
    return out


def _run_all(cfg: SyntheticConfig, rgb: Path, workers: int) -> list[dict]:
    tasks = [(cfg, str(rgb), pool, i) for pool, i in jobs(cfg)]
    if workers <= 1:
        import torch

        threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
        _set_threads()
        try:
            results = [run_job(t) for t in tasks]
        finally:
            torch.set_num_threads(threads)
            cv2.setNumThreads(cv_threads)
    else:
        with ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_worker_start, initargs=(os.getpid(),)
        ) as ex:
            results = list(ex.map(run_job, tasks, chunksize=1))
    return [r for rs in results for r in rs]


# ----------------------------------------------------------------------------------------------- indices


def _write_indices(cfg: SyntheticConfig, root: Path, records: list[dict]) -> None:
    rgb, js = root / "rgb", root / "dataset_json"
    js.mkdir(parents=True, exist_ok=True)
    by_index: dict[str, list[dict]] = {}
    for r in records:
        by_index.setdefault(r["index"], []).append(r)
    ff = _sorted(by_index.get(FF_NAME, []))
    write_index(js / f"{FF_NAME}.json", FF_NAME, ff, rgb)
    for m in cfg.methods:
        name = FF_LABELS[m]
        write_index(
            js / f"{name}.json", name, [r for r in ff if r["label_name"] in (FF_LABELS["real"], name)], rgb
        )
    for name in cfg.standin_names:
        s = STAND_INS[name]
        recs = _sorted(by_index.get(name, []))
        write_index(js / s.json_name, name, recs, rgb)
        if name.startswith("Celeb-DF"):
            lines = [
                f"{1 if r['label_name'] == s.real_label else 0} {r['folder']}/{r['video_id']}.mp4"
                for r in recs
                if r["split"] == "test"
            ]
            atomic_write_text(rgb / s.rgb_folder / "List_of_testing_videos.txt", "\n".join(lines) + "\n")
        if name == "DFDC":
            meta = {}
            for r in recs:
                entry = {"label": "REAL" if r["label_name"] == s.real_label else "FAKE", "split": r["split"]}
                if "original" in r:
                    entry["original"] = f"{r['original']}.mp4"
                meta[f"{r['video_id']}.mp4"] = entry
            atomic_write_json(rgb / s.rgb_folder / "metadata.json", meta)


def _sorted(records: Iterable[dict]) -> list[dict]:
    order = {s: k for k, s in enumerate(SPLITS)}
    return sorted(
        records, key=lambda r: (r["label_name"], order[r["split"]], r["compression"] or "", r["video_id"])
    )


# --------------------------------------------------------------------------------------------- the cache


def generate(cfg: SyntheticConfig, root: str | os.PathLike, workers: int = 1) -> None:
    """Generate the benchmark into ``root`` (``rgb/`` and ``dataset_json/``); no marker, no rename."""
    root = Path(root)
    rgb = root / "rgb"
    rgb.mkdir(parents=True, exist_ok=True)
    records = _run_all(cfg, rgb, workers)
    _write_indices(cfg, root, records)


def cache_folder(cache_dir: str | os.PathLike, cfg: SyntheticConfig) -> Path:
    """Where ``cfg``'s benchmark lives under ``cache_dir``."""
    return Path(cache_dir) / f"synthetic-{cfg.key()}"


def ensure_synthetic(
    cache_dir: str | os.PathLike, cfg: SyntheticConfig | dict | None = None, workers: int | None = None
) -> Path:
    """Return the data root of ``cfg``'s benchmark under ``cache_dir``, generating it if not cached.

    The root (``cache_dir/synthetic-<hash of the parameters and GENERATOR_VERSION>``) holds ``rgb/`` (the
    frame root the index paths are relative to) and ``dataset_json/``. Generation goes to a temporary
    folder beside it, renamed into place after the completion marker is written: an interrupted run never
    leaves a set that looks complete. ``workers`` processes (default ``min(2, cores)``; 1: in-process) are
    started with ``spawn``, so a script calling this must guard its entry point with
    ``if __name__ == "__main__"``. The output does not depend on ``workers``.
    """
    if cfg is None:
        cfg = SyntheticConfig()
    elif not isinstance(cfg, SyntheticConfig):
        cfg = SyntheticConfig(**dict(cfg))
    final = cache_folder(cache_dir, cfg)
    if (final / MARKER).is_file():
        return final
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_scratch(final.parent, f".{final.name}.tmp-"):
        log.info("removed %s, left by an interrupted generation", stale)
    tmp = make_scratch_dir(final.parent, f".{final.name}.tmp-")
    try:
        os.chmod(tmp, 0o755)
        start = time.perf_counter()
        log.info("generating the synthetic benchmark into %s (workers=%d)", final, workers)
        generate(cfg, tmp, workers)
        atomic_write_json(tmp / MARKER, {"version": GENERATOR_VERSION, "params": cfg.as_dict()})
        if final.exists() and not (final / MARKER).is_file():
            shutil.rmtree(final)  # a leftover without marker is never complete
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MARKER).is_file():
                raise
            log.info("another process finished %s first; using it", final)
        log.info("synthetic benchmark ready in %.1f s: %s", time.perf_counter() - start, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
