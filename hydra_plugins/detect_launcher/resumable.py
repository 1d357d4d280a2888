"""Submitit launchers whose requeued jobs land in their original run directory
(see ``detect.engine.launcher``)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from detect.engine.launcher import freeze_run_name, with_run_name


class ResumableSlurmLauncher(SlurmLauncher):
    """``hydra/launcher=slurm``: Slurm through submitit; requeued jobs keep their run directory."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        name = freeze_run_name(self)
        return super().launch(with_run_name(job_overrides, name), initial_job_idx)


class ResumableLocalLauncher(LocalLauncher):
    """``hydra/launcher=local``: the same on this machine (submitit's local executor)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        name = freeze_run_name(self)
        return super().launch(with_run_name(job_overrides, name), initial_job_idx)
