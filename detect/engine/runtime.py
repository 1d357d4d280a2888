"""Devices, precision, seeding and torch.distributed set-up (torchrun or a Slurm/submitit allocation).

Data parallelism is plain ``torch.distributed``: each process trains on its shard of the data and
gradients are averaged across processes inside ``StepContext.step`` (so methods with custom updates,
second-order steps or several optimisers need no engine changes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    """Where and how this process runs."""

    device: torch.device
    precision: str
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    channels_last: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _DTYPES[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for bf16/fp16, a no-op for fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def _slurm_env() -> None:
    """Export RANK/WORLD_SIZE/MASTER_ADDR... inside a Slurm job step of several tasks (srun, submitit).

    Only a job *step* counts (``SLURM_STEP_NUM_TASKS``): a plain ``python train.py`` inside an allocation
    of several tasks stays a single process."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) <= 1:
        return
    try:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except (ImportError, RuntimeError) as err:  # plain srun without submitit's job environment
        log.warning("submitit environment unavailable (%s); reading SLURM_* variables", err)
        os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_STEP_NUM_TASKS"])
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
        if "MASTER_ADDR" not in os.environ:
            nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "localhost")
            os.environ["MASTER_ADDR"] = first_host(nodes)


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``gpu[01-04,07],cpu1`` → ``gpu01``."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        return "localhost"
    prefix, ranges = m.group(1), m.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def setup_runtime(cfg) -> Runtime:
    """Pick the device, precision and (when launched so) initialise the process group."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    want = str(cfg.distributed)
    if want in ("auto", "True", "true"):
        _slurm_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if want in ("False", "false", "off"):
        world = 1
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = str(cfg.device)
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda" and world > 1:
        dev = f"cuda:{local_rank}"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device={cfg.device} but CUDA is not available; use runtime.device=cpu")
    device = torch.device(dev)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = str(cfg.precision)
    if precision not in _DTYPES:
        raise ValueError(f"runtime.precision={precision!r}; use one of {sorted(_DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("runtime.precision=fp16 needs CUDA; use bf16 on the CPU")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if world > 1 and not dist.is_initialized():
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        log.info("process group: rank %d of %d (%s)", rank, world, backend)
    return Runtime(device, precision, rank, world, local_rank, bool(cfg.channels_last))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    seed = int(seed) % (2**32)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A seed derived from several integers (run seed, epoch, rank ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def rng_state() -> dict:
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    py = state["python"]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), py[-1]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cleanup() -> None:
    """Destroy the process group if this process created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
