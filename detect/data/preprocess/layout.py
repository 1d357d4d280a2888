"""Where each dataset's raw videos are, what they are labelled, and which split they belong to.

Input layouts follow the datasets as downloaded (and DeepfakeBench's ``preprocessing/preprocess.py``);
every video's outputs go to ``rgb/<Dataset>/<rel_dir>/{frames,landmarks,masks}/<video>/``, where
``rel_dir`` is the folder holding the video (the parent of ``videos/`` for the FF++ family), so the
result mirrors DeepfakeBench's layout.

Splits (``split.mode``): ``official`` where the dataset defines one (FF++: the ``train/val/test.json``
pair lists in ``splits_dir``; Celeb-DF: ``List_of_testing_videos.txt`` -> test, the rest -> train;
DFDC-P: ``dataset.json``'s ``set``; DFDC: ``train/`` parts -> train, ``test/`` -> test);
``all_test``: every video in test (cross-dataset evaluation); ``ratio``: a seeded random split by
``split.ratios`` that keeps the videos sharing an identity (FF++ pairs, DFD/Celeb-DF actors) together;
``auto`` (default): ``official`` where the dataset defines one, else ``all_test``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SPLITS = ("train", "val", "test")
SPLIT_MODES = ("auto", "official", "all_test", "ratio")
COMPRESSIONS = ("raw", "c23", "c40")

# FF++ manipulation folders and their DeepfakeBench label strings.
FF_METHODS = {
    "Deepfakes": "FF-DF",
    "Face2Face": "FF-F2F",
    "FaceSwap": "FF-FS",
    "NeuralTextures": "FF-NT",
    "FaceShifter": "FF-FH",
}
FF_REAL = "FF-real"
FF_NAMES = ("FaceForensics++",)
DFD_NAMES = ("DeepFakeDetection",)
CELEBDF_LABELS = {"Celeb-DF-v1": "CelebDFv1", "Celeb-DF-v2": "CelebDFv2"}
CELEBDF_FOLDERS = {"Celeb-real": "real", "YouTube-real": "real", "Celeb-synthesis": "fake"}
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
# Simple "folder -> label" datasets built in (anything else: the ``folders`` option).
FOLDER_DATASETS = {"UADFV": {"real": "UADFV_Real", "fake": "UADFV_Fake"}}
KNOWN_DATASETS = (*FF_NAMES, *DFD_NAMES, *CELEBDF_LABELS, "DFDCP", "DFDC", *FOLDER_DATASETS)


class LayoutError(ValueError):
    """The input folder does not look like the dataset, or a split file is malformed."""


@dataclass(frozen=True)
class VideoEntry:
    """One raw video and where its outputs go."""

    path: str
    rel_dir: str
    video_id: str
    label_name: str
    compression: str | None = None
    mask_path: str | None = None
    group: tuple[str, ...] = ()
    official_split: str | None = None


@dataclass
class Layout:
    """The videos of one dataset, as found on disk."""

    name: str
    entries: list[VideoEntry]
    official_defined: bool = False
    official_available: bool = False
    official_hint: str = ""
    copy_files: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LayoutOptions:
    """What to look for: FF-family compressions and methods, split files, generic folders."""

    compressions: tuple[str, ...] = ("c23",)
    manipulations: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    splits_dir: str | None = None
    test_list: str | None = None
    folders: Mapping[str, str] = field(default_factory=dict)
    masks: bool = True


def list_videos(folder: Path, recursive: bool = True) -> list[Path]:
    """Video files under ``folder`` (sorted)."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder not found: {path}")
    return path


def discover(name: str, input_dir: str | os.PathLike, opts: LayoutOptions) -> Layout:
    """Find the videos of dataset ``name`` (``dataset.name``) under ``input_dir``."""
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root} (input_dir)")
    if name in FF_NAMES:
        layout = _ff(name, root, opts)
    elif name in DFD_NAMES:
        layout = _dfd(name, root, opts)
    elif name in CELEBDF_LABELS:
        layout = _celebdf(name, root, opts)
    elif name == "DFDCP":
        layout = _dfdcp(name, root)
    elif name == "DFDC":
        layout = _dfdc(name, root)
    elif opts.folders or name in FOLDER_DATASETS:
        layout = _folders(name, root, dict(opts.folders) or FOLDER_DATASETS[name])
    else:
        raise LayoutError(
            f"no input layout for dataset {name!r}: built in are {KNOWN_DATASETS}; for another dataset "
            "give its folders and label strings, e.g. folders='{real: X_real, fake: X_fake}'"
        )
    if not layout.entries:
        raise LayoutError(f"{name}: no videos ({'/'.join(VIDEO_EXTENSIONS)}) found under {root} (input_dir)")
    _check_unique(layout)
    if opts.labels:
        undeclared = sorted({e.label_name for e in layout.entries} - set(opts.labels))
        if undeclared:
            raise LayoutError(
                f"{name}: label strings {undeclared} are not declared in the dataset config's 'labels' "
                f"(declared: {sorted(opts.labels)})"
            )
    return layout


