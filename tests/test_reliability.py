"""Trustworthy runs (docs/reliability.md): run-directory locks, run names, checkpoint trust, resume
compatibility, config validation, preemption signals, durable writes, named file errors, W&B timeout.

Each fault is tried the way a user meets it: through ``train.py``/``eval.py`` where it happens there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import face_video_frames, offline_env, save_random_checkpoint, torchrun_two, write_h264

from detect.engine import run_dir as run_dir_mod
from detect.engine.checkpoint import load_checkpoint, require_run_checkpoint
from detect.engine.resume_check import config_differences
from detect.engine.schema import ConfigError, validate_config
from detect.engine.signals import StopGuard
from detect.engine.trust import UntrustedTarget, allowed_targets, check_targets, project_targets
from detect.utils.io import atomic_write, atomic_write_json
from detect.utils.run_names import default_run_name
from detect.utils.torch_files import UnreadableFile, load_safetensors_file, load_torch_file

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env(**extra) -> dict:
    return offline_env(**extra)


def _data(data: Path, out: Path) -> list[str]:
    """What train.py and eval.py share: the tiny FF++ fixture, the output folders, no W&B, no bars."""
    return [
        "data=real",
        f"paths.data_dir={data}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={out}/cache",
        "logger=none",
        "trainer.progress=false",
        "dataset.manipulations=[DF,F2F]",
    ]


def _common(data: Path, out: Path) -> list[str]:
    """train.py's arguments: the tiny backbone at 32 px, batches of 8 (6 steps per epoch)."""
    return [*_data(data, out), "backbone=tiny", "backbone.input_size=32", "trainer.batch_size=8"]


