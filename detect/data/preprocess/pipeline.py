"""Per-video preprocessing jobs, the process pool, resumability, the index and the summary.

One job per video: read N evenly spaced frames -> detect the largest face -> landmarks -> crop
(x1.3 square, 256 x 256) -> ``frames/<video>/<NNN>.png``, ``landmarks/<video>/<NNN>.npy`` and, where
the dataset has mask videos, ``masks/<video>/<NNN>.png`` (NNN: the frame's index in the video).
With ``clips=K clip_len=L`` the frames are instead K clips of L consecutive frames, each clip cropped
with one box (:mod:`detect.data.preprocess.clips`), and the index lists the clips beside the frames.
A finished video gets a small state file (written atomically, last) under
``<output_dir>/preprocess_state/``; a later run skips every video whose state matches the current
settings and whose files exist. Videos that cannot be read, or show no face in any sampled frame,
are listed in the summary (``<output_dir>/preprocess_summary.json``), as are frames without a face.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from tqdm import tqdm

from detect.data.index import resolve_frame_path, write_index
from detect.data.preprocess.clips import clip_frames, clip_starts, track_face, union_box
from detect.data.preprocess.crop import CROP_MODES, apply_affine, box_matrix, crop_matrix, warp
from detect.data.preprocess.face_detection import (
    FaceModelConfig,
    FaceModels,
    LandmarkPredictor,
    build_face_models,
    largest_face,
)
from detect.data.preprocess.layout import (
    FF_METHODS,
    FF_NAMES,
    FF_REAL,
    Layout,
    LayoutOptions,
    VideoEntry,
    assign_splits,
    discover,
    ratio_split,
)
from detect.data.preprocess.video import BACKENDS, VideoReadError, count_frames, read_frames, read_sampled
from detect.utils.io import atomic_write_json

log = logging.getLogger(__name__)

STATE_VERSION = 1
STATE_DIR = "preprocess_state"
SUMMARY_FILE = "preprocess_summary.json"
LANDMARK_DTYPES = ("int64", "float32")


# ---------------------------------------------------------------- settings and jobs


@dataclass(frozen=True)
class Settings:
    """Everything that decides a video's outputs (picklable: sent to every worker)."""

    num_frames: int | None = 32
    video_backend: str = "pyav"
    faces: FaceModelConfig = field(default_factory=FaceModelConfig)
    crop_mode: str = "box"
    crop_scale: float = 1.3
    crop_size: int = 256
    mask_threshold: int = 1
    landmark_dtype: str = "int64"
    clips: int | None = None
    clip_len: int = 32

    def validate(self) -> None:
        if self.clips is not None:
            if int(self.clips) < 1 or int(self.clip_len) < 1:
                raise ValueError(f"clips={self.clips} clip_len={self.clip_len}: both must be at least 1")
            if self.crop_mode != "box":
                raise ValueError(
                    f"clips need crop.mode=box (one box per clip); crop.mode={self.crop_mode!r} aligns "
                    "every frame on its own landmarks"
                )
        if self.video_backend not in BACKENDS:
            raise ValueError(f"video_backend={self.video_backend!r}: use one of {BACKENDS}")
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"crop.mode={self.crop_mode!r}: use one of {CROP_MODES}")
        if self.crop_scale < 1.0 or self.crop_size < 8:
            raise ValueError(
                f"crop.scale must be >= 1 and crop.size >= 8 (got {self.crop_scale}, {self.crop_size})"
            )
        if self.landmark_dtype not in LANDMARK_DTYPES:
            raise ValueError(f"landmarks.dtype={self.landmark_dtype!r}: use one of {LANDMARK_DTYPES}")
        self.faces.check()
        if self.crop_mode == "align":
            n = LandmarkPredictor(self.faces.resolved_predictor_path()).num_points
            if n < 68:
                raise ValueError(
                    "crop.mode=align needs a 68- or 81-point predictor; "
                    f"landmarks.predictor_path has {n} points"
                )

    def fingerprint(self) -> dict:
        """The settings a finished video's state must match to be skipped on a later run."""
        pred = self.faces.resolved_predictor_path()
        faces = asdict(self.faces)
        faces["predictor_path"] = f"{pred.name}:{pred.stat().st_size if pred.is_file() else 0}"
        out = asdict(self)
        out.pop("video_backend")
        out["faces"] = faces
        if self.clips is None:
            out.pop("clips")
            out.pop("clip_len")
            out["frame_rule"] = "floor(linspace(0, n-1, num_frames))"
        else:
            out.pop("num_frames")
            out["frame_rule"] = (
                "clips: floor(linspace(0, n-clip_len, clips)) + 0..clip_len-1, one box per clip"
            )
        return json.loads(json.dumps(out))