def _check_unique(layout: Layout) -> None:
    seen: dict[tuple, str] = {}
    for e in layout.entries:
        for key in ((e.label_name, e.compression, e.video_id), ("out", e.rel_dir, e.video_id)):
            if key in seen:
                raise LayoutError(
                    f"{layout.name}: two videos map to the same output/index entry {e.video_id!r}: "
                    f"{seen[key]} and {e.path}"
                )
            seen[key] = e.path


# ---------------------------------------------------------------- FaceForensics++ and DFD


def read_ff_splits(splits_dir: str | os.PathLike) -> dict[str, str]:
    """FF++'s official split: ``{video id: split}`` for reals (``071``), fakes (``071_054``, ``054_071``)."""
    folder = Path(splits_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"FF++ splits folder not found: {folder} (splits_dir)")
    mapping: dict[str, str] = {}
    for split in SPLITS:
        path = folder / f"{split}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"FF++ split file not found: {path} (splits_dir needs train/val/test.json)"
            )
        try:
            pairs = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise LayoutError(f"{path}: malformed JSON ({err})") from err
        if not isinstance(pairs, list):
            raise LayoutError(f'{path}: expected a list of pairs like [["071", "054"], ...]')
        for pair in pairs:
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise LayoutError(f'{path}: expected pairs like ["071", "054"], got {pair!r}')
            a, b = (str(x) for x in pair)
            for vid in (a, b, f"{a}_{b}", f"{b}_{a}"):
                if mapping.get(vid, split) != split:
                    raise LayoutError(f"{path}: video {vid} is also in the {mapping[vid]} split")
                mapping[vid] = split
    return mapping


def _ff_methods(name: str, root: Path, opts: LayoutOptions) -> list[str]:
    """FF++ methods to process: those whose label's domain is in ``dataset.manipulations``."""
    if opts.manipulations is None:
        found = [m for m in FF_METHODS if (root / "manipulated_sequences" / m).is_dir()]
        if opts.labels:
            found = [m for m in found if FF_METHODS[m] in opts.labels]
        return found
    methods = []
    for m, label in FF_METHODS.items():
        domain = opts.labels.get(label)
        if domain is None and not opts.labels:
            domain = label.removeprefix("FF-")
        if domain is not None and domain in opts.manipulations:
            methods.append(m)
    known = {opts.labels.get(lab, lab.removeprefix("FF-")) for lab in FF_METHODS.values()}
    unknown = sorted(set(opts.manipulations) - known)
    if unknown:
        raise LayoutError(
            f"{name}: unknown manipulations {unknown} (dataset.manipulations); known: {sorted(known)}"
        )
    return methods


def _compressions(name: str, opts: LayoutOptions) -> tuple[str, ...]:
    bad = [c for c in opts.compressions if c not in COMPRESSIONS]
    if bad or not opts.compressions:
        raise LayoutError(f"{name}: compressions {list(opts.compressions)} must be among {COMPRESSIONS}")
    return tuple(opts.compressions)


def _ff(name: str, root: Path, opts: LayoutOptions) -> Layout:
    split_of = read_ff_splits(opts.splits_dir) if opts.splits_dir else {}
    layout = Layout(
        name,
        [],
        official_defined=True,
        official_available=bool(opts.splits_dir),
        official_hint="splits_dir=<folder with FF++'s train.json, val.json, test.json>",
    )
    hint = "choose with dataset.compression / compressions and dataset.manipulations"
    groups: list[tuple[str, str, str | None, Path | None]] = []
    for comp in _compressions(name, opts):
        rel = f"original_sequences/youtube/{comp}"
        groups.append((rel, FF_REAL, comp, None))
        for m in _ff_methods(name, root, opts):
            masks = root / "manipulated_sequences" / m / "masks" / "videos"
            mask_dir = masks if (opts.masks and masks.is_dir()) else None
            groups.append((f"manipulated_sequences/{m}/{comp}", FF_METHODS[m], comp, mask_dir))
    for rel, label, comp, mask_dir in groups:
        folder = _require_dir(root / rel / "videos", f"{name} ({hint})")
        for video in list_videos(folder, recursive=False):
            vid = video.stem
            mask = None
            if mask_dir is not None:
                cand = mask_dir / video.name
                if cand.is_file():
                    mask = str(cand)
                else:
                    layout.notes.append(f"no mask video for {video} (looked for {cand})")
            layout.entries.append(
                VideoEntry(
                    path=str(video),
                    rel_dir=rel,
                    video_id=vid,
                    label_name=label,
                    compression=comp,
                    mask_path=mask,
                    group=tuple(vid.split("_")),
                    official_split=split_of.get(vid),
                )
            )
    return layout


