"""A sweep's exit status: non-zero when any of its jobs did not finish, after all of them ran.

In a multirun, `ncfine.train` records a failing job as `status: failed` in its results.json and
returns instead of raising, so one bad config does not stop the other jobs. This Hydra callback
(registered in conf/hydra/default.yaml) then gives the sweep as a whole an honest exit code:

    ncfine: sweep smoke_grid: 2 of 8 jobs failed (6 completed, 1 failed, 1 missing)
    ncfine:   <error, whole> [1 job failed: <dir>]
    ncfine:   no results.json (the job died before writing it) [1 job missing: <dir>]

Which jobs belong to this sweep: each job, in its own process whatever the launcher (basic,
submitit local or SLURM), writes `<sweep dir>/.ncfine_jobs/<job num>.json` naming its run dir
when it starts; at the end the callback reads each run dir's results.json. A job with a manifest
but no results.json (killed before it wrote one) counts as `missing`. A job whose process died
without returning (SIGKILL, out of memory, out of requeues) is added to the record by ncfine's
submitit launchers (`record_dead_job`): `missing` without a results.json, `failed` when its
results.json still says `running`, with the scheduler's reason as its error. The launchers also
end such a results.json as `failed` (`fail_unfinished_run`), so the run dir and ncfine-collect say
what the summary says instead of `running`.

One sweep at a time per sweep dir: the record is cleared when a sweep starts, so a second sweep
with the same `sweep_name` (same dir) while the first still runs is refused with one line naming
the running one (`<sweep dir>/.ncfine_jobs.lock`: pid, host, command, start time).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ncfine.utils.atomic import atomic_write_json
from ncfine.utils.checkpoints import resume_hint

MANIFEST_DIR = ".ncfine_jobs"
OWNER_LOCK = ".ncfine_jobs.lock"  # next to MANIFEST_DIR, so clearing the record keeps it
OK_STATUSES = ("completed", "diverged")
FINAL_STATUSES = ("completed", "diverged", "failed")


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
        try:
            claim_sweep_dir(manifest.parent)
        except SweepDirBusy as exc:
            print(f"ncfine: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        shutil.rmtree(manifest, ignore_errors=True)  # jobs of an earlier sweep into this dir
        manifest.mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        manifest = _manifest_dir(config)
        jobs = job_statuses(manifest)
        release_sweep_dir(manifest.parent)
        summary = summary_line(str(config.get("sweep_name", "")), jobs, self.fail_on)
        bad = [job for job in jobs if job["status"] in self.fail_on]
        if bad:
            print(summary, file=sys.stderr, flush=True)
            sys.exit(self.exit_code)
        print(summary, flush=True)

    # ---- in each job's process ----------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from ncfine.sweep.multinode import task_rank

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN or task_rank() > 0:
            return  # rank 0 of a multi-task (DDP) job records it for all
        atomic_write_json(
            Path(hydra_cfg.sweep.dir) / MANIFEST_DIR / f"{hydra_cfg.job.num}.json",
            {
                "num": hydra_cfg.job.num,
                "run_dir": hydra_cfg.runtime.output_dir,
                "overrides": list(hydra_cfg.overrides.task),
            },
        )


def _manifest_dir(config: DictConfig) -> Path:
    return Path(str(config.hydra.sweep.dir)) / MANIFEST_DIR


def job_statuses(manifest_dir: Path) -> list[dict[str, Any]]:
    """One {num, run_dir, status, error} per job that started or died, in job order."""
    jobs = []
    for path in Path(manifest_dir).glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        run_dir = entry.get("run_dir")
        results = _read_json(Path(run_dir) / "results.json") if run_dir else None
        entry["status"] = results.get("status", "missing") if results else "missing"
        entry["error"] = results.get("error") if results else "no results.json (the job died before writing it)"
        died = entry.get("died")
        if died and entry["status"] not in FINAL_STATUSES:
            # The process is gone: a results.json saying `running` is no longer true.
            entry["status"] = "missing" if results is None else "failed"
            entry["error"] = died
        jobs.append(entry)
    return sorted(jobs, key=lambda job: int(job.get("num", 0)))


def record_dead_job(sweep_dir: Path, num: int, overrides: list[str], reason: str) -> str | None:
    """Add to the job record that job `num` ended without returning (the launcher knows, the job
    could not say). Keeps the run dir the job recorded when it started, if it got that far, and
    returns it (None if the job never got one)."""
    path = Path(sweep_dir) / MANIFEST_DIR / f"{num}.json"
    entry = _read_json(path) or {"num": num, "run_dir": None, "overrides": list(overrides)}
    entry["died"] = reason
    atomic_write_json(path, entry)
    return entry.get("run_dir")


def fail_unfinished_run(run_dir: str | os.PathLike, reason: str) -> bool:
    """End a run whose job is gone for good as `failed` if its results.json still says `running`.

    `running` means "interrupted, resumes when re-run"; once the scheduler will not run the job
    again (killed, out of requeues) that reads as if it were still going. Epochs and last metrics
    stay, and a re-run still resumes from last.ckpt: only `completed` runs are skipped. Returns
    whether results.json was rewritten (atomically).
    """
    path = Path(run_dir) / "results.json"
    results = _read_json(path)
    if not results or results.get("status") != "running":
        return False
    results["status"] = "failed"
    results["error"] = f"{reason}; {resume_hint(run_dir)}"
    atomic_write_json(path, results)
    return True


class SweepDirBusy(RuntimeError):
    """Another sweep, still running, owns this sweep dir's job record."""