@dataclass(frozen=True)
class VideoJob:
    """One video, its split, and where its outputs and state go."""

    entry: VideoEntry
    split: str
    out_dir: str
    state_path: str

    def folder(self, kind: str) -> Path:
        return Path(self.out_dir) / kind / self.entry.video_id


@dataclass
class VideoResult:
    """What became of one video."""

    job: VideoJob
    status: str  # ok | no_face | unreadable | error
    resumed: bool = False
    n_total: int = 0
    sampled: list[int] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    no_face_frames: list[int] = field(default_factory=list)
    missing_frames: list[int] = field(default_factory=list)
    mask_note: str | None = None
    error: str | None = None
    landmark_points: int | None = None
    clips: list[list[int]] = field(default_factory=list)


# ---------------------------------------------------------------- one video


def _frame_name(i: int) -> str:
    return f"{i:03d}"


def _clear_outputs(job: VideoJob) -> None:
    """Remove a previous run's numbered files of this video (nothing else)."""
    for kind, ext in (("frames", ".png"), ("landmarks", ".npy"), ("masks", ".png")):
        folder = job.folder(kind)
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.is_file() and f.suffix == ext and f.stem.isdigit():
                f.unlink()


def _mask_frames(
    job: VideoJob, wanted: list[int], settings: Settings
) -> tuple[dict[int, np.ndarray], str | None]:
    path = job.entry.mask_path
    if not path:
        return {}, None
    try:
        n = count_frames(path, settings.video_backend)
        got = read_frames(path, [i for i in wanted if i < n], n, settings.video_backend)
    except VideoReadError as err:
        return {}, f"mask video unreadable: {err}"
    missing = [i for i in wanted if i not in got.frames]
    note = f"mask video {path} lacks frames {missing}" if missing else None
    return got.frames, note


def process_video(job: VideoJob, settings: Settings, models: FaceModels) -> VideoResult:
    """Sample, detect, crop and write one video; write its state file last."""
    if settings.clips is not None:
        return process_video_clips(job, settings, models)
    video = job.entry.path
    try:
        sampled = read_sampled(video, settings.num_frames, settings.video_backend)
    except VideoReadError as err:
        return VideoResult(job, "unreadable", error=str(err))
    result = VideoResult(
        job, "ok", n_total=sampled.n_total, sampled=list(sampled.wanted), missing_frames=sampled.missing
    )
    masks, result.mask_note = _mask_frames(job, sampled.wanted, settings)
    _clear_outputs(job)
    records: dict[str, dict] = {}
    size = settings.crop_size
    for i in sorted(sampled.frames):
        rgb = sampled.frames[i]
        det = largest_face(models.detector.detect(rgb))
        if det is None:
            result.no_face_frames.append(i)
            continue
        landmarks = models.predictor.predict(rgb, det.box)
        result.landmark_points = len(landmarks)
        matrix = crop_matrix(settings.crop_mode, det.box, landmarks, settings.crop_scale, size)
        records[_frame_name(i)] = _write_frame(job, settings, result, i, rgb, masks.get(i), matrix, landmarks)
        records[_frame_name(i)].update(box=[round(v, 2) for v in det.box], score=round(det.score, 4))
    if not result.frames:
        result.status = "no_face"
    _write_state(job, settings, result, records)
    return result


def _write_frame(
    job: VideoJob,
    settings: Settings,
    result: VideoResult,
    i: int,
    rgb: np.ndarray,
    mask: np.ndarray | None,
    matrix: np.ndarray,
    landmarks: np.ndarray,
) -> dict:
    """Crop frame ``i`` (and its mask) with ``matrix``, write the PNG, landmarks and mask; returns the
    frame's state record (its matrix)."""
    size = settings.crop_size
    face = warp(rgb, matrix, size)
    points = apply_affine(matrix, landmarks)
    points = (
        np.rint(points).astype(np.int64) if settings.landmark_dtype == "int64" else points.astype(np.float32)
    )
    name = _frame_name(i)
    png = job.folder("frames") / f"{name}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), cv2.cvtColor(face, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {png}")
    npy = job.folder("landmarks") / f"{name}.npy"
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, points)
    result.frames.append(str(png))
    if mask is not None:
        gray = cv2.cvtColor(mask, cv2.COLOR_RGB2GRAY)
        crop = warp(gray, matrix, size)
        binary = np.where(crop > settings.mask_threshold, 255, 0).astype(np.uint8)
        mpng = job.folder("masks") / f"{name}.png"
        mpng.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(mpng), binary):
            raise OSError(f"could not write {mpng}")
        result.masks.append(str(mpng))
    return {"matrix": np.round(matrix, 6).tolist()}


