"""Runtime set-up: device choice, precision checks, Slurm environment, RNG state round trip."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from helpers import RUNTIME_DEFAULTS
from omegaconf import OmegaConf

from detect.engine.runtime import _slurm_env, first_host, rng_state, set_rng_state, setup_runtime


def test_auto_device_is_cpu_here_and_fp16_needs_cuda():
    rt = setup_runtime(OmegaConf.create(RUNTIME_DEFAULTS))
    assert rt.device.type == ("cuda" if torch.cuda.is_available() else "cpu") and rt.world_size == 1
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16 needs CUDA"):
            setup_runtime(OmegaConf.create({**RUNTIME_DEFAULTS, "precision": "fp16"}))
        with pytest.raises(RuntimeError, match="runtime.device=cpu"):
            setup_runtime(OmegaConf.create({**RUNTIME_DEFAULTS, "device": "cuda"}))
    with pytest.raises(ValueError, match="precision"):
        setup_runtime(OmegaConf.create({**RUNTIME_DEFAULTS, "precision": "fp8"}))


def test_slurm_step_exports_torch_distributed_variables(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(k, "")  # recorded, so the variables _slurm_env exports are removed afterwards
        monkeypatch.delenv(k)
    monkeypatch.setenv("SLURM_NTASKS", "8")  # an allocation alone is not a job step: stay single
    _slurm_env()
    assert "WORLD_SIZE" not in os.environ
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[01-02]")
    _slurm_env()
    assert (os.environ["WORLD_SIZE"], os.environ["RANK"], os.environ["LOCAL_RANK"]) == ("8", "5", "1")
    assert os.environ["MASTER_ADDR"] == "gpu01" and os.environ["MASTER_PORT"]
    assert first_host("node7,node8") == "node7" and first_host("a[3,5-9]") == "a3"


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
