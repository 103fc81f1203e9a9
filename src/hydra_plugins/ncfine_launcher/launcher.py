"""hydra-submitit-launcher's launchers, changed where a sweep needs it (see ncfine.submitit_jobs):
a job that died without a result no longer aborts the sweep with `UncompletedJobError`, job states
come from squeue where sacct has no accounting database, and submitit's log lines print once.

Selected by conf/hydra/launcher/{local,slurm}.yaml (`_target_`); every field of submitit's
`submitit_local` / `submitit_slurm` configs keeps its meaning. Submission below is
hydra-submitit-launcher 1.2's `launch` with the last line (`[j.results()[0] for j in jobs]`)
replaced; submitit is imported lazily, as there, to keep Hydra's plugin discovery fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        from ncfine.submitit_jobs import quiet_submitit_logging, secondary_task_overrides

        quiet_submitit_logging()
        # Not in sweep_overrides itself: submitit's requeue resubmits these arguments as they came.
        overrides = [*sweep_overrides, *secondary_task_overrides()]
        return super().__call__(overrides, job_dir_key, job_num, job_id, singleton_state)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        from ncfine.submitit_jobs import collect_outcomes, quiet_submitit_logging

        assert self.config is not None
        assert len(job_overrides) > 0
        self._check_nodes(job_overrides, Path(str(self.config.hydra.sweep.dir)))  # before anything is written
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

    def _check_nodes(self, job_overrides: Sequence[Sequence[str]], sweep_dir: Path) -> None:
        """Stop before submitting when a job's trainer.num_nodes does not match the nodes this
        launcher starts (ncfine.multinode): such a job would wait in DDP's rendezvous until its
        timeout. The sweep's config holds every job's value unless the jobs differ in an override
        that can change it (trainer..., experiment=...); then one job per such difference is
        composed as it will compose itself (about 0.3 s each: not every job of a big grid)."""
        from ncfine.multinode import node_count_overrides, sweep_error
        from ncfine.sweep_status import release_sweep_dir

        assert self.hydra_context is not None and self.config is not None
        distinct = {node_count_overrides(overrides): list(overrides) for overrides in job_overrides}
        if len(distinct) <= 1:
            per_job = [OmegaConf.select(self.config, "trainer.num_nodes")]
        else:
            loader = self.hydra_context.config_loader
            per_job = [
                OmegaConf.select(loader.load_sweep_config(self.config, overrides), "trainer.num_nodes")
                for overrides in distinct.values()
            ]
        error = sweep_error(self._EXECUTOR, self.params.get("nodes"), per_job)
        if error:
            release_sweep_dir(sweep_dir)
            print(f"ncfine: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)


class NcfineLocalLauncher(_CollectingLauncher, LocalLauncher):
    """`hydra/launcher=local`: each job in its own local process (submitit's local executor)."""


class NcfineSlurmLauncher(_CollectingLauncher, SlurmLauncher):
    """`hydra/launcher=slurm`: the sweep as one SLURM job array."""

    def _watch(self, jobs: list[Any]) -> list[Any]:
        from ncfine.submitit_jobs import watch_with_queue

        return watch_with_queue(jobs)