def process_video_clips(job: VideoJob, settings: Settings, models: FaceModels) -> VideoResult:
    """``clips`` clips of ``clip_len`` consecutive frames, each cropped with one box: ``crop_scale`` x the
    union of the tracked face's boxes over the clip (grown to hold the clip's landmarks). A clip with a
    frame the decoder did not deliver or without a face is dropped (its frames are reported)."""
    video, length = job.entry.path, int(settings.clip_len)
    try:
        n_total = count_frames(video, settings.video_backend)
        if n_total <= 0:
            raise VideoReadError(f"video has no frames: {video}")
        starts = clip_starts(n_total, int(settings.clips), length)
        if not starts:
            raise VideoReadError(f"{video} has {n_total} frames, fewer than one clip (clip_len={length})")
        planned = clip_frames(starts, length)
        sampled = read_frames(video, [i for c in planned for i in c], n_total, settings.video_backend)
    except VideoReadError as err:
        return VideoResult(job, "unreadable", error=str(err))
    result = VideoResult(
        job, "ok", n_total=n_total, sampled=list(sampled.wanted), missing_frames=sampled.missing
    )
    masks, result.mask_note = _mask_frames(job, sampled.wanted, settings)
    _clear_outputs(job)
    records: dict[str, dict] = {}
    for k, frames in enumerate(planned):
        if any(i not in sampled.frames for i in frames):
            continue  # listed under missing_frames
        faces = track_face([models.detector.detect(sampled.frames[i]) for i in frames])
        lost = [i for i, det in zip(frames, faces, strict=True) if det is None]
        if lost:
            result.no_face_frames.extend(lost)
            continue
        landmarks = [
            models.predictor.predict(sampled.frames[i], d.box) for i, d in zip(frames, faces, strict=True)
        ]
        result.landmark_points = len(landmarks[0])
        box = union_box([d.box for d in faces])
        matrix = box_matrix(box, settings.crop_scale, settings.crop_size, np.concatenate(landmarks))
        for i, det, lms in zip(frames, faces, landmarks, strict=True):
            rec = _write_frame(job, settings, result, i, sampled.frames[i], masks.get(i), matrix, lms)
            rec.update(box=[round(v, 2) for v in det.box], score=round(det.score, 4), clip=k)
            records[_frame_name(i)] = rec
        result.clips.append(list(frames))
    if not result.frames:
        result.status = "no_face"
    _write_state(job, settings, result, records)
    return result


def _write_state(job: VideoJob, settings: Settings, result: VideoResult, records: dict) -> None:
    state = {
        "version": STATE_VERSION,
        "fingerprint": settings.fingerprint(),
        "video": job.entry.path,
        "mask_video": job.entry.mask_path,
        "status": result.status,
        "n_total": result.n_total,
        "sampled": result.sampled,
        "missing_frames": result.missing_frames,
        "no_face_frames": result.no_face_frames,
        "mask_note": result.mask_note,
        "landmark_points": result.landmark_points,
        "frames": records,
        "masks": [Path(m).stem for m in result.masks],
        "clips": result.clips,
    }
    atomic_write_json(job.state_path, state)


