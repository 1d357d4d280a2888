"""Submitit launchers whose requeued jobs land in their original run directory
(see ``detect.engine.launcher``); the Slurm one also runs without Slurm accounting and names failed
jobs by their Slurm id and log (see ``detect.engine.slurm_jobs``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import OmegaConf

from detect.engine.launcher import freeze_run_name, with_run_name

log = logging.getLogger(__name__)


class SlurmJobFailed(RuntimeError):
    """A sweep point's Slurm job failed; the message names the job id, its state and its log files."""


class ResumableSlurmLauncher(SlurmLauncher):
    """``hydra/launcher=slurm``: Slurm through submitit; requeued jobs keep their run directory.

    Submits the sweep as one job array like hydra-submitit-launcher, then collects every job's result,
    turning each failure into a ``SlurmJobFailed`` naming the job (the task's own exception is chained)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        import submitit

        from detect.engine.slurm_jobs import describe_failure, squeue_fallback

        name = freeze_run_name(self)
        job_overrides = with_run_name(job_overrides, name)
        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        numbers = [initial_job_idx + i for i in range(len(job_overrides))]
        for num, overrides in zip(numbers, job_overrides, strict=True):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        with squeue_fallback():
            jobs = executor.map_array(
                self,
                [list(o) for o in job_overrides],
                ["hydra.sweep.dir"] * len(numbers),
                numbers,
                [f"job_id_for_{n}" for n in numbers],
                [Singleton.get_state()] * len(numbers),
            )
            first = jobs[0].job_id.split("_")[0]
            kind = "job array" if len(jobs) > 1 else "job"
            log.info(f"Slurm {kind} {first}; logs in {Path(jobs[0].paths.folder).parent}/<job id>/")
            returns = []
            for job, overrides in zip(jobs, job_overrides, strict=True):
                try:
                    ret = job.results()[0]
                except Exception as error:  # submitit's Failed/UncompletedJobError: no JobReturn came back
                    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
                    failure = SlurmJobFailed(describe_failure(job, list(overrides)))
                    failure.__cause__ = error
                    ret.return_value = failure
                else:
                    if ret.status == JobStatus.FAILED:  # the task raised inside the job
                        failure = SlurmJobFailed(describe_failure(job, list(overrides), ret._return_value))
                        failure.__cause__ = ret._return_value
                        ret.return_value = failure
                if ret.status == JobStatus.FAILED:
                    log.error(str(ret._return_value))
                returns.append(ret)
        return returns


class ResumableLocalLauncher(LocalLauncher):
    """``hydra/launcher=local``: the same on this machine (submitit's local executor)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        name = freeze_run_name(self)
        return super().launch(with_run_name(job_overrides, name), initial_job_idx)