def _cli(script: str, args: list[str], timeout: int = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.umask(0o022),
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file's (it names whoever holds or last held the directory)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# -- 1. run directories and names ------------------------------------------------------------------
def test_default_run_names_never_collide_and_follow_the_job():
    local = {default_run_name({}, now=1e9) for _ in range(50)}
    assert len(local) == 50  # same millisecond, still distinct
    assert default_run_name({"SLURM_JOB_ID": "77"}) == "slurm-77"
    array = {"SLURM_JOB_ID": "80", "SLURM_ARRAY_JOB_ID": "79", "SLURM_ARRAY_TASK_ID": "3"}
    assert default_run_name(array) == "slurm-79_3" == default_run_name(array)  # every requeue, every rank
    assert default_run_name({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "2"}) == "slurm-77-s2"
    assert default_run_name({"TORCHELASTIC_RUN_ID": "abc"}) == "torchrun-abc"


def test_a_held_run_directory_is_refused_with_the_holder_named(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from detect.engine.run_dir import lock_run_dir; lock_run_dir(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(run_dir_mod.RunDirBusy, match=rf"pid {holder.pid} on host"):
            run_dir_mod.lock_run_dir(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    run_dir_mod.lock_run_dir(tmp_path / "run")  # released by the OS when the holder died
    run_dir_mod.release_run_dir(tmp_path / "run")


@pytest.mark.e2e
def test_two_concurrent_runs_with_one_run_name(ff_fixture, tmp_path):
    """The second run stops before any data or model work, naming the directory and the holder; the
    first completes and its .hydra/ files, log and results are its own."""
    args = [*_common(ff_fixture, tmp_path), "trainer.epochs=2", "runtime.num_workers=0", "run_name=x"]
    run = tmp_path / "runs" / "x"
    first = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):
            if (run / ".hydra" / "overrides.yaml").is_file():
                break
            time.sleep(0.1)
        hydra_before = _snapshot(run / ".hydra")
        second = _cli("train.py", [*args, "seed=3"])
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"run directory {run.resolve()} is in use by another run (pid {first.pid} on host" in second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert first.returncode == 0, err[-2000:]
    assert _snapshot(run / ".hydra") == hydra_before
    assert "seed=3" not in (run / ".hydra" / "overrides.yaml").read_text()
    assert json.loads((run / "results.json").read_text())["seed"] == 0
    assert "frame_auc" not in second.stdout


# -- 2. checkpoint trust ---------------------------------------------------------------------------
def test_allow_list_is_exact_and_covers_the_whole_tree():
    allowed = allowed_targets()
    assert "detect.methods.baseline.Baseline" in project_targets() and "torch.optim.Adam" in allowed
    check_targets({"method": {"_target_": "detect.methods.baseline.Baseline"}}, allowed)
    for bad in (
        {"method": {"_target_": "torch.hub.load"}},  # no prefix rule: torch.optim.* is not torch.*
        {"method": {"_target_": "detect.methods.baseline.Baseline", "optim": {"_target_": "os.system"}}},
        {"method": {"_target_": "detect.methods.baseline.Baseline", "x": [{"_target_": "builtins.open"}]}},
    ):
        with pytest.raises(UntrustedTarget, match="refused before building anything"):
            check_targets(bad, allowed)
    check_targets({"m": {"_target_": "my.Model"}}, allowed_targets(["my.Model"]))


def _crafted_checkpoint(path: Path, victim: Path, nested: bool) -> None:
    target = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    method = (
        {"_target_": "detect.methods.baseline.Baseline", "name": "baseline", "optim": target}
        if nested
        else target
    )
    cfg = {"method": method, "backbone": {"name": "tiny"}, "input": {"size": 32}, "seed": 0}
    torch.save({"method": {}, "config": cfg, "epoch": 1}, path)


@pytest.mark.parametrize("nested", [True])  # top-level targets: test_allow_list_is_exact_...
def test_eval_refuses_a_crafted_checkpoint_target(ff_fixture, tmp_path, nested):
    ckpt, victim = tmp_path / "crafted.pt", tmp_path / "created_by_checkpoint.txt"
    _crafted_checkpoint(ckpt, victim, nested)
    proc = _cli("eval.py", [*_data(ff_fixture, tmp_path), f"ckpt={ckpt}", "run_name=e"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    key = "method.optim._target_" if nested else "method._target_"
    assert f"{key}='builtins.open'" in proc.stderr
    assert not victim.exists()
    assert not (tmp_path / "cache").exists()  # refused before any data work


# -- 3. resume compatibility -----------------------------------------------------------------------
def test_config_differences_deny_by_default():
    saved = {"method": {"optim": {"lr": 1e-3}}, "trainer": {"progress": True, "epochs": 2}, "logger": {}}
    new = {"method": {"optim": {"lr": 0.5}}, "trainer": {"progress": False, "epochs": 2}, "logger": {"a": 1}}
    assert config_differences(saved, new) == [("method.optim.lr", 1e-3, 0.5)]
    assert config_differences(saved, {**saved, "extra": 1}) == [("extra", "<absent>", 1)]


@pytest.mark.e2e
def test_resume_with_a_changed_lr_is_refused_and_changes_nothing(ff_fixture, tmp_path):
    """Also: results.json and checkpoints are 0644 under umask 022."""
    args = [*_common(ff_fixture, tmp_path), "trainer.epochs=1", "runtime.num_workers=0", "run_name=t"]
    assert _cli("train.py", args).returncode == 0
    run = tmp_path / "runs" / "t"
    written = ["results.json", "checkpoints/last.pt", "checkpoints/best.pt", *(run.glob("predictions/*.csv"))]
    assert len(written) == 4
    for name in written:
        assert (run / name).stat().st_mode & 0o777 == 0o644, name
    before = _snapshot(run)
    proc = _cli("train.py", [*args, "method.optim.lr=0.5", "trainer.epochs=2"])
    assert proc.returncode == 2
    assert "method.optim.lr: checkpoint 0.001 -> now 0.5" in proc.stderr
    assert "trainer.epochs: checkpoint 1 -> now 2" in proc.stderr
    assert "run_name=<new name>" in proc.stderr and "resume=never" in proc.stderr
    assert _snapshot(run) == before  # .hydra/config.yaml, train.log, checkpoints: byte-identical
    allowed = _cli("train.py", [*args, "trainer.eval_batch_size=16", "trainer.log_every_n_steps=3"])
    assert allowed.returncode == 0, allowed.stderr[-2000:]


# -- 4. config validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=-1", "trainer.epochs=-1 (int): must be an integer >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size=0 (int): must be an integer >= 1"),
        ("trainer.batch_size=abc", "trainer.batch_size='abc' (str): must be an integer >= 1"),
        ("runtime.precision=fp8", "runtime.precision='fp8' (str): must be one of ['fp32', 'bf16', 'fp16']"),
    ],
)
def test_bad_values_stop_before_any_work(tmp_path, override, message):
    proc = _cli(
        "train.py",
        [f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache", "run_name=bad", override],
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "cache").exists()  # no synthetic generation
    assert not (tmp_path / "runs" / "bad").exists() or not any((tmp_path / "runs" / "bad").iterdir())


def test_every_shipped_config_passes_the_schema():
    from helpers import compose

    validate_config(compose([]))
    validate_config(compose(["+scale=smoke"]))
    validate_config(compose(["ckpt=x"], config_name="eval"))
    with pytest.raises(ConfigError, match=r"logger.init_timeout_s=0 \(int\): must be a number > 0"):
        validate_config(compose(["logger.init_timeout_s=0"]))


# -- 5. preemption and signals ---------------------------------------------------------------------
def test_stop_guard_defers_and_chains_to_the_previous_handler():
    calls = []

    def launcher_handler(signum, frame):  # stands in for submitit's checkpoint_and_try_requeue
        calls.append(signum)
        raise SystemExit(-1)

    old = signal.signal(signal.SIGUSR2, launcher_handler)
    try:
        guard = StopGuard().install()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert guard.requested and guard.name == "SIGUSR2" and calls == []  # deferred, not lost
        with pytest.raises(SystemExit) as exit_info:
            guard.hand_over()
        assert calls == [signal.SIGUSR2] and exit_info.value.code == -1
        assert signal.getsignal(signal.SIGUSR2) is launcher_handler  # restored, never replaced
    finally:
        signal.signal(signal.SIGUSR2, old)
    bare = StopGuard([signal.SIGUSR1]).install()
    os.kill(os.getpid(), signal.SIGUSR1)
    with pytest.raises(SystemExit) as exit_info:
        bare.hand_over()
    assert exit_info.value.code == 128 + signal.SIGUSR1


def _preempt_args(data: Path, out: Path) -> list[str]:
    return [
        *_common(data, out),
        "trainer.epochs=2",
        "runtime.num_workers=2",
        "method._target_=signal_probe.SignalAt",
        "method.dropout=0.2",
    ]


@pytest.fixture(scope="module")
def straight_run(ff_fixture, tmp_path_factory) -> Path:
    """The uninterrupted run the preempted ones must match (16 steps per epoch, 2 epochs)."""
    out = tmp_path_factory.mktemp("straight")
    proc = _cli("train.py", [*_preempt_args(ff_fixture, out), "run_name=straight"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "runs" / "straight"


@pytest.mark.e2e
@pytest.mark.parametrize("signame", ["USR2", pytest.param("TERM", marks=pytest.mark.long)])
def test_preempted_mid_epoch_two_resumes_bit_identically(ff_fixture, tmp_path, straight_run, signame):
    """The signal arrives during step 20 (epoch 2, batch 5 of 16: class-balanced sampling) with 2 loader
    workers: the run finishes the step, writes last.pt there, logs one line and exits 128+signal;
    rerunning the same command resumes to the same weights and history as the uninterrupted run."""
    args = [*_preempt_args(ff_fixture, tmp_path), "run_name=cut"]
    cut = _cli("train.py", args, DETECT_TEST_SIGNAL=f"{signame}:20")
    signum = getattr(signal, f"SIG{signame}")
    assert cut.returncode == 128 + signum, cut.stderr[-2000:]
    run = tmp_path / "runs" / "cut"
    mid = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (mid["epoch"], mid["mid_epoch"]["batch"], mid["global_step"]) == (1, 5, 21)
    lines = [x for x in (run / "train.log").read_text().splitlines() if f"SIG{signame} received" in x]
    assert len(lines) == 1 and "epoch 2 step 5" in lines[0]
    resumed = _cli("train.py", args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (run / "train.log").read_text()
    a = load_checkpoint(straight_run / "checkpoints" / "last.pt")
    b = load_checkpoint(run / "checkpoints" / "last.pt")
    for key, value in a["method"].items():
        assert torch.equal(value, b["method"][key]), key

    def strip(history):
        return [{k: v for k, v in h.items() if k != "train_time_s"} for h in history]

    assert strip(a["history"]) == strip(b["history"])  # epoch 2's mean loss includes the steps before


@pytest.mark.e2e
def test_sigint_prints_one_line_and_keeps_the_last_checkpoint(ff_fixture, tmp_path):
    args = [
        *_common(ff_fixture, tmp_path),
        "trainer.epochs=50",
        "runtime.num_workers=0",
        "run_name=i",
    ]
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background jobs inherit SIGINT ignored (Python then raises no KeyboardInterrupt): restore
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last = tmp_path / "runs/i/checkpoints/last.pt"
    try:
        for _ in range(1200):
            if last.is_file():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        f"interrupted (SIGINT): the last checkpoint {last} is kept; rerun the same command to resume"
    ]
    assert load_checkpoint(last)["epoch"] >= 1


# -- 6. durability and modes -----------------------------------------------------------------------
def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o002)
        atomic_write(tmp_path / "w.pt", lambda tmp: torch.save({"x": torch.zeros(1)}, tmp))
        assert (tmp_path / "w.pt").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_names_the_path(tmp_path):
    def torch_full(tmp):  # what torch.save raises on ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0; write failed")

    def plain_full(tmp):
        raise OSError(28, "No space left on device")

    for write in (torch_full, plain_full):
        with pytest.raises(OSError, match=f"no space left on device while writing {tmp_path}/c.pt"):
            atomic_write(tmp_path / "c.pt", write)
        assert list(tmp_path.iterdir()) == []


# -- 7. named file errors --------------------------------------------------------------------------
def test_every_bad_file_names_its_path(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"method": {"w": torch.ones(3)}, "config": {}}, good)
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "is empty (0 bytes)"),
        "truncated.pt": (data[: len(data) // 2], "cannot be read"),
        "text.pt": (b"hello, not weights\n" * 10, "is not a PyTorch file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UnreadableFile) as err:
            load_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and message in str(err.value), err.value
        assert "weights_only=False" not in str(err.value)
    torch.save({"w": torch.ones(2)}, tmp_path / "weights.pt")
    with pytest.raises(UnreadableFile, match=f"{tmp_path}/weights.pt is not a detect checkpoint"):
        require_run_checkpoint(load_checkpoint(tmp_path / "weights.pt"), tmp_path / "weights.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(UnreadableFile, match=f"{tmp_path}/bad.safetensors .* not a valid .safetensors"):
        load_safetensors_file(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {tmp_path}/missing.pt"):
        load_torch_file(tmp_path / "missing.pt")


def test_a_text_file_as_pretrained_weights_is_named_without_unsafe_advice(tmp_path):
    from detect.models.weights import WeightsError, read_state_dict

    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(WeightsError) as err:
        read_state_dict(tmp_path / "notes.pth")
    assert f"{tmp_path}/notes.pth" in str(err.value) and "weights_only=False" not in str(err.value)


@pytest.mark.e2e
def test_eval_names_what_a_checkpoint_holds_and_opens_none_of_its_paths(ff_fixture, tmp_path):
    ckpt = save_random_checkpoint(tmp_path / "last.pt", ("backbone.input_size=32",))  # as the trainer saves
    state = load_checkpoint(ckpt)
    state["config"]["backbone"]["name"] = "small"  # a config that no longer fits the weights
    state["config"]["backbone"]["timm_name"] = "resnet18"
    torch.save(state, tmp_path / "other.pt")
    proc = _cli("eval.py", [*_data(ff_fixture, tmp_path), f"ckpt={tmp_path / 'other.pt'}", "run_name=e"])
    assert proc.returncode != 0
    assert f"checkpoint {tmp_path / 'other.pt'} holds method=baseline backbone=small" in proc.stderr
    paths = load_checkpoint(ckpt)  # paths stored in a checkpoint's config are never opened
    paths["config"]["backbone"]["pretrained"] = str(tmp_path / "missing" / "weights.safetensors")
    torch.save(paths, tmp_path / "paths.pt")
    proc = _cli("eval.py", [*_data(ff_fixture, tmp_path), f"ckpt={tmp_path / 'paths.pt'}", "run_name=p"])
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- 8. W&B ----------------------------------------------------------------------------------------
def test_unreachable_wandb_waits_at_most_the_timeout_then_logs_offline(tmp_path, monkeypatch):
    import wandb

    from detect.engine.loggers import WandbLogger, wandb_run_id

    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    t0 = time.perf_counter()
    offline = WandbLogger({"mode": "offline"}, {}, str(tmp_path / "off"), "off")
    offline.finish()
    offline_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    logger = WandbLogger({"mode": "online", "init_timeout_s": 3}, {}, str(tmp_path), "run")
    online_s = time.perf_counter() - t0
    assert logger.run is not None and logger.run.offline
    logger.log({"x": 1.0}, step=1)
    logger.finish()
    assert online_s < 3 + 2 * offline_s + 10, (online_s, offline_s)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(wandb_run_id(tmp_path))
    again = WandbLogger({"mode": "offline"}, {}, str(tmp_path), "run")  # a resumed run
    assert again.run.id == wandb_run_id(tmp_path)
    again.finish()
    wandb.teardown()


# -- 9. data edge cases ----------------------------------------------------------------------------
def test_one_class_splits(ff_fixture, tmp_path, caplog):
    """Through train.py: a train split without reals stops before the model is built, naming the split."""
    import pandas as pd

    from detect.data.class_checks import OneClassSplit, check_classes

    data = tmp_path / "data"
    (data / "dataset_json").mkdir(parents=True)
    (data / "rgb").symlink_to(ff_fixture / "rgb")
    index = json.loads((ff_fixture / "dataset_json" / "FaceForensics++.json").read_text())
    del index["FaceForensics++"]["FF-real"]["train"]
    (data / "dataset_json" / "FaceForensics++.json").write_text(json.dumps(index))
    proc = _cli("train.py", [*_common(data, tmp_path), "run_name=one"])
    assert proc.returncode != 0 and "the train split holds only fake (64 frames)" in proc.stderr
    two = pd.DataFrame({"label": [0, 1]})
    with caplog.at_level("WARNING"):
        assert check_classes({"train": two, "val": two.iloc[:1], "test/x": two}) == ["val"]
    assert "set 'val' holds only real (1 frames)" in caplog.text
    with pytest.raises(OneClassSplit):
        check_classes({"train": two.iloc[1:]})


def test_limited_eval_table_is_fixed_and_balanced():
    import pandas as pd

    from detect.data.class_checks import limited_table

    table = pd.DataFrame({"label": [0] * 20 + [1] * 80, "path": [f"{i}.png" for i in range(100)]})
    first = limited_table(table, 2, 8)
    assert len(first) == 16 and (first["label"] == 0).sum() == 8  # the first 16 rows are all real
    assert first.equals(limited_table(table, 2, 8))  # the same subset every epoch
    few_reals = limited_table(table, 5, 10)
    assert len(few_reals) == 50 and (few_reals["label"] == 0).sum() == 20  # all 20 reals, 30 fakes
    assert limited_table(table, None, 8) is table and limited_table(table, 20, 8) is table


def test_test_list_videos_missing_from_the_index_are_listed(tmp_path, caplog):
    from detect.data.index import DatasetSpec, IndexError_, load_split

    def video(vid: str, label: str) -> dict:
        return {"label": label, "frames": [f"Celeb-real/frames/{vid}/000.png"]}

    index = {
        "Celeb-DF-v2": {
            "CelebDFv2_real": {"test": {"id0_0000": video("id0_0000", "CelebDFv2_real")}},
            "CelebDFv2_fake": {"test": {"id0_id1_0000": video("id0_id1_0000", "CelebDFv2_fake")}},
        }
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    (tmp_path / "list.txt").write_text(
        "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n1 YouTube-real/00170.mp4\n"
    )
    spec = {
        "name": "Celeb-DF-v2",
        "index": str(tmp_path / "index.json"),
        "root": str(tmp_path),
        "test_list": str(tmp_path / "list.txt"),
        "labels": {
            "CelebDFv2_real": {"label": 0, "domain": "real"},
            "CelebDFv2_fake": {"label": 1, "domain": "fake"},
        },
    }
    with pytest.raises(IndexError_, match=r"1 video\(s\) of the test list .*list.txt are not in .*: 00170\."):
        load_split(DatasetSpec.from_config(spec), "test", check_files=False)
    with caplog.at_level("WARNING"):
        table = load_split(
            DatasetSpec.from_config({**spec, "missing_test_videos": "warn"}), "test", check_files=False
        )
    assert len(table) == 2 and "00170; testing without them" in caplog.text


def test_readme_folders_preprocessing_command_runs_as_written(tmp_path):
    """README: ``python scripts/preprocess.py dataset=<option> input_dir=... folders='{real: X_real, fake:
    X_fake}'`` (it failed with "Key 'real' is not in struct")."""
    raw = tmp_path / "raw"
    write_h264(raw / "real" / "a.mp4", face_video_frames(0.0))
    write_h264(raw / "fake" / "b.mp4", face_video_frames(1.0))
    proc = _cli(
        "scripts/preprocess.py",
        [
            "dataset=uadfv",
            f"input_dir={raw}",
            f"paths.data_dir={tmp_path / 'data'}",
            "folders={real: UADFV_Real, fake: UADFV_Fake}",
            "num_frames=2",
            "workers=0",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((tmp_path / "data" / "dataset_json" / "UADFV.json").read_text())
    assert set(index["UADFV"]) == {"UADFV_Real", "UADFV_Fake"}


def test_ratio_splits_are_drawn_over_the_videos_that_gave_faces():
    from detect.data.preprocess.layout import VideoEntry
    from detect.data.preprocess.pipeline import VideoJob, VideoResult, redraw_ratio_splits

    results = []
    for i in range(10):
        entry = VideoEntry(path=f"{i}.mp4", rel_dir="real", video_id=f"{i:03d}", label_name="X_real")
        job = VideoJob(entry=entry, split="train", out_dir="o", state_path="s")
        results.append(VideoResult(job=job, status="ok" if i % 2 else "no_face"))
    out = redraw_ratio_splits(results, (0.6, 0.2, 0.2), seed=0)
    ok_splits = sorted(r.job.split for r in out if r.status == "ok")
    assert ok_splits == ["test", "train", "train", "train", "val"]  # 5 usable videos: 3 / 1 / 1
    assert [r.job.split for r in out if r.status != "ok"] == ["train"] * 5  # failed ones untouched


def test_stale_generation_folders_are_removed_and_live_ones_kept(tmp_path):
    from detect.utils.scratch import make_scratch_dir, remove_stale_scratch

    code = (
        "import sys, time; from detect.utils.scratch import make_scratch_dir; "
        "print(make_scratch_dir(sys.argv[1], '.synthetic-x.tmp-'), flush=True); time.sleep(60)"
    )
    dead = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    stale = Path(dead.stdout.readline().strip())
    (stale / "big.bin").write_bytes(b"0" * 1000)
    dead.kill()  # SIGKILL: nothing of its own clean-up runs
    dead.wait()
    live = make_scratch_dir(tmp_path, ".synthetic-x.tmp-")  # held by this process
    assert remove_stale_scratch(tmp_path, ".synthetic-x.tmp-") == [stale]
    assert not stale.exists() and live.is_dir()


def test_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    """A parent holding two spawn workers (as the synthetic generator does) is SIGKILLed mid-job: the
    workers exit by themselves instead of hanging."""
    code = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from detect.data.synthetic.generator import _worker_start
with ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=_worker_start,
                         initargs=(os.getpid(),)) as ex:
    futures = [ex.submit(time.sleep, 60) for _ in range(2)]
    time.sleep(3)
    print(" ".join(str(p) for p in ex._processes), flush=True)
    time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_box_crop_keeps_every_landmark_inside():
    from detect.data.preprocess.crop import apply_affine, box_matrix, crop_matrix

    box = (100.0, 100.0, 200.0, 200.0)  # 1.3x square: [85, 215]^2
    inside = np.array([[120.0, 120.0], [180.0, 205.0]])
    assert np.array_equal(crop_matrix("box", box, inside), box_matrix(box))  # unchanged when all fit
    chin = np.array([[110.0, 130.0], [190.0, 130.0], [150.0, 236.0]])  # chin below the square
    mapped = apply_affine(crop_matrix("box", box, chin), chin)
    assert (mapped >= 0).all() and (mapped <= 256).all()
    pad = 0.02 * 130.0  # 2 % of the 130-px square's side
    side = 236.0 + pad - 85.0  # the square grows downwards just enough (the width still fits)
    assert mapped[2, 1] == pytest.approx((236.0 - 85.0) / side * 256.0)


def test_resume_check_sees_relative_paths_as_the_trainer_saved_them(tmp_path, monkeypatch):
    """Default paths are relative (data, cache, outputs); the trainer saves them absolute, and every key
    interpolating them (dataset.index, a method's cache_dir) follows: an unchanged rerun must match."""
    from helpers import compose
    from omegaconf import OmegaConf

    from detect.engine.resume_check import normalised
    from detect.engine.run_config import absolute_paths

    monkeypatch.chdir(tmp_path)
    cfg = compose(["data=real", "paths.data_dir=rel_data", "method=dpl"])
    saved = compose(["data=real", "paths.data_dir=rel_data", "method=dpl"])
    absolute_paths(saved)
    assert config_differences(OmegaConf.to_container(saved, resolve=True), normalised(cfg)) == []
    assert normalised(cfg)["dataset"]["index"].startswith(str(tmp_path))


def test_a_filesystem_without_locks_is_named(tmp_path, monkeypatch):
    import errno
    import fcntl

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(run_dir_mod.RunDirLockUnsupported, match=f"cannot lock the run directory {tmp_path}"):
        run_dir_mod.lock_run_dir(tmp_path)


def test_no_checkpoint_with_non_finite_weights_is_built(tmp_path):
    """The state a checkpoint is written from refuses NaN/inf weights (so neither last.pt nor best.pt can
    be overwritten by them), naming the tensors."""
    from types import SimpleNamespace

    from detect.engine.trainer import Trainer

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.bias.fill_(float("inf"))
    fake = SimpleNamespace(method=model, run_dir=tmp_path)
    with pytest.raises(
        FloatingPointError, match=r"non-finite weights after epoch 3 \(\['bias'\]\); no checkpoint"
    ):
        Trainer._state(fake, 3)


@pytest.mark.e2e
@pytest.mark.long
def test_torchrun_preempted_mid_epoch_resumes_bit_identically(ff_fixture, tmp_path):
    """2 gloo processes (torchrun), SIGUSR2 to both during step 10 (epoch 2, batch 3 of 8): every process
    stops at the same step, rank 0 writes last.pt with each process's RNG state; the relaunch matches
    the uninterrupted torchrun run."""

    def torchrun(name: str, **env) -> subprocess.CompletedProcess:
        cmd = [
            *torchrun_two(),
            "train.py",
            *_preempt_args(ff_fixture, tmp_path),
            "runtime.num_workers=0",
            "trainer.log_every_n_steps=1",
            f"run_name={name}",
        ]
        return subprocess.run(cmd, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=600)

    assert torchrun("straight").returncode == 0
    cut = torchrun("cut", DETECT_TEST_SIGNAL="USR2:10")
    assert cut.returncode != 0
    run = tmp_path / "runs" / "cut"
    mid = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (mid["epoch"], mid["mid_epoch"]["batch"], mid["global_step"]) == (1, 3, 11)
    assert len(mid["mid_epoch"]["rng"]) == 2 and mid["mid_epoch"]["world_size"] == 2
    resumed = torchrun("cut")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_checkpoint(tmp_path / "runs/straight/checkpoints/last.pt")["method"]
    b = load_checkpoint(run / "checkpoints" / "last.pt")["method"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