def claim_sweep_dir(sweep_dir: Path) -> None:
    """Make this process the owner of `sweep_dir`'s job record, or raise SweepDirBusy naming the
    running owner. An owner whose process is gone (same host) is stale and replaced."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = sweep_dir / OWNER_LOCK
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
    }
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_json(lock)
            if owner is None and _age_s(lock) < 10:
                owner = {"pid": "?", "host": "?", "started": "just now", "command": "(starting)"}  # being written
            elif owner is None or not _alive(owner) or _is_me(owner):
                lock.unlink(missing_ok=True)  # stale: a crashed sweep, an unreadable file, or ours from before
                continue
            raise SweepDirBusy(
                f"sweep dir {sweep_dir} is in use by a running sweep (pid {owner.get('pid')} on "
                f"{owner.get('host')}, started {owner.get('started')}: {owner.get('command')}); wait for it, "
                f"or give this one another sweep_name=... (if that sweep is not running, delete {lock})"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return
    raise SweepDirBusy(f"could not claim sweep dir {sweep_dir}: {lock} keeps reappearing")


def release_sweep_dir(sweep_dir: Path) -> None:
    lock = Path(sweep_dir) / OWNER_LOCK
    owner = _read_json(lock)
    if owner and _is_me(owner):
        lock.unlink(missing_ok=True)


def _is_me(owner: dict[str, Any]) -> bool:
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot check a process on another machine: assume it runs
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


def summary_line(sweep_name: str, jobs: list[dict[str, Any]], fail_on: Iterable[str]) -> str:
    """The sweep's summary: one line when every job finished ('ncfine: sweep NAME: 8 of 8 jobs
    finished (...)'), else that line ('2 of 8 jobs failed (...)') followed by one line per distinct
    reason, the reason first and whole (its advice included), then how many jobs and which:

        ncfine: sweep grid: 3 of 4 jobs failed (1 completed, 3 failed)
        ncfine:   mlp depth must be a positive integer, got 0 [2 jobs failed: a, b]
        ncfine:   ValueError: `val_check_interval` (1000) must be ... [1 job failed: c]
    """
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
    return "\n".join([f"{head}{len(bad)} of {total} jobs failed ({tally})", *reason_lines(bad)])


def reason_lines(jobs: list[dict[str, Any]]) -> list[str]:
    """'ncfine:   REASON [N jobs STATUS: dir, dir]', one per distinct (status, reason), in job order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        reason = " ".join(str(job.get("error") or "no error recorded").split())  # one line, nothing cut
        groups.setdefault((job["status"], reason), []).append(_job_name(job))
    return [
        f"ncfine:   {reason} [{len(names)} job{'s' if len(names) > 1 else ''} {status}: {', '.join(names)}]"
        for (status, reason), names in groups.items()
    ]


def _job_name(job: dict[str, Any]) -> str:
    if job.get("run_dir"):
        return Path(job["run_dir"]).name
    return f"job #{job.get('num')} ({','.join(job.get('overrides') or [])})"  # died before it had a run dir


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
