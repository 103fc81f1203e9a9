"""Hydra's basic launcher and hydra-submitit-launcher's launchers, changed where a sweep needs it.

All three run the sweep's pre-flight first (ncfine.sweep.preflight): every job composed and checked,
and a sweep with a bad value stopped (exit 2, one line per reason) before any job starts or is
queued. The submitit ones also (see ncfine.sweep.submitit_jobs): a job that died without a result no
longer aborts the sweep with `UncompletedJobError`, job states come from squeue where sacct has
no accounting database, and submitit's log lines print once.

Selected by conf/hydra/launcher/{sequential,local,slurm}.yaml (`_target_`; `sequential`, Hydra's
basic launcher, is ncfine-train's default); every field of Hydra's `basic` and submitit's
`submitit_local` / `submitit_slurm` configs keeps its meaning. Submission below is
hydra-submitit-launcher 1.2's `launch` with the last line (`[j.results()[0] for j in jobs]`)
replaced; submitit is imported lazily, as there, to keep Hydra's plugin discovery fast.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    BaseSubmititLauncher,
    LocalLauncher,
    SlurmLauncher,
    log,
)


def preflight(launcher: Any, executor: str, launcher_nodes: Any, job_overrides: Sequence[Sequence[str]]) -> None:
    """Compose and check every job of the sweep (ncfine.sweep.preflight); exits 2 on a bad value."""
    from ncfine.sweep.preflight import check_sweep, report

    config = launcher.config
    loader = launcher.hydra_context.config_loader
    verdict = check_sweep(
        str(OmegaConf.select(config, "hydra.job.config_name", default="")),
        lambda overrides: loader.load_sweep_config(config, list(overrides)),
        job_overrides,
        executor,
        launcher_nodes,
        check_jobs=bool(config.get("preflight", True)),
    )
    report(verdict, str(config.get("sweep_name", "")), Path(str(config.hydra.sweep.dir)))


class NcfineBasicLauncher(BasicLauncher):
    """`hydra/launcher=sequential` (ncfine-train's default): Hydra's basic launcher, every job in
    this process, one after another, after the pre-flight."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        preflight(self, "sequential", None, job_overrides)
        return super().launch(job_overrides, initial_job_idx)


class _CollectingLauncher(BaseSubmititLauncher):
    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        # In the job's process (unpickled by submitit), before Hydra configures its logging.
        from ncfine.sweep.submitit_jobs import quiet_submitit_logging, secondary_task_overrides

        quiet_submitit_logging()
        # Not in sweep_overrides itself: submitit's requeue resubmits these arguments as they came.
        overrides = [*sweep_overrides, *secondary_task_overrides()]
        return super().__call__(overrides, job_dir_key, job_num, job_id, singleton_state)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        from ncfine.sweep.submitit_jobs import collect_outcomes, quiet_submitit_logging

        assert self.config is not None
        assert len(job_overrides) > 0
        preflight(self, self._EXECUTOR, self.params.get("nodes"), job_overrides)  # before anything is written
        quiet_submitit_logging()
        specific_init_keys = {"max_num_timeout"}
        init_params = {f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in specific_init_keys}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"], **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        init_keys = specific_init_keys | {"submitit_folder"}
        executor.update_parameters(
            **{
                k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                for k, v in self.params.items()
                if k not in init_keys
            }
        )

        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))

        jobs = self._watch(executor.map_array(self, *zip(*job_params)))
        return collect_outcomes(jobs, job_overrides, initial_job_idx, sweep_dir)

    def _watch(self, jobs: list[Any]) -> list[Any]:
        return jobs


class NcfineLocalLauncher(_CollectingLauncher, LocalLauncher):
    """`hydra/launcher=local`: each job in its own local process (submitit's local executor)."""


class NcfineSlurmLauncher(_CollectingLauncher, SlurmLauncher):
    """`hydra/launcher=slurm`: the sweep as one SLURM job array."""

    def _watch(self, jobs: list[Any]) -> list[Any]:
        from ncfine.sweep.submitit_jobs import watch_with_queue

        return watch_with_queue(jobs)
