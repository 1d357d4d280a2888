"""Read and write DeepfakeBench index JSONs as one sample table.

The hierarchy (DeepfakeBench, ``preprocessing/rearrange.py``)::

    dataset -> label string -> split -> [compression] -> video id -> {"label", "frames", "masks"}

Frame paths come in three forms (docs/datasets.md, "The index JSON"): absolute;
``./datasets/rgb/...`` relative to DeepfakeBench's working directory; or relative to the rgb root,
possibly with Windows backslashes. All three are resolved against the configured ``root``.
Landmark paths are derived from frame paths (``frames`` -> ``landmarks``, ``.png`` -> ``.npy``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from detect.data.sample_table import COLUMNS, validate_table
from detect.data.subsets import apply_subset

log = logging.getLogger(__name__)

COMPRESSIONS = ("raw", "c23", "c40")
SPLITS = ("train", "val", "test")


class IndexError_(ValueError):
    """A malformed or inconsistent index JSON; the message names the file and the key."""


@dataclass(frozen=True)
class LabelSpec:
    """What a label string of the index means: 0 real / 1 fake, and its domain (manipulation)."""

    label: int
    domain: str


@dataclass
class DatasetSpec:
    """One dataset as the config describes it (``conf/dataset/*.yaml``)."""

    name: str
    index: str
    root: str
    labels: dict[str, LabelSpec]
    compression: str | None = None
    manipulations: list[str] | None = None
    pairing: str = "none"
    test_list: str | None = None
    missing_test_videos: str = "error"  # error | warn: listed test videos absent from the index
    subset: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping) -> DatasetSpec:
        """Build from a (resolved) dataset config mapping; unknown keys go to ``extra``."""
        cfg = dict(cfg)
        labels = {}
        for name, spec in (cfg.pop("labels", None) or {}).items():
            if not isinstance(spec, Mapping) or "label" not in spec or "domain" not in spec:
                raise IndexError_(
                    f"dataset {cfg.get('name')!r}: labels.{name} must be a mapping with keys 'label' "
                    f"(0 real, 1 fake) and 'domain', got {spec!r}"
                )
            if int(spec["label"]) not in (0, 1):
                raise IndexError_(f"dataset {cfg.get('name')!r}: labels.{name}.label must be 0 or 1")
            labels[str(name)] = LabelSpec(int(spec["label"]), str(spec["domain"]))
        known = {f for f in cls.__dataclass_fields__ if f not in ("labels", "extra")}
        kwargs = {k: cfg.pop(k) for k in list(cfg) if k in known}
        for key in ("name", "index", "root"):
            if not kwargs.get(key):
                raise IndexError_(f"dataset config is missing the key {key!r}: {dict(cfg, **kwargs)}")
        if kwargs.get("manipulations") is not None:
            kwargs["manipulations"] = [str(m) for m in kwargs["manipulations"]]
        return cls(labels=labels, extra=cfg, **kwargs)


def resolve_frame_path(raw: str, root: str | os.PathLike) -> str:
    """Resolve one frame path of an index against the rgb ``root`` (all three DeepfakeBench forms)."""
    text = str(raw).replace("\\", "/")
    if os.path.isabs(text):
        return text
    for prefix in ("./datasets/rgb/", "datasets/rgb/", "./"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return str(Path(root) / PurePosixPath(text))


def landmark_path_for(frame_path: str) -> str:
    """DeepfakeBench convention: ``.../frames/<video>/000.png`` -> ``.../landmarks/<video>/000.npy``."""
    p = PurePosixPath(frame_path.replace("\\", "/"))
    parts = ["landmarks" if part == "frames" else part for part in p.parts]
    return str(PurePosixPath(*parts).with_suffix(".npy"))


def frame_number(path: str) -> int:
    """Frame files are zero-padded numbers (``007.png``); the number orders them."""
    stem = PurePosixPath(str(path).replace("\\", "/")).stem
    try:
        return int(stem)
    except ValueError:
        digits = "".join(ch for ch in stem if ch.isdigit())
        if not digits:
            raise
        return int(digits)


def evenly_spaced(n_stored: int, n_wanted: int | None) -> np.ndarray:
    """Indices of ``n_wanted`` frames spread evenly (``linspace``) over ``n_stored`` stored frames.

    ``floor(linspace(0, n - 1, N))``, the rule of DeepfakeBench's preprocessing (which the video
    preprocessing here uses too); its loader's defect 3 takes the first N frames instead.
    """
    if n_stored <= 0:
        return np.zeros(0, dtype=int)
    if n_wanted is None or n_wanted <= 0 or n_wanted >= n_stored:
        return np.arange(n_stored)
    return np.unique(np.linspace(0, n_stored - 1, n_wanted).astype(int))


def recorded_clips(clips, frame_numbers: Sequence[int], where: str) -> list[list[int]]:
    """A video node's optional ``clips`` (lists of frame numbers) checked: each clip's numbers are
    consecutive and every one is a stored frame of the video."""
    if not isinstance(clips, Sequence) or isinstance(clips, str):
        raise IndexError_(f"{where}['clips'] must be a list of lists of frame numbers, got {clips!r}")
    stored = set(frame_numbers)
    out = []
    for k, clip in enumerate(clips):
        try:
            nums = [int(i) for i in clip]
        except (TypeError, ValueError) as err:
            raise IndexError_(f"{where}['clips'][{k}] is not a list of frame numbers: {clip!r}") from err
        if not nums or any(b != a + 1 for a, b in zip(nums, nums[1:], strict=False)):
            raise IndexError_(f"{where}['clips'][{k}] = {nums} is not a run of consecutive frame numbers")
        absent = [i for i in nums if i not in stored]
        if absent:
            raise IndexError_(
                f"{where}['clips'][{k}] names frames {absent} that are not in its 'frames' list"
            )
        out.append(nums)
    return out


def frames_of_clips(clips: Sequence[Sequence[int]], frames_per_video: int | None) -> set[int]:
    """The frame numbers kept from a video stored as clips: whole clips, ``ceil(frames_per_video /
    clip_len)`` of them spread evenly over the video's clips (every clip when None), so that a frame
    budget never cuts a clip apart."""
    if not clips:
        return set()
    n = None if frames_per_video is None else -(-int(frames_per_video) // len(clips[0]))
    return {i for k in evenly_spaced(len(clips), n) for i in clips[int(k)]}


def source_video_id(video_id: str, pairing: str) -> str:
    """The source (target) video a fake was made from: FF++ fake ``000_003`` pairs with real ``000``."""
    if pairing == "ff":
        return video_id.split("_")[0]
    if pairing == "none":
        return video_id
    raise IndexError_(f"unknown pairing {pairing!r}: use 'ff' (AAA_BBB fakes pair with AAA) or 'none'")


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"index JSON not found: {path}. Point the dataset's 'index' (under paths.data_dir) at a "
            "DeepfakeBench index, or preprocess raw videos with scripts/preprocess.py."
        )
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise IndexError_(f"{path}: malformed JSON ({err})") from err


def _read_test_list(path: str) -> set[str]:
    """Celeb-DF's ``List_of_testing_videos.txt``: ``<label> <folder>/<video>.mp4`` per line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"test list not found: {path} (dataset.test_list)")
    names = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if parts:
                names.add(PurePosixPath(parts[-1]).stem)
    return names


def _check_test_list(spec: DatasetSpec, missing: list[str]) -> None:
    """Videos of the official test list absent from the index: an error listing them, or with
    ``dataset.missing_test_videos=warn`` a warning listing them (the test set is then smaller)."""
    if not missing:
        return
    shown = ", ".join(missing[:20]) + (f" ... (+{len(missing) - 20} more)" if len(missing) > 20 else "")
    text = (
        f"{len(missing)} video(s) of the test list {spec.test_list} are not in {spec.index}'s test split: "
        f"{shown}"
    )
    if spec.missing_test_videos == "warn":
        log.warning("%s; testing without them (dataset.missing_test_videos=warn)", text)
        return
    if spec.missing_test_videos != "error":
        raise IndexError_(f"dataset.missing_test_videos={spec.missing_test_videos!r}; use error or warn")
    raise IndexError_(
        f"{text}. Preprocess them, or accept a smaller test set with dataset.missing_test_videos=warn"
    )


def _video_nodes(
    data: Mapping, path: str, spec: DatasetSpec, split: str
) -> Iterable[tuple[str, str, Mapping, tuple[str, ...]]]:
    """Yield (label name, video id, video node, key path) for one split of one dataset."""
    if spec.name not in data:
        raise IndexError_(f"{path}: no top-level key {spec.name!r} (found {sorted(data)}); set dataset.name")
    by_label = data[spec.name]
    if not isinstance(by_label, Mapping):
        raise IndexError_(f"{path}: [{spec.name!r}] must map label names to splits")
    for label_name, by_split in by_label.items():
        keys: tuple[str, ...] = (spec.name, label_name)
        if label_name not in spec.labels:
            raise IndexError_(
                f"{path}: unknown label name {label_name!r} at {list(keys)}; declare it under the "
                f"dataset config's 'labels' (known: {sorted(spec.labels)})"
            )
        if not isinstance(by_split, Mapping):
            raise IndexError_(f"{path}: {list(keys)} must map splits to videos")
        if split not in by_split:
            continue
        node = by_split[split]
        keys = (*keys, split)
        if spec.compression is not None:
            if not isinstance(node, Mapping) or spec.compression not in node:
                found = sorted(node) if isinstance(node, Mapping) else type(node).__name__
                raise IndexError_(
                    f"{path}: no compression {spec.compression!r} at {list(keys)} (found {found}); "
                    "set dataset.compression"
                )
            node = node[spec.compression]
            keys = (*keys, spec.compression)
        if not isinstance(node, Mapping):
            raise IndexError_(f"{path}: {list(keys)} must map video ids to {{'label','frames'}}")
        for video_id, video in node.items():
            yield label_name, str(video_id), video, (*keys, str(video_id))


def load_split(
    spec: DatasetSpec,
    split: str,
    frames_per_video: int | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Read one split of one dataset into the sample table (see ``detect.data.sample_table``).

    Only the fakes of ``spec.manipulations`` are kept (reals always); ``frames_per_video`` frames are
    taken evenly spaced over each video's stored frames; missing files fail with the file named.
    """
    if split not in SPLITS:
        raise IndexError_(f"unknown split {split!r}; use one of {SPLITS}")
    data = _load_json(spec.index)
    keep_videos = _read_test_list(spec.test_list) if (spec.test_list and split == "test") else None
    rows: list[dict] = []
    indexed: set[str] = set()
    for label_name, video_id, video, keys in _video_nodes(data, spec.index, spec, split):
        indexed.add(video_id)
        lab = spec.labels[label_name]
        if lab.label == 1 and spec.manipulations is not None and lab.domain not in spec.manipulations:
            continue
        if keep_videos is not None and video_id not in keep_videos:
            continue
        if not isinstance(video, Mapping) or "frames" not in video:
            raise IndexError_(f"{spec.index}: {list(keys)} has no 'frames' list")
        frames = [str(f) for f in video["frames"]]
        if "label" in video and str(video["label"]) != label_name:
            raise IndexError_(
                f"{spec.index}: {list(keys)}['label'] is {video['label']!r} but the video sits under "
                f"{label_name!r}"
            )
        masks = [str(m) for m in video.get("masks") or []]
        mask_by_frame = {frame_number(m): m for m in masks}
        try:
            order = sorted(frames, key=frame_number)
        except ValueError as err:
            raise IndexError_(f"{spec.index}: {list(keys)} has a frame name that is not a number") from err
        if video.get("clips"):
            keep = frames_of_clips(
                recorded_clips(
                    video["clips"], [frame_number(f) for f in order], f"{spec.index}: {list(keys)}"
                ),
                frames_per_video,
            )
            chosen = [k for k, f in enumerate(order) if frame_number(f) in keep]
        else:
            chosen = evenly_spaced(len(order), frames_per_video)
        comp = spec.compression or "-"
        for i in chosen:
            raw = order[int(i)]
            fno = frame_number(raw)
            path = resolve_frame_path(raw, spec.root)
            mask = mask_by_frame.get(fno)
            rows.append(
                {
                    "path": path,
                    "label": lab.label,
                    "label_name": label_name,
                    "dataset": spec.name,
                    "domain": lab.domain,
                    "compression": comp,
                    "split": split,
                    "video": f"{spec.name}/{label_name}/{comp}/{video_id}",
                    "video_id": video_id,
                    "source_video": f"{spec.name}/{comp}/{source_video_id(video_id, spec.pairing)}",
                    "frame": fno,
                    "landmark_path": landmark_path_for(path),
                    "mask_path": resolve_frame_path(mask, spec.root) if mask else None,
                }
            )
    if keep_videos is not None:
        _check_test_list(spec, sorted(keep_videos - indexed))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if spec.subset:
        table = apply_subset(table, spec.subset, spec.name)
    if check_files:
        _check_files(table, spec.index)
    return validate_table(table.reset_index(drop=True))


def _check_files(table: pd.DataFrame, index_path: str) -> None:
    missing = [p for p in table["path"] if not os.path.isfile(p)]
    missing += [p for p in table["mask_path"].dropna() if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise FileNotFoundError(
            f"{index_path}: {len(missing)} file(s) listed in the index do not exist, e.g.\n  {shown}\n"
            "Check dataset.root (the rgb root the index paths are relative to)."
        )


def write_index(
    json_path: str | os.PathLike,
    dataset: str,
    videos: Sequence[Mapping],
    root: str | os.PathLike,
) -> None:
    """Write a DeepfakeBench index JSON atomically.

    Each item of ``videos`` has keys ``label_name``, ``split``, ``compression`` (or None), ``video_id``,
    ``frames`` (paths) and optionally ``masks`` and ``clips`` (lists of consecutive frame numbers, each
    number one of ``frames``: an optional key DeepfakeBench's loader ignores). Paths are stored relative
    to ``root`` with ``/``.
    """
    tree: dict = {dataset: {}}
    for v in videos:
        node = tree[dataset].setdefault(v["label_name"], {}).setdefault(v["split"], {})
        if v.get("compression"):
            node = node.setdefault(v["compression"], {})
        entry = {
            "label": v["label_name"],
            "frames": [Path(os.path.relpath(f, root)).as_posix() for f in v["frames"]],
        }
        if v.get("masks"):
            entry["masks"] = [Path(os.path.relpath(m, root)).as_posix() for m in v["masks"]]
        if v.get("clips"):
            entry["clips"] = [[int(i) for i in clip] for clip in v["clips"]]
        node[v["video_id"]] = entry
    from detect.utils.io import atomic_write_text

    atomic_write_text(json_path, json.dumps(tree, indent=1))
