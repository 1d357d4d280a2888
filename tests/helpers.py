"""What tests share besides fixtures: the repository's paths, a tiny DeepfakeBench-layout dataset writer,
raw face videos built from a real photo, Hydra composition, one training run in process, and the synthetic
benchmark's generation record (filled by the ``synthetic_cache`` fixture of ``conftest.py``). Tests import
these from here, never from conftest."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
CONF = REPO / "conf"

# Raw face videos: a 320x240 window onto scikit-image's astronaut photo (a real face the package ships),
# shifted and scaled a little per frame, encoded with H.264 by PyAV.
FACE_VIDEO_W, FACE_VIDEO_H, FACE_VIDEO_FRAMES = 320, 240, 12


def face_window(t: int, phase: float) -> tuple[float, float, float]:
    """Centre (x, y) and scale of frame ``t``'s window onto the astronaut photo."""
    s = 1.0 + 0.06 * np.sin(t + phase)
    return 220.0 + 8.0 * np.cos(0.7 * t + phase), 140.0 + 5.0 * np.sin(0.5 * t + phase), s


def photo_to_frame(t: int, phase: float) -> np.ndarray:
    """The 2x3 affine taking photo pixels to frame ``t``'s pixels."""
    cx, cy, s = face_window(t, phase)
    w, h = FACE_VIDEO_W, FACE_VIDEO_H
    return np.array([[1 / s, 0, w / 2 - cx / s], [0, 1 / s, h / 2 - cy / s]])


def face_video_frames(phase: float, n: int = FACE_VIDEO_FRAMES) -> list[np.ndarray]:
    """``n`` RGB frames of the moving window onto the astronaut's face (``phase`` varies the motion)."""
    import skimage.data

    img = skimage.data.astronaut()
    size = (FACE_VIDEO_W, FACE_VIDEO_H)
    return [cv2.warpAffine(img, photo_to_frame(t, phase), size) for t in range(n)]


def write_h264(path: Path, frames: list[np.ndarray], fps: int = 12) -> None:
    """RGB frames -> an H.264 MP4 at ``path`` (PyAV's libx264, CRF 18), parent folders created."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_ff_fixture(
    root: Path,
    n_videos: int = 6,
    frames: int = 10,
    size: int = 32,
    path_form: str = "relative",
    methods: tuple[str, ...] = ("Deepfakes", "Face2Face"),
    comps: tuple[str, ...] = ("c23",),
) -> Path:
    """A tiny FF++-shaped set in DeepfakeBench's layout under ``root`` (rgb/ + dataset_json/).

    Fakes carry a bright square (learnable); splits: videos 0-3 train, 4 val, 5 test.
    ``path_form``: ``relative`` (backslashes, relative to rgb), ``dfb`` (``./datasets/rgb/...``),
    or ``absolute``.
    """
    rng = np.random.default_rng(0)
    labels = {"Deepfakes": "FF-DF", "Face2Face": "FF-F2F", "FaceSwap": "FF-FS", "NeuralTextures": "FF-NT"}
    split_of = {
        i: ("train" if i < n_videos - 2 else "val" if i == n_videos - 2 else "test") for i in range(n_videos)
    }
    tree: dict = {"FaceForensics++": {"FF-real": {}, **{labels[m]: {} for m in methods}}}
    rgb = root / "rgb"

    def form(p: Path) -> str:
        rel = p.relative_to(rgb).as_posix()
        if path_form == "relative":
            return rel.replace("/", "\\")
        if path_form == "dfb":
            return "./datasets/rgb/" + rel
        return str(p)

    def write_video(folder: Path, fake: bool) -> list[str]:
        out = []
        for f in range(frames):
            img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            if fake:
                img[8:20, 8:20] = 230
            p = folder / "frames" / folder.name / f"{f:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), img)
            lm = root / "x"  # landmarks next to frames, DeepfakeBench style
            lm = Path(str(p).replace("/frames/", "/landmarks/")).with_suffix(".npy")
            lm.parent.mkdir(parents=True, exist_ok=True)
            np.save(lm, rng.uniform(0, size, (81, 2)).astype(np.float32))
            out.append(form(p))
        return out

    for comp in comps:
        for i in range(n_videos):
            vid = f"{i:03d}"
            base = rgb / "FaceForensics++" / "original_sequences" / "youtube" / comp
            frames_list = write_video(base / vid, fake=False)
            node = tree["FaceForensics++"]["FF-real"].setdefault(split_of[i], {}).setdefault(comp, {})
            node[vid] = {"label": "FF-real", "frames": frames_list}
            for m in methods:
                fid = f"{vid}_{(i + 1) % n_videos:03d}"
                fbase = rgb / "FaceForensics++" / "manipulated_sequences" / m / comp
                # write into a folder named by the fake id
                frames_list = write_video(fbase / fid, fake=True)
                node = tree["FaceForensics++"][labels[m]].setdefault(split_of[i], {}).setdefault(comp, {})
                node[fid] = {"label": labels[m], "frames": frames_list}
    (root / "dataset_json").mkdir(parents=True, exist_ok=True)
    (root / "dataset_json" / "FaceForensics++.json").write_text(json.dumps(tree))
    return root


def compose(overrides: list[str], config_name: str = "train", hydra_keys: bool = False):
    """Compose the project's config with Hydra's compose API (as the task function sees it)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hcompose(config_name=config_name, overrides=overrides, return_hydra_config=hydra_keys)


