"""``predict.py``: score every face of every input with a checkpoint and write the CSVs.

Outputs in ``out_dir``: ``predictions.csv`` (one row per face: path, frame, face, x0, y0, x1, y1, score),
``videos.csv`` (one row per scored input: path, kind, score, n_frames, n_faces, n_frames_with_face,
aggregate), ``failures.csv`` (every input that was unreadable or had no face: path, reason, detail;
always written, empty when nothing failed), ``summary.json``, and with ``visualize=true`` an annotated
MP4 per video and PNG per image under ``visualized/`` (``visualize_cam=true`` adds each face's Grad-CAM
heat map, :mod:`detect.inference.class_activation`). A failing input never stops the others. A clip
detector's rows are clips instead of faces (:mod:`detect.inference.clip_prediction`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from detect.data.preprocess.face_detection import build_face_models
from detect.engine.runtime import setup_runtime
from detect.inference.aggregate import aggregate_scores
from detect.inference.clip_prediction import CLIP_AGGREGATE, predict_clip_sources
from detect.inference.face_sampling import FACE_MODES, UnreadableInput, faces_of, sample_input
from detect.inference.face_scoring import BatchScorer
from detect.inference.load import LoadedDetector, load_detector
from detect.inference.predict_result import FAILURE_COLUMNS, PredictResult, face_models_config
from detect.inference.sources import Source, find_sources
from detect.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

FACE_COLUMNS = ["path", "frame", "face", "x0", "y0", "x1", "y1", "score"]
VIDEO_COLUMNS = ["path", "kind", "score", "n_frames", "n_faces", "n_frames_with_face", "aggregate"]


def predict_sources(
    detector: LoadedDetector,
    sources: list[Source],
    cfg: DictConfig,
    runtime,
    visualize_dir: Path | None = None,
) -> PredictResult:
    """Sample, detect, crop and score every source; failures are collected, never raised. A clip detector
    (a method declaring ``clip_len``) is scored per clip (:mod:`detect.inference.clip_prediction`)."""
    if getattr(detector.method, "clip_len", None) is not None:
        return predict_clip_sources(detector, sources, cfg, runtime, visualize_dir)
    mode = str(cfg.faces)
    if mode not in FACE_MODES:
        raise ValueError(f"faces={mode!r}; use one of {FACE_MODES}")
    cam = bool(cfg.get("visualize_cam", False))
    if cam and visualize_dir is None:
        raise ValueError("visualize_cam=true draws on the annotated outputs: add visualize=true")
    models = None if mode == "crops" else build_face_models(face_models_config(cfg.detector))
    scorer = BatchScorer(detector.method, detector.pipeline, runtime, int(cfg.batch_size))
    rows: list[dict] = []
    per_input: list[tuple[Source, int, list[dict], dict, list]] = []
    failures: list[dict] = []
    t_faces = 0.0
    t0 = time.perf_counter()
    bar = tqdm(sources, desc="predict", disable=not cfg.progress)
    for source in bar:
        t = time.perf_counter()
        try:
            sampled = sample_input(source, cfg.frames, str(cfg.video_backend))
        except UnreadableInput as err:
            failures.append({"path": source.path, "reason": "unreadable", "detail": str(err)})
            continue
        mine: list[dict] = []
        kept: list[tuple] = []  # (crop, matrix) per face, for the heat maps
        for face in faces_of(sampled, mode, detector.crop, models):
            x0, y0, x1, y1 = face.box
            row = {"path": source.path, "frame": face.frame, "face": face.face}
            row.update({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "score": float("nan")})
            rows.append(row)
            mine.append(row)
            scorer.add(face.crop, lambda p, row=row: row.__setitem__("score", p))
            if cam:
                kept.append((face.crop, face.matrix))
        t_faces += time.perf_counter() - t
        if not mine:
            failures.append(
                {
                    "path": source.path,
                    "reason": "no_face",
                    "detail": f"no face in any of {len(sampled.frames)} sampled frame(s)",
                }
            )
            continue
        frames = sampled.frames if visualize_dir is not None else {}
        per_input.append((source, len(sampled.frames), mine, frames, kept))
    scorer.flush()
    wall = time.perf_counter() - t0
    faces = pd.DataFrame(rows, columns=FACE_COLUMNS)
    videos = []
    for source, n_frames, mine, frames, kept in per_input:
        table = pd.DataFrame(mine, columns=FACE_COLUMNS)
        videos.append(
            {
                "path": source.path,
                "kind": source.kind,
                "score": aggregate_scores(table, detector.aggregate),
                "n_frames": n_frames,
                "n_faces": len(table),
                "n_frames_with_face": int(table["frame"].nunique()),
                "aggregate": detector.aggregate,
            }
        )
        if visualize_dir is not None:
            from detect.inference.visualize import write_annotated

            heats = None
            if cam:
                from detect.inference.class_activation import heat_maps

                maps = heat_maps(
                    detector.method, detector.pipeline, [c for c, _ in kept], int(cfg.batch_size)
                )
                heats = [(m, matrix) for m, (_, matrix) in zip(maps, kept, strict=True)]
            fps = float(cfg.get("visualize_fps", 4))
            write_annotated(source, frames, table, visualize_dir, fps, heats)
    result = PredictResult(
        faces,
        pd.DataFrame(videos, columns=VIDEO_COLUMNS),
        pd.DataFrame(failures, columns=FAILURE_COLUMNS),
        {"wall_s": wall, "faces_s": t_faces, "n_faces": len(faces)},
    )
    return result


def format_table(result: PredictResult, limit: int = 50) -> str:
    """The printed summary: one line per scored input, then the failures."""
    unit = "clips" if "n_clips" in result.videos.columns else "faces"
    lines = [f"{'score':>7}  {'frames':>6}  {unit:>5}  path"]
    for r in result.videos.head(limit).itertuples():
        lines.append(f"{r.score:7.4f}  {r.n_frames:6d}  {getattr(r, 'n_' + unit):5d}  {r.path}")
    if len(result.videos) > limit:
        lines.append(f"... {len(result.videos) - limit} more in videos.csv")
    if len(result.failures):
        lines.append(f"{len(result.failures)} input(s) not scored (failures.csv):")
        for r in result.failures.itertuples():
            lines.append(f"  {r.reason:10s} {r.path}: {r.detail}")
    return "\n".join(lines)


def write_tables(out_dir: Path, result: PredictResult) -> None:
    """Write the three CSVs (atomically)."""
    for name, df in (
        ("predictions.csv", result.faces),
        ("videos.csv", result.videos),
        ("failures.csv", result.failures),
    ):
        atomic_write_text(out_dir / name, df.to_csv(index=False))


def run_predict(cfg: DictConfig, out_dir: Path) -> PredictResult:
    """Everything ``predict.py`` does, writing into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = setup_runtime(cfg.runtime)
    detector = load_detector(
        cfg.ckpt, runtime.device, cfg.get("trusted_targets") or (), str(cfg.paths.cache_dir)
    )
    sources = find_sources(cfg.input)
    vis = out_dir / "visualized" if cfg.visualize else None
    result = predict_sources(detector, sources, cfg, runtime, vis)
    write_tables(out_dir, result)
    summary = {
        "checkpoint": detector.path,
        "checkpoint_epoch": detector.epoch,
        "input": OmegaConf.to_container(cfg, resolve=True)["input"],
        "n_inputs": len(sources),
        "n_scored": len(result.videos),
        "n_failed": len(result.failures),
        "failures": result.failures.to_dict("records"),
        "faces": str(cfg.faces),
        "crop": vars(detector.crop),
        "aggregate": CLIP_AGGREGATE if "n_clips" in result.videos.columns else detector.aggregate,
        "clip_len": getattr(detector.method, "clip_len", None),
        "timings": result.timings,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    atomic_write_json(out_dir / "summary.json", json.loads(json.dumps(summary, default=str)))
    print(format_table(result), flush=True)
    print(f"wrote {out_dir}/predictions.csv, videos.csv, failures.csv", flush=True)
    return result
