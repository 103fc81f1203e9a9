"""A sweep's exit status: non-zero when any of its jobs did not finish, after all of them ran.

In a multirun, `ncfine.train` records a failing job as `status: failed` in its results.json and
returns instead of raising, so one bad config does not stop the other jobs. This Hydra callback
(registered in conf/hydra/default.yaml) then gives the sweep as a whole an honest exit code:

    ncfine: sweep smoke_grid: 2 of 8 jobs failed: <dir> (failed: <error>), <dir> (missing)

Which jobs belong to this sweep: each job, in its own process whatever the launcher (basic,
submitit local or SLURM), writes `<sweep dir>/.ncfine_jobs/<job num>.json` naming its run dir
when it starts; at the end the callback reads each run dir's results.json. A job with a manifest
but no results.json (killed before it wrote one) counts as `missing`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ncfine.utils.atomic import atomic_write_json

MANIFEST_DIR = ".ncfine_jobs"
OK_STATUSES = ("completed", "diverged")


class SweepStatusCallback(Callback):
    """Exit non-zero at the end of a multirun if a job's status is in `fail_on`.

    `fail_on` lists the statuses that fail the sweep: `failed` (an error), `missing` (no
    results.json), `running` (interrupted: a re-run resumes it); add `diverged` to also fail on a
    non-finite loss (by default a diverged job is a result, reported but not an error).
    """

    def __init__(self, fail_on: Iterable[str] = ("failed", "missing", "running"), exit_code: int = 1):
        self.fail_on = tuple(fail_on)
        self.exit_code = int(exit_code)

    # ---- in the launching process -----------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        manifest = _manifest_dir(config)
        shutil.rmtree(manifest, ignore_errors=True)  # jobs of an earlier sweep into this dir
        manifest.mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = job_statuses(_manifest_dir(config))
        line = summary_line(str(config.get("sweep_name", "")), jobs, self.fail_on)
        bad = [job for job in jobs if job["status"] in self.fail_on]
        if bad:
            print(line, file=sys.stderr, flush=True)
            sys.exit(self.exit_code)
        print(line, flush=True)

    # ---- in each job's process ----------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        atomic_write_json(
            Path(hydra_cfg.sweep.dir) / MANIFEST_DIR / f"{hydra_cfg.job.num}.json",
            {"num": hydra_cfg.job.num, "run_dir": hydra_cfg.runtime.output_dir,
             "overrides": list(hydra_cfg.overrides.task)},
        )


def _manifest_dir(config: DictConfig) -> Path:
    return Path(str(config.hydra.sweep.dir)) / MANIFEST_DIR


def job_statuses(manifest_dir: Path) -> list[dict[str, Any]]:
    """One {num, run_dir, status, error} per job that started, in job order."""
    jobs = []
    for path in Path(manifest_dir).glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        results = _read_json(Path(entry["run_dir"]) / "results.json")
        entry["status"] = results.get("status", "missing") if results else "missing"
        entry["error"] = results.get("error") if results else "no results.json (the job died before writing it)"
        jobs.append(entry)
    return sorted(jobs, key=lambda job: int(job.get("num", 0)))


def summary_line(sweep_name: str, jobs: list[dict[str, Any]], fail_on: Iterable[str]) -> str:
    """'ncfine: sweep NAME: 2 of 8 jobs failed: dir (status: error), ...' or '... 8 of 8 jobs completed ...'."""
    fail_on = tuple(fail_on)
    total = len(jobs)
    bad = [job for job in jobs if job["status"] in fail_on]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    head = f"ncfine: sweep {sweep_name}: " if sweep_name else "ncfine: sweep: "
    if not bad:
        return f"{head}{total} of {total} jobs finished ({tally})"
    dirs = ", ".join(f"{Path(job['run_dir']).name} ({job['status']})" for job in bad)
    errors: dict[str, int] = {}
    for job in bad:
        error = _short(job.get("error"))
        if error:
            errors[error] = errors.get(error, 0) + 1
    reasons = "; ".join(f"{error} (x{n})" if n > 1 else error for error, n in errors.items())
    return f"{head}{len(bad)} of {total} jobs failed ({tally}): {dirs}" + (f"; errors: {reasons}" if reasons else "")


def _short(error: str | None, width: int = 160) -> str:
    if not error:
        return ""
    first = " ".join(str(error).split())
    return first if len(first) <= width else first[: width - 3] + "..."


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