def _dfd(name: str, root: Path, opts: LayoutOptions) -> Layout:
    layout = Layout(name, [])
    for comp in _compressions(name, opts):
        for rel, label in (
            (f"original_sequences/actors/{comp}", "DFD_real"),
            (f"manipulated_sequences/DeepFakeDetection/{comp}", "DFD_fake"),
        ):
            folder = _require_dir(root / rel / "videos", f"{name} (choose with compressions)")
            masks = root / "manipulated_sequences" / "DeepFakeDetection" / "masks" / "videos"
            for video in list_videos(folder, recursive=False):
                mask = masks / video.name
                actors = video.stem.split("__")[0].split("_")
                layout.entries.append(
                    VideoEntry(
                        path=str(video),
                        rel_dir=rel,
                        video_id=video.stem,
                        label_name=label,
                        compression=comp,
                        mask_path=str(mask)
                        if (label == "DFD_fake" and opts.masks and mask.is_file())
                        else None,
                        group=tuple(actors),
                    )
                )
    return layout


# ---------------------------------------------------------------- Celeb-DF, DFDC-P, DFDC, folders


def read_celebdf_test_list(path: str | os.PathLike) -> set[str]:
    """``List_of_testing_videos.txt`` (``<0|1> <folder>/<video>.mp4`` per line) -> ``{"folder/video"}``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Celeb-DF test list not found: {path} (test_list)")
    keys = set()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            rel = Path(parts[-1])
            if len(rel.parts) < 2:
                raise LayoutError(
                    f"{path}:{n}: expected '<label> <folder>/<video>.mp4', got {line.strip()!r}"
                )
            keys.add(f"{rel.parts[0]}/{rel.stem}")
    return keys


def _celebdf(name: str, root: Path, opts: LayoutOptions) -> Layout:
    prefix = CELEBDF_LABELS[name]
    list_path = Path(opts.test_list) if opts.test_list else root / CELEBDF_TEST_LIST
    test_keys = read_celebdf_test_list(list_path) if list_path.is_file() else None
    layout = Layout(
        name,
        [],
        official_defined=True,
        official_available=test_keys is not None,
        official_hint=f"test_list=<path to {CELEBDF_TEST_LIST}> (default: <input_dir>/{CELEBDF_TEST_LIST})",
    )
    if test_keys is not None:
        layout.copy_files[CELEBDF_TEST_LIST] = str(list_path)
    for folder, kind in CELEBDF_FOLDERS.items():
        if not (root / folder).is_dir():
            layout.missing.append(str(root / folder))
            continue
        for video in list_videos(root / folder):
            vid = video.stem
            ids = tuple(t for t in vid.split("_") if t.startswith("id")) or (vid,)
            split = None
            if test_keys is not None:
                split = "test" if f"{folder}/{vid}" in test_keys else "train"
            layout.entries.append(
                VideoEntry(str(video), folder, vid, f"{prefix}_{kind}", group=ids, official_split=split)
            )
    if layout.missing:
        layout.notes.append(f"{name}: folders not found: {layout.missing}")
    if test_keys is not None:
        found = {f"{e.rel_dir}/{e.video_id}" for e in layout.entries}
        absent = sorted(test_keys - found)
        if absent:
            layout.notes.append(f"{len(absent)} videos of {list_path} not found, e.g. {absent[:3]}")
    return layout


def _dfdcp(name: str, root: Path) -> Layout:
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{name}: dataset.json not found: {meta_path} (input_dir is DFDC-P's root)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    layout = Layout(name, [], official_defined=True, official_available=True)
    for rel, info in sorted(meta.items()):
        path = root / rel
        if not path.is_file():
            layout.missing.append(str(path))
            continue
        top = Path(rel).parts[0]
        if info.get("label") == "real":
            label = "DFDCP_Real"
        elif top == "method_A":
            label = "DFDCP_FakeA"
        elif top == "method_B":
            label = "DFDCP_FakeB"
        else:
            raise LayoutError(f"{meta_path}: cannot label {rel!r} ({info})")
        split = info.get("set")
        layout.entries.append(
            VideoEntry(str(path), top, path.stem, label, official_split=split if split in SPLITS else None)
        )
    if layout.missing:
        layout.notes.append(f"{len(layout.missing)} videos listed in {meta_path} are not on disk")
    return layout


def _dfdc(name: str, root: Path) -> Layout:
    layout = Layout(name, [], official_defined=True, official_available=True)
    labels_csv = root / "test" / "labels.csv"
    if labels_csv.is_file():
        with open(labels_csv, encoding="utf-8", newline="") as fh:
            rows = {r["filename"]: int(float(r["label"])) for r in csv.DictReader(fh)}
        for video in list_videos(root / "test"):
            if video.name not in rows:
                layout.notes.append(f"{video} is not in {labels_csv}; left out")
                continue
            label = "DFDC_Fake" if rows[video.name] == 1 else "DFDC_Real"
            rel = video.parent.relative_to(root).as_posix()
            layout.entries.append(VideoEntry(str(video), rel, video.stem, label, official_split="test"))
    parts = (
        sorted(p.parent for p in (root / "train").glob("*/metadata.json"))
        if (root / "train").is_dir()
        else []
    )
    for part in parts:
        meta = json.loads((part / "metadata.json").read_text(encoding="utf-8"))
        for video in list_videos(part, recursive=False):
            info = meta.get(video.name)
            if info is None:
                layout.notes.append(f"{video} is not in {part / 'metadata.json'}; left out")
                continue
            label = "DFDC_Fake" if str(info.get("label")).upper() == "FAKE" else "DFDC_Real"
            rel = part.relative_to(root).as_posix()
            layout.entries.append(VideoEntry(str(video), rel, video.stem, label, official_split="train"))
    if not labels_csv.is_file() and not parts:
        raise FileNotFoundError(
            f"{name}: found neither {labels_csv} nor {root / 'train'}/*/metadata.json "
            "(input_dir is DFDC's root)"
        )
    return layout


def _folders(name: str, root: Path, folders: Mapping[str, str]) -> Layout:
    layout = Layout(name, [])
    for folder, label in folders.items():
        path = _require_dir(root / folder, f"{name} (folders)")
        for video in list_videos(path):
            layout.entries.append(VideoEntry(str(video), Path(folder).as_posix(), video.stem, str(label)))
    return layout


# ---------------------------------------------------------------- splits


def assign_splits(
    layout: Layout,
    mode: str = "auto",
    ratios: Iterable[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[list[VideoEntry], list[VideoEntry], str]:
    """Give every entry a split. Returns (assigned, outside the official split, the mode used)."""
    if mode not in SPLIT_MODES:
        raise LayoutError(f"unknown split.mode {mode!r}; use one of {SPLIT_MODES}")
    if mode == "auto":
        mode = "official" if layout.official_defined else "all_test"
    if mode == "official":
        if not layout.official_defined:
            raise LayoutError(
                f"{layout.name} has no official split; use split.mode=all_test or split.mode=ratio"
            )
        if not layout.official_available:
            raise LayoutError(
                f"{layout.name}'s official split needs {layout.official_hint}; or choose split.mode=all_test "
                "or split.mode=ratio"
            )
        inside = [e for e in layout.entries if e.official_split in SPLITS]
        outside = [e for e in layout.entries if e.official_split not in SPLITS]
        return inside, outside, mode
    if mode == "all_test":
        return [replace(e, official_split="test") for e in layout.entries], [], mode
    return _ratio_split(layout.entries, ratios, seed), [], mode


def ratio_split(entries: list[VideoEntry], ratios: Iterable[float], seed: int) -> list[VideoEntry]:
    """``entries`` (same order) with seeded random train/val/test splits by ``ratios``, videos sharing an
    identity kept together. The pipeline draws it again over the videos that gave faces."""
    return _ratio_split(entries, ratios, seed)


def _ratio_split(entries: list[VideoEntry], ratios: Iterable[float], seed: int) -> list[VideoEntry]:
    r = np.asarray(list(ratios), dtype=float)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0:
        raise LayoutError(
            f"split.ratios must be three non-negative numbers (train, val, test), got {r.tolist()}"
        )
    r = r / r.sum()
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for e in entries:
        tokens = e.group or (e.video_id,)
        for t in tokens[1:]:
            parent[find(t)] = find(tokens[0])
        find(tokens[0])
    components = sorted({find(t) for t in parent})
    order = np.random.default_rng(seed).permutation(len(components))
    n = len(components)
    n_train = int(round(r[0] * n))
    n_val = int(round(r[1] * n))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[components[i]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return [replace(e, official_split=split_of[find((e.group or (e.video_id,))[0])]) for e in entries]
