"""Run-directory freezing for the submitit launchers, so that preempted jobs resume where they ran.

On preemption or timeout, submitit calls ``checkpoint()``, which resubmits the job with its original
arguments; the new process re-composes the config and would re-resolve ``${run_id:}``, landing in a
fresh directory where ``resume=auto`` finds nothing. The launchers in
``hydra_plugins.detect_launcher`` (Hydra loads launchers only from that namespace) resolve
``run_name`` and the sweep
directory once, before submission, and pass the literal ``run_name`` to every job, so a requeued job
re-composes to the same ``<sweep dir>/<job num>`` and resumes from its last checkpoint
(docs/design.md, "Runs on a cluster: preemption and requeue").
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import open_dict


def freeze_run_name(launcher) -> str:
    """Resolve ``run_name`` and ``hydra.sweep.dir`` in the launcher's config to literal strings."""
    cfg = launcher.config
    with open_dict(cfg):
        name = str(cfg.run_name)
        cfg.run_name = name
        cfg.hydra.sweep.dir = str(cfg.hydra.sweep.dir)
    return name


def with_run_name(job_overrides: Sequence[Sequence[str]], name: str) -> list[list[str]]:
    return [[o for o in job if not o.startswith("run_name=")] + [f"run_name={name}"] for job in job_overrides]
