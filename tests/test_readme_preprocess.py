"""README's "Preprocessing raw videos": every ``python scripts/preprocess.py`` command of its bash blocks runs
as written, through the command line, on a tiny raw tree built here (issue 14, item 9)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, face_video_frames, offline_env, write_h264

SECTION = "### Preprocessing raw videos"
FRAMES_PER_VIDEO = 4
FF_MANIPULATIONS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


def readme_preprocess_commands(readme: Path = REPO / "README.md") -> list[str]:
    """The ``python scripts/preprocess.py ...`` commands of the section's fenced bash blocks, one string each
    (backslash continuations joined, comment lines dropped)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION) + len(SECTION)
    end = text.find("\n### ", start)
    section = text[start : end if end != -1 else len(text)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("python scripts/preprocess.py"):
                commands.append(line)
    return commands


def build_raw_tree(raw: Path) -> None:
    """FaceForensics++ (c23 and c40, real 000 and fake 000_001 of all five methods, c23 masks for the four
    of the default), its official split JSONs, and Celeb-DF v2 (one video per folder, its test list)."""
    ff = raw / "FaceForensics++"
    for comp in ("c23", "c40"):
        write_h264(
            ff / "original_sequences/youtube" / comp / "videos/000.mp4",
            face_video_frames(0.0, FRAMES_PER_VIDEO),
        )
        for i, m in enumerate(FF_MANIPULATIONS):
            frames = face_video_frames(1.0 + i, FRAMES_PER_VIDEO)
            write_h264(ff / "manipulated_sequences" / m / comp / "videos/000_001.mp4", frames)
    for m in FF_MANIPULATIONS[:4]:
        write_h264(
            ff / "manipulated_sequences" / m / "masks/videos/000_001.mp4",
            face_video_frames(2.0, FRAMES_PER_VIDEO),
        )
    splits = raw / "FaceForensics/dataset/splits"
    splits.mkdir(parents=True)
    for name, pairs in (("train", [["000", "001"]]), ("val", [["002", "003"]]), ("test", [["004", "005"]])):
        (splits / f"{name}.json").write_text(json.dumps(pairs))
    cdf = raw / "Celeb-DF-v2"
    for i, rel in enumerate(("Celeb-real/id0_0000", "Celeb-synthesis/id0_id1_0000", "YouTube-real/00000")):
        write_h264(cdf / f"{rel}.mp4", face_video_frames(0.5 * i, FRAMES_PER_VIDEO))
    test_list = "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n"
    (cdf / "List_of_testing_videos.txt").write_text(test_list)


def concrete_args(command: str, raw: Path, data: Path, run_dir: Path) -> list[str]:
    """The command's arguments with the README's placeholders made concrete, everything else as written."""
    command = re.sub(r"(?<==)/raw/", f"{raw}/", command)
    command = re.sub(r"(?<==)/data/dfb\b", str(data), command)
    command = (
        command.replace("<option>", "celebdf_v2")
        .replace("<raw dataset folder>", str(raw / "Celeb-DF-v2"))
        .replace("[key=value ...]", "")
    )
    args = [a for a in shlex.split(command)[2:] if not a.startswith("workers=")]
    if not any(a.startswith("paths.data_dir=") for a in args):
        args.append(f"paths.data_dir={data}")
    return [*args, "num_frames=2", "workers=0", "progress=false", f"hydra.run.dir={run_dir}"]


@pytest.mark.e2e
def test_readme_preprocessing_commands_run_as_written(tmp_path: Path) -> None:
    """Each command of README's "Preprocessing raw videos" bash blocks, run by ``scripts/preprocess.py``.

    Substituted: ``/raw/`` -> the tiny raw tree's folder (so ``/raw/FaceForensics++``,
    ``/raw/FaceForensics/dataset/splits``, ``/raw/Celeb-DF-v2`` are built here), ``/data/dfb`` -> a
    temporary data folder; in the generic command ``dataset=<option>`` -> ``dataset=celebdf_v2``,
    ``<raw dataset folder>`` -> the raw Celeb-DF v2 folder, ``[key=value ...]`` dropped and
    ``paths.data_dir`` added. ``workers=8`` is replaced by ``workers=0`` (two shared CPUs); appended to
    every command: ``num_frames=2 workers=0 progress=false hydra.run.dir=<tmp>``. Every other argument is
    the README's, in its order. Asserts exit 0 and the index each writes (c40 and FaceShifter merged into
    the c23 index; Celeb-DF's test list copied where ``celebdf_v2.yaml`` reads it)."""
    commands = readme_preprocess_commands()
    datasets = [re.search(r"dataset=(\S+)", c).group(1) for c in commands]
    assert datasets == ["<option>", "ff", "ff", "celebdf_v2"], commands  # a new README command: build its raw
    raw, data = tmp_path / "raw", tmp_path / "data" / "dfb"
    build_raw_tree(raw)
    for n, command in enumerate(commands):
        args = concrete_args(command, raw, data, tmp_path / f"run{n}")
        proc = subprocess.run(
            [sys.executable, "scripts/preprocess.py", *args],
            cwd=REPO,
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{command}\n{args}\n{proc.stderr[-3000:]}"
    ff = json.loads((data / "dataset_json" / "FaceForensics++.json").read_text())["FaceForensics++"]
    assert set(ff) == {"FF-real", "FF-DF", "FF-F2F", "FF-FS", "FF-NT", "FF-FH"}
    assert set(ff["FF-real"]["train"]) == {"c23", "c40"} and set(ff["FF-FH"]["train"]) == {"c40"}
    assert (data / "dataset_json" / "FF-DF.json").is_file()
    cdf = json.loads((data / "dataset_json" / "Celeb-DF-v2.json").read_text())["Celeb-DF-v2"]
    assert set(cdf) == {"CelebDFv2_real", "CelebDFv2_fake"}
    assert (data / "rgb" / "Celeb-DF-v2" / "List_of_testing_videos.txt").is_file()