def train_in_process(cache: Path, out: Path, overrides: list[str], run_dir: Path | None = None):
    """Compose the training config (logger off, no progress bars) and train one run in this process;
    returns the finished ``Trainer`` (its ``results`` attribute holds what ``fit`` returned). The config is
    validated first, as ``train.py`` does."""
    from detect.engine.schema import validate_config
    from detect.engine.trainer import Trainer

    cfg = compose(
        [
            f"paths.cache_dir={cache}",
            f"paths.output_dir={out}",
            "logger=none",
            "trainer.progress=false",
            *overrides,
        ]
    )
    validate_config(cfg)
    trainer = Trainer(cfg, run_dir or out / "run")
    trainer.setup()
    trainer.results = trainer.fit()
    return trainer


GENERATION: dict = {}

#: The smallest synthetic benchmark the detectors' pair views need: 4 source videos of 2 frames,
#: Deepfakes only, no stand-in datasets (:class:`detect.data.synthetic.SyntheticConfig`'s arguments).
TINY_DF = {"n_source_videos": 4, "frames_per_video": 2, "methods": ("DF",), "standins": ()}


def tiny_df_train_table(tmp_path_factory):
    """FF++'s training table of the :data:`TINY_DF` benchmark, generated once per test session into the
    session's base temporary folder (every later call is a cache hit of ``ensure_synthetic``)."""
    from detect.data.index import DatasetSpec, load_split
    from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic

    root = ensure_synthetic(tmp_path_factory.getbasetemp() / "tiny-df", SyntheticConfig(**TINY_DF), workers=1)
    return load_split(DatasetSpec.from_config(dataset_config("FaceForensics++", root)), "train")


def save_random_checkpoint(path: Path, overrides: tuple[str, ...] = (), epoch: int = 0) -> Path:
    """A baseline on the tiny backbone with random weights, saved as the trainer saves checkpoints (as
    after ``epoch`` epochs)."""
    import torch
    from omegaconf import OmegaConf

    from detect.engine.method_builder import build_method

    cfg = compose(["+scale=smoke", "logger=none", *overrides])
    torch.manual_seed(0)
    method = build_method(cfg.method, cfg.backbone)
    state = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "method": method.state_dict(),
        "epoch": epoch,
    }
    torch.save(state, path)
    return path


def offline_env(base: dict | None = None, **extra: str) -> dict:
    """The environment of a test's ``train.py``/``eval.py`` subprocess: offline (no hub, W&B offline), one
    thread, the repository and ``tests/`` importable (the scripted test methods), plus ``extra``."""
    import os

    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def probe_run_overrides(data: Path, out: Path) -> list[str]:
    """A seconds-long run: the linear probe of ``tests/scripted.py`` on the tiny FF++ fixture in ``data``,
    writing under ``out``."""
    return [
        "data=real",
        f"paths.data_dir={data}",
        f"paths.output_dir={out}",
        "logger=none",
        "backbone=tiny",
        "backbone.input_size=32",
        "runtime.num_workers=0",
        "trainer.progress=false",
        "augment=none",
        "dataset.manipulations=[DF,F2F]",
        "protocol.frames.train=4",
        "method._target_=scripted.LinearProbe",
        "~method.loss",
        "~method.focal_gamma",
        "~method.dropout",
    ]


#: The runtime config group's keys (``conf/runtime/default.yaml``) for in-process runtimes in tests.
RUNTIME_DEFAULTS = {
    "device": "auto",
    "precision": "fp32",
    "channels_last": False,
    "num_workers": 0,
    "pin_memory": "auto",
    "threads": None,
    "distributed": "auto",
    "backend": "auto",
    "sync_bn": False,
    "deterministic": False,
}

#: Puts ``tests/conf`` (test-only config options) on Hydra's search path.
TEST_SEARCHPATH = f"hydra.searchpath=[file://{TESTS / 'conf'}]"

#: The linear probe of ``tests/scripted.py`` in place of the baseline (drops the baseline's own keys).
PROBE_METHOD = [
    "method._target_=scripted.LinearProbe",
    "~method.loss",
    "~method.focal_gamma",
    "~method.dropout",
]


def cpu_step_context():
    """A single-process CPU :class:`StepContext` for one ``fit_step`` in a unit test."""
    from omegaconf import OmegaConf

    from detect.engine.context import StepContext
    from detect.engine.runtime import setup_runtime

    return StepContext(setup_runtime(OmegaConf.create({**RUNTIME_DEFAULTS, "device": "cpu"})))


def engine_cfg(data_root: Path, out: Path, extra: list[str] = ()):
    """The training config of the engine tests: the tiny FF++ fixture, the tiny backbone at 32 px."""
    return compose(
        [
            "data=real",
            f"paths.data_dir={data_root}",
            f"paths.output_dir={out}",
            f"paths.cache_dir={out}/cache",
            "backbone=tiny",
            "backbone.input_size=32",
            "logger=none",
            "runtime.num_workers=0",
            "trainer.progress=false",
            "trainer.batch_size=8",
            "trainer.eval_batch_size=32",
            "dataset.manipulations=[DF,F2F]",
            "protocol.frames.train=4",
            "protocol.frames.val=10",
            "protocol.frames.test=10",
            *extra,
        ]
    )


def fit_trainer(cfg, run_dir: Path):
    """Set up and fit a :class:`Trainer` in this process; returns it and its results."""
    from detect.engine.trainer import Trainer

    tr = Trainer(cfg, run_dir)
    tr.setup()
    return tr, tr.fit()


def torchrun_two() -> list[str]:
    """The command prefix that starts a script in two local processes under torchrun (gloo on the CPU),
    on a free loopback port."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
    ]
