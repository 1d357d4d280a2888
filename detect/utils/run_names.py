"""Default run names that cannot collide, resolved once per job (``${run_id:}`` in ``conf/``).

``run_name`` names the run directory, so two jobs must never draw the same default, while every process
of one job (torchrun/srun ranks) and every requeue of that job must land in the same directory:

- a Slurm job: ``slurm-<job id>`` (array tasks ``slurm-<array job id>_<task id>``; ``-s<step>`` inside an
  ``srun`` step). Slurm keeps the job id across requeues, so a requeued job resumes its own run;
- torchrun: ``torchrun-<rendezvous id>``, or with torchrun's default id ``none`` the host, the launching
  agent's pid and the master port (shared by the ranks of one launch on one node);
- otherwise the local time to the millisecond plus 6 random hex digits.

The name is computed once per process and kept, so a job that reads ``run_name`` twice gets one answer.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping

_RESOLVED: dict[str, str] = {}


def default_run_name(env: Mapping[str, str] | None = None, now: float | None = None) -> str:
    """The default run name for this job (pure: reads ``env``, defaults to ``os.environ``)."""
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        name = f"slurm-{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    elif env.get("SLURM_JOB_ID"):
        name = f"slurm-{env['SLURM_JOB_ID']}"
    else:
        name = ""
    if name:
        step = env.get("SLURM_STEP_ID")
        return f"{name}-s{step}" if step not in (None, "", "batch", "extern") else name
    if "TORCHELASTIC_RUN_ID" in env or "LOCAL_WORLD_SIZE" in env:
        rdzv = env.get("TORCHELASTIC_RUN_ID", "none")
        if rdzv and rdzv != "none":
            return f"torchrun-{rdzv}"
        return f"torchrun-{socket.gethostname()}-{os.getppid()}-{env.get('MASTER_PORT', '0')}"
    t = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(t)) + f"-{int(t * 1000) % 1000:03d}"
    return f"{stamp}_{secrets.token_hex(3)}"


def run_id() -> str:
    """``${run_id:}``: this process's default run name, computed on first use."""
    if "name" not in _RESOLVED:
        _RESOLVED["name"] = default_run_name()
    return _RESOLVED["name"]


def register_resolvers() -> None:
    """Register ``${run_id:}`` with OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id)