def load_done(job: VideoJob, fingerprint: dict) -> VideoResult | None:
    """The recorded result of a finished video, if its state matches and its files exist."""
    try:
        state = json.loads(Path(job.state_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        state.get("version") != STATE_VERSION
        or state.get("fingerprint") != fingerprint
        or state.get("mask_video") != job.entry.mask_path
        or state.get("status") not in ("ok", "no_face")
    ):
        return None
    names = sorted(state.get("frames", {}), key=int)
    frames = [str(job.folder("frames") / f"{n}.png") for n in names]
    lms = [str(job.folder("landmarks") / f"{n}.npy") for n in names]
    masks = [str(job.folder("masks") / f"{n}.png") for n in state.get("masks", [])]
    if not all(os.path.isfile(p) for p in (*frames, *lms, *masks)):
        return None
    return VideoResult(
        job,
        state["status"],
        resumed=True,
        n_total=state.get("n_total", 0),
        sampled=state.get("sampled", []),
        frames=frames,
        masks=masks,
        no_face_frames=state.get("no_face_frames", []),
        missing_frames=state.get("missing_frames", []),
        mask_note=state.get("mask_note"),
        landmark_points=state.get("landmark_points"),
        clips=[[int(i) for i in c] for c in state.get("clips") or []],
    )


# ---------------------------------------------------------------- the pool

_WORKER_MODELS: FaceModels | None = None


def _init_worker(faces: FaceModelConfig, threads: int) -> None:
    """Load the detector and predictor once per worker process."""
    global _WORKER_MODELS
    cv2.setNumThreads(max(int(threads), 1))
    if faces.detector == "mtcnn":
        import torch

        torch.set_num_threads(max(int(threads), 1))
    _WORKER_MODELS = build_face_models(faces)


def _worker_job(job: VideoJob, settings: Settings) -> VideoResult:
    assert _WORKER_MODELS is not None, "worker not initialised"
    return _guarded(job, settings, _WORKER_MODELS)


def _guarded(job: VideoJob, settings: Settings, models: FaceModels) -> VideoResult:
    try:
        return process_video(job, settings, models)
    except Exception as err:  # reported in the summary, never dropped
        return VideoResult(job, "error", error=f"{type(err).__name__}: {err}")


def run_jobs(
    jobs: Sequence[VideoJob],
    settings: Settings,
    workers: int,
    start_method: str = "spawn",
    threads_per_worker: int = 1,
    progress: bool = True,
    initial: int = 0,
    desc: str = "preprocess",
) -> list[VideoResult]:
    """Process ``jobs`` in ``workers`` processes (0: in this process), in the order given."""
    bar = tqdm(total=initial + len(jobs), initial=initial, desc=desc, unit="video", disable=not progress)
    results: list[VideoResult | None] = [None] * len(jobs)
    try:
        if workers <= 0 or not jobs:
            models = build_face_models(settings.faces) if jobs else None
            for k, job in enumerate(jobs):
                results[k] = _guarded(job, settings, models)
                bar.update()
        else:
            ctx = multiprocessing.get_context(start_method)
            with ProcessPoolExecutor(
                max_workers=min(workers, len(jobs)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(settings.faces, threads_per_worker),
            ) as pool:
                futures = {pool.submit(_worker_job, job, settings): k for k, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    k = futures[fut]
                    try:
                        results[k] = fut.result()
                    except Exception as err:  # a worker died (e.g. BrokenProcessPool)
                        results[k] = VideoResult(jobs[k], "error", error=f"{type(err).__name__}: {err}")
                    bar.update()
    finally:
        bar.close()
    return [r for r in results if r is not None]


# ---------------------------------------------------------------- the whole run


@dataclass
class PreprocessConfig:
    """The parsed ``conf/preprocess.yaml`` (see there for each key)."""

    dataset_name: str
    labels: dict[str, str]
    index_compression: bool
    input_dir: str
    output_dir: str
    layout: LayoutOptions
    split_mode: str
    split_ratios: tuple[float, float, float]
    split_seed: int
    settings: Settings
    workers: int
    start_method: str
    threads_per_worker: int
    per_manipulation_index: bool
    progress: bool

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> PreprocessConfig:
        ds = cfg.get("dataset")
        if isinstance(ds, str):
            ds = {"name": ds}
        if not isinstance(ds, Mapping) or not ds.get("name"):
            raise ValueError("the config needs a dataset (dataset=<option> on the command line)")
        labels = {
            str(k): str(v["domain"]) if isinstance(v, Mapping) else str(v)
            for k, v in (ds.get("labels") or {}).items()
        }
        for key in ("input_dir", "output_dir"):
            if not cfg.get(key):
                raise ValueError(f"missing {key}= (where the raw videos are / where outputs go)")
        compressions = cfg.get("compressions")
        if compressions is None:
            compressions = [ds.get("compression") or "c23"]
        elif isinstance(compressions, str):
            compressions = [compressions]
        if ds.get("compression") is None and len(compressions) > 1:
            raise ValueError(
                f"dataset.compression is null, so the index has no compression level: give one compression "
                f"(compressions=[c23]), not {list(compressions)}"
            )
        manip = ds.get("manipulations")
        det = dict(cfg.get("detector") or {})
        lm = dict(cfg.get("landmarks") or {})
        crop = dict(cfg.get("crop") or {})
        split = dict(cfg.get("split") or {})
        faces = FaceModelConfig(
            detector=str(det.get("name", "dlib")),
            upsample=int(det.get("upsample", 1)),
            min_score=float(det.get("min_score", 0.0)),
            cnn_model_path=det.get("cnn_model_path"),
            mtcnn_device=str(det.get("mtcnn_device", "cpu")),
            mtcnn_min_prob=float(det.get("mtcnn_min_prob", 0.9)),
            mtcnn_min_face_size=int(det.get("mtcnn_min_face_size", 20)),
            predictor_path=lm.get("predictor_path"),
        )
        num_frames = cfg.get("num_frames", 32)
        workers = cfg.get("workers")
        return cls(
            dataset_name=str(ds["name"]),
            labels=labels,
            index_compression=ds.get("compression") is not None,
            input_dir=str(cfg["input_dir"]),
            output_dir=str(cfg["output_dir"]),
            layout=LayoutOptions(
                compressions=tuple(str(c) for c in compressions),
                manipulations=None if manip is None else tuple(str(m) for m in manip),
                labels=labels,
                splits_dir=cfg.get("splits_dir"),
                test_list=cfg.get("test_list"),
                folders=dict(cfg.get("folders") or {}),
                masks=bool(cfg.get("masks", True)),
            ),
            split_mode=str(split.get("mode", "auto")),
            split_ratios=tuple(float(r) for r in split.get("ratios", (0.8, 0.1, 0.1))),
            split_seed=int(split.get("seed", 0)),
            settings=Settings(
                num_frames=None if num_frames is None else int(num_frames),
                video_backend=str(cfg.get("video_backend", "pyav")),
                faces=faces,
                crop_mode=str(crop.get("mode", "box")),
                crop_scale=float(crop.get("scale", 1.3)),
                crop_size=int(crop.get("size", 256)),
                mask_threshold=int(cfg.get("mask_threshold", 1)),
                landmark_dtype=str(lm.get("dtype", "int64")),
                clips=None if cfg.get("clips") is None else int(cfg["clips"]),
                clip_len=int(cfg.get("clip_len", 32)),
            ),
            workers=(os.cpu_count() or 1) if workers is None else int(workers),
            start_method=str(cfg.get("start_method", "spawn")),
            threads_per_worker=int(cfg.get("threads_per_worker", 1)),
            per_manipulation_index=bool(cfg.get("per_manipulation_index", True)),
            progress=bool(cfg.get("progress", True)),
        )


def make_jobs(cfg: PreprocessConfig, entries: Sequence[VideoEntry]) -> list[VideoJob]:
    """One job per entry: outputs under ``rgb/<Dataset>/<rel_dir>``, state under ``preprocess_state``."""
    out = Path(cfg.output_dir)
    jobs = []
    for e in entries:
        rel = PurePosixPath(e.rel_dir)
        jobs.append(
            VideoJob(
                entry=e,
                split=str(e.official_split),
                out_dir=str(out / "rgb" / cfg.dataset_name / rel),
                state_path=str(out / STATE_DIR / cfg.dataset_name / rel / f"{e.video_id}.json"),
            )
        )
    return jobs


def redraw_ratio_splits(
    results: Sequence[VideoResult], ratios: Sequence[float], seed: int
) -> list[VideoResult]:
    """Ratio splits drawn over the videos that gave face crops only, so a failed video takes no split's
    slot (a split cannot end up empty because its videos failed)."""
    ok = [r for r in results if r.status == "ok"]
    drawn = iter(ratio_split([r.job.entry for r in ok], ratios, seed))
    out = []
    for r in results:
        if r.status == "ok":
            r = dataclasses.replace(r, job=dataclasses.replace(r.job, split=str(next(drawn).official_split)))
        out.append(r)
    return out


def run_preprocess(cfg: Mapping | PreprocessConfig) -> dict:
    """Preprocess one dataset end to end; returns the summary (also printed and written to JSON)."""
    pc = cfg if isinstance(cfg, PreprocessConfig) else PreprocessConfig.from_mapping(cfg)
    pc.settings.validate()
    layout = discover(pc.dataset_name, pc.input_dir, pc.layout)
    assigned, outside, mode = assign_splits(layout, pc.split_mode, pc.split_ratios, pc.split_seed)
    jobs = make_jobs(pc, assigned)
    fingerprint = pc.settings.fingerprint()
    done: dict[int, VideoResult] = {}
    for k, job in enumerate(jobs):
        res = load_done(job, fingerprint)
        if res is not None:
            done[k] = res
    todo = [k for k in range(len(jobs)) if k not in done]
    log.info(
        "%s: %d videos, %d already done, %d to process", pc.dataset_name, len(jobs), len(done), len(todo)
    )
    ran = run_jobs(
        [jobs[k] for k in todo],
        pc.settings,
        pc.workers,
        pc.start_method,
        pc.threads_per_worker,
        pc.progress,
        initial=len(done),
        desc=pc.dataset_name,
    )
    results = [done.get(k) for k in range(len(jobs))]
    for k, res in zip(todo, ran, strict=True):
        results[k] = res
    if mode == "ratio":
        results = redraw_ratio_splits(results, pc.split_ratios, pc.split_seed)
    index_path = write_dataset_index(pc, layout, jobs, results)
    rgb_dir = Path(pc.output_dir) / "rgb" / pc.dataset_name
    for name, src in layout.copy_files.items():
        rgb_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, rgb_dir / name)
    summary = build_summary(pc, layout, mode, results, outside, index_path)
    write_summary(Path(pc.output_dir) / SUMMARY_FILE, pc.dataset_name, summary)
    print(format_summary(summary))
    if summary["counts"]["indexed"] == 0:
        raise RuntimeError(f"{pc.dataset_name}: no video yielded a face crop; see {summary['summary_file']}")
    return summary


# ---------------------------------------------------------------- index


def _index_videos(results: Sequence[VideoResult], with_compression: bool) -> list[dict]:
    out = []
    for r in results:
        if r.status != "ok":
            continue
        e = r.job.entry
        out.append(
            {
                "label_name": e.label_name,
                "split": r.job.split,
                "compression": e.compression if with_compression else None,
                "video_id": e.video_id,
                "frames": r.frames,
                "masks": r.masks,
                "clips": r.clips,
            }
        )
    return out


def _read_existing(path: Path, dataset: str, root: str, with_compression: bool) -> list[dict]:
    """The videos an existing index lists (frame paths made absolute against ``root``)."""
    if not path.is_file():
        return []
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))[dataset]
        videos = []
        for label, by_split in tree.items():
            for split, node in by_split.items():
                nodes = node.items() if with_compression else [(None, node)]
                for comp, vids in nodes:
                    for vid, v in vids.items():
                        videos.append(
                            {
                                "label_name": label,
                                "split": split,
                                "compression": comp,
                                "video_id": vid,
                                "frames": [resolve_frame_path(f, root) for f in v["frames"]],
                                "masks": [resolve_frame_path(m, root) for m in v.get("masks") or []],
                                "clips": v.get("clips") or [],
                            }
                        )
        return videos
    except (ValueError, KeyError, AttributeError, TypeError) as err:
        raise ValueError(
            f"cannot merge into the existing index {path} ({type(err).__name__}: {err}); its hierarchy does "
            "not match this dataset's (compression level?). Move it away and run again."
        ) from err


