"""Data parallelism: PyTorch's DDP for one-backward methods, the explicit all-reduce for LTW's meta update;
one run directory written by rank 0 alone; checkpoints without DDP's ``module.`` prefix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import offline_env, torchrun_two
from torch import nn

from detect.engine.checkpoint import load_checkpoint
from detect.engine.distributed import call_through, gradient_sync_of, rank_overrides

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env() -> dict:
    return offline_env()


#: a backbone without BatchNorm (timm's test EfficientNet with GroupNorm), no augmentation, no dropout, and
#: SGD: then two processes with batch B are one process with batch 2B up to float rounding (Adam's
#: normalisation would magnify rounding differences of near-zero gradients).
def _common(data: Path) -> list[str]:
    return [
        "data=real",
        f"paths.data_dir={data}",
        "logger=none",
        "backbone=tiny",
        "backbone.timm_name=test_efficientnet_gn",
        "backbone.input_size=32",
        "runtime.num_workers=0",
        "trainer.progress=false",
        "augment=none",
        "dataset.manipulations=[DF,F2F]",
        "protocol.frames.train=4",
        "trainer.epochs=2",
        "trainer.limit_eval_batches=1",
        "method.optim._target_=torch.optim.SGD",
        "method.optim.lr=0.05",
    ]


BASELINE = ["method=baseline"]
# LTW's weight network normalises per sample in this variant, and the ICC loss (whose centre is the mean of
# each process's mini-batch, as BatchNorm's statistics are) is off: everything else is LTW's second-order
# meta update, whose virtual step must use the global batch's gradient.
LTW = [
    "method=ltw",
    "method._target_=ddp_scripted.LTWWithoutBatchNorm",
    "method.weight_dropout=0",
    "method.icc_weight=0",
    "method.weight_optim._target_=torch.optim.SGD",
    "method.weight_optim.lr=0.05",
]


def _single_and_two_processes(data: Path, out: Path, method: list[str]) -> tuple[dict, dict, str, Path]:
    """Train once in one process (batch 16) and once under torchrun (2 gloo processes x batch 8, the
    time-stamped default run name); returns both last checkpoints, torchrun's output and its run dir."""
    single = [sys.executable, "train.py", *_common(data), *method, f"paths.output_dir={out / 'single'}"]
    proc = subprocess.run(
        [*single, "run_name=single", "trainer.batch_size=16"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = [
        *torchrun_two(),
        "train.py",
        *_common(data),
        *method,
        f"paths.output_dir={out / 'ddp'}",
        "trainer.batch_size=8",
    ]
    proc = subprocess.run(ddp, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "ddp" / "runs").iterdir())
    assert len(runs) == 1, runs  # both ranks agreed on one run directory
    a = load_checkpoint(out / "single/runs/single/checkpoints/last.pt")
    b = load_checkpoint(runs[0] / "checkpoints/last.pt")
    return a, b, proc.stdout + proc.stderr, runs[0]


def _max_difference(a: dict, b: dict) -> float:
    assert a["global_step"] == b["global_step"] > 0
    assert list(a["method"]) == list(b["method"])  # same keys: no `module.` prefix under DDP
    assert not any(k.startswith("module.") for k in b["method"])
    return max(float((a["method"][k].double() - b["method"][k].double()).abs().max()) for k in a["method"])


@pytest.mark.e2e
def test_baseline_under_ddp_equals_one_process_with_twice_the_batch(ff_fixture, tmp_path):
    a, b, log, run = _single_and_two_processes(ff_fixture, tmp_path, BASELINE)
    assert "gradient sync: DistributedDataParallel (Baseline, find_unused_parameters=False)" in log
    diff = _max_difference(a, b)
    print(f"baseline through DDP: max abs weight difference {diff:.3g}")
    assert diff <= 1e-6
    # rank 0 alone wrote the run directory: its log holds rank 0's lines only, one copy of the config
    text = (run / "train.log").read_text()
    assert "rank 0 of 2 (gloo)" in text and "rank 1 of 2" not in text
    assert "rank 1 of 2 (gloo)" in log  # rank 1 ran, logging to the console
    assert (run / ".hydra" / "config.yaml").is_file()
    assert json.loads((run / "results.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.e2e
def test_ltw_explicit_sync_equals_one_process_with_twice_the_batch(ff_fixture, tmp_path):
    a, b, log, _ = _single_and_two_processes(ff_fixture, tmp_path, LTW)
    assert "gradient sync: explicit all-reduce after backward (LTWWithoutBatchNorm)" in log
    diff = _max_difference(a, b)
    print(f"LTW through the explicit path: max abs weight difference {diff:.3g}")
    assert diff <= 1e-6


def test_every_method_declares_its_gradient_path():
    from detect.methods.baseline import Baseline
    from detect.methods.dpl import DPL
    from detect.methods.ltw import LTW as LTWMethod
    from detect.methods.mat import MAT
    from detect.methods.prodet import ProDet
    from detect.methods.spsl import SPSL
    from detect.methods.srm import SRM

    ddp = {Baseline, SRM, SPSL, MAT, ProDet}
    for cls in (*ddp, DPL, LTWMethod):
        assert gradient_sync_of(cls) == ("ddp" if cls in ddp else "explicit"), cls
    assert MAT.find_unused_parameters and not Baseline.find_unused_parameters


class _Toy(nn.Module):
    gradient_sync = "ddp"

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 1), nn.Linear(3, 1)

    def loss_of(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return scale * self.a(x).sum()


@pytest.fixture
def one_process_group(tmp_path):
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_call_through_runs_the_method_function_as_the_ddp_forward(one_process_group):
    from torch.nn.parallel import DistributedDataParallel

    toy = _Toy()
    ddp = DistributedDataParallel(toy, find_unused_parameters=True)
    x = torch.ones(2, 3)
    loss = call_through(ddp, toy.loss_of, x, scale=2.0)
    assert "forward" not in toy.__dict__  # restored: the module's own forward again
    loss.backward()
    assert torch.allclose(toy.a.weight.grad, torch.full((1, 3), 4.0))
    assert toy.b.weight.grad is None  # unused this step: DDP was told (find_unused_parameters)
    # the step context refuses a DDP method whose step bypassed ctx.forward
    from omegaconf import OmegaConf

    from detect.engine.context import StepContext
    from detect.engine.runtime import setup_runtime

    rt = setup_runtime(
        OmegaConf.create(
            {
                "device": "cpu",
                "precision": "fp32",
                "channels_last": False,
                "threads": None,
                "distributed": "off",
                "backend": "auto",
                "sync_bn": False,
                "deterministic": False,
                "num_workers": 0,
                "pin_memory": "auto",
            }
        )
    )
    ctx = StepContext(rt)
    ctx.ddp = ddp
    opt = torch.optim.SGD(toy.parameters(), lr=0.1)
    toy.loss_of(x).backward()
    with pytest.raises(RuntimeError, match="did not run its forward through ctx.forward"):
        ctx.step(opt)
    ctx.forward(toy.loss_of, x).backward()
    ctx.step(opt)


def test_rank_overrides_share_the_run_directory_and_keep_other_ranks_from_writing():
    assert rank_overrides(["method=ltw"], {"WORLD_SIZE": "1"}) == []
    assert rank_overrides(["-m", "x=1"], {"WORLD_SIZE": "2", "RANK": "1"}) == []
    # rank 1 under a launcher without an agent store and with a run name: no copy of the config, console log
    got = rank_overrides(["run_name=a"], {"WORLD_SIZE": "2", "RANK": "1"})
    assert got == ["hydra.output_subdir=null", "hydra.job_logging.root.handlers=[console]"]
    assert rank_overrides(["run_name=a"], {"WORLD_SIZE": "2", "RANK": "0"}) == []


def test_sync_batchnorm_converts_under_several_gpu_processes_and_refuses_the_cpu():
    from detect.engine.distributed import sync_batchnorm
    from detect.engine.runtime import Runtime

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))

    gpus = Runtime(torch.device("cuda", 0), "bf16", rank=0, world_size=2)
    converted = sync_batchnorm(net(), gpus, True)
    assert isinstance(converted[1], nn.SyncBatchNorm)
    assert isinstance(sync_batchnorm(net(), gpus, False)[1], nn.BatchNorm2d)
    one = Runtime(torch.device("cpu"), "fp32")
    assert isinstance(sync_batchnorm(net(), one, True)[1], nn.BatchNorm2d)  # one process: nothing to sync
    with pytest.raises(ValueError, match="runtime.sync_bn=true: PyTorch's SyncBatchNorm runs on GPUs only"):
        sync_batchnorm(net(), Runtime(torch.device("cpu"), "fp32", rank=0, world_size=2), True)