def write_dataset_index(
    pc: PreprocessConfig, layout: Layout, jobs: Sequence[VideoJob], results: Sequence[VideoResult]
) -> str:
    """Write ``dataset_json/<Dataset>.json``, merged with what an earlier run indexed for other videos."""
    out = Path(pc.output_dir)
    root = str(out / "rgb")
    path = out / "dataset_json" / f"{pc.dataset_name}.json"
    wc = pc.index_compression
    touched = {(j.entry.label_name, j.entry.compression if wc else None, j.entry.video_id) for j in jobs}
    kept = [
        v
        for v in _read_existing(path, pc.dataset_name, root, wc)
        if (v["label_name"], v["compression"], v["video_id"]) not in touched
    ]
    videos = kept + _index_videos(results, wc)
    write_index(path, pc.dataset_name, videos, root)
    if pc.per_manipulation_index and pc.dataset_name in FF_NAMES:
        reals = [v for v in videos if v["label_name"] == FF_REAL]
        for label in FF_METHODS.values():
            fakes = [v for v in videos if v["label_name"] == label]
            if fakes:
                write_index(out / "dataset_json" / f"{label}.json", label, reals + fakes, root)
    return str(path)


# ---------------------------------------------------------------- summary


def build_summary(
    pc: PreprocessConfig,
    layout: Layout,
    mode: str,
    results: Sequence[VideoResult],
    outside: Sequence[VideoEntry],
    index_path: str,
) -> dict:
    """Counts, and every video or frame that did not give a face crop."""
    by = {s: [r for r in results if r.status == s] for s in ("ok", "no_face", "unreadable", "error")}
    no_face_frames = {
        r.job.entry.path: {"frames": r.no_face_frames, "of": len(r.sampled)}
        for r in by["ok"]
        if r.no_face_frames
    }
    return {
        "dataset": pc.dataset_name,
        "input_dir": pc.input_dir,
        "output_dir": pc.output_dir,
        "index": index_path,
        "summary_file": str(Path(pc.output_dir) / SUMMARY_FILE),
        "split_mode": mode,
        "settings": pc.settings.fingerprint(),
        "counts": {
            "videos": len(results),
            "resumed": sum(r.resumed for r in results),
            "processed": sum(not r.resumed for r in results),
            "indexed": len(by["ok"]),
            "frames": sum(len(r.frames) for r in by["ok"]),
            "clips": sum(len(r.clips) for r in by["ok"]),
            "no_face": len(by["no_face"]),
            "unreadable": len(by["unreadable"]),
            "errors": len(by["error"]),
            "frames_without_face": sum(len(v["frames"]) for v in no_face_frames.values()),
            "outside_split": len(outside),
        },
        "no_face_videos": [r.job.entry.path for r in by["no_face"]],
        "unreadable_videos": [{"video": r.job.entry.path, "error": r.error} for r in by["unreadable"]],
        "error_videos": [{"video": r.job.entry.path, "error": r.error} for r in by["error"]],
        "frames_without_face": no_face_frames,
        "missing_frames": {r.job.entry.path: r.missing_frames for r in results if r.missing_frames},
        "mask_problems": {r.job.entry.path: r.mask_note for r in results if r.mask_note},
        "outside_split": [e.path for e in outside],
        "missing_inputs": list(layout.missing),
        "notes": list(layout.notes),
    }


def write_summary(path: Path, dataset: str, summary: dict) -> None:
    """Store the summary under its dataset's key (other datasets' summaries in the file are kept)."""
    data: dict = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data[dataset] = summary
    atomic_write_json(path, data)


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = "".join(f"\n    {x}" for x in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return shown + more


def format_summary(s: dict) -> str:
    """A short human-readable report of the summary."""
    c = s["counts"]
    lines = [
        f"[preprocess] {s['dataset']}: {c['videos']} videos ({c['resumed']} already done, {c['processed']} "
        f"processed), split mode {s['split_mode']}",
        f"  indexed {c['indexed']} videos / {c['frames']} frames -> {s['index']}",
    ]
    if s["no_face_videos"]:
        lines.append(
            f"  NO FACE in any sampled frame ({len(s['no_face_videos'])}):" + _listing(s["no_face_videos"])
        )
    if s["unreadable_videos"]:
        items = [v["error"] for v in s["unreadable_videos"]]  # the message names the file
        lines.append(f"  UNREADABLE ({len(items)}):" + _listing(items))
    if s["error_videos"]:
        items = [f"{v['video']}: {v['error']}" for v in s["error_videos"]]
        lines.append(f"  FAILED ({len(items)}):" + _listing(items))
    if s["frames_without_face"]:
        items = [f"{k}: {len(v['frames'])} of {v['of']}" for k, v in s["frames_without_face"].items()]
        lines.append(
            f"  frames without a face ({c['frames_without_face']} in {len(items)} videos):" + _listing(items)
        )
    if s["missing_frames"]:
        lines.append(
            f"  videos shorter than their frame count ({len(s['missing_frames'])}):"
            + _listing(list(s["missing_frames"]))
        )
    if s["mask_problems"]:
        lines.append(
            f"  mask problems ({len(s['mask_problems'])}):" + _listing(list(s["mask_problems"].values()))
        )
    if s["outside_split"]:
        lines.append(
            f"  not in the official split, skipped ({len(s['outside_split'])}):"
            + _listing(s["outside_split"])
        )
    if s["notes"]:
        lines.append(f"  notes ({len(s['notes'])}):" + _listing(s["notes"], 5))
    lines.append(f"  summary: {s['summary_file']}")
    return "\n".join(lines)
