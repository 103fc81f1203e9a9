"""What hydra-submitit-launcher leaves to us: every job's outcome, job states without accounting,
and submitit's log lines printed once.

- **Every job's outcome.** hydra-submitit-launcher returns `[job.results()[0] for job in jobs]`, so
  the first job whose process died without a result (SIGKILL, the OOM killer, a lost node,
  `max_num_timeout` used up) raises submitit's `UncompletedJobError` with a traceback, before the
  later jobs are even waited for. `collect_outcomes` waits for each job in turn, records a dead
  one in the sweep's job record (`ncfine.sweep.status.record_dead_job`), ends its results.json as
  `failed` if it still said `running`, and goes on, so `SweepStatusCallback` ends the sweep with
  its summary naming it.
- **A terminal status when submitit stops requeueing.** A job that hits its time limit once more
  than `max_num_timeout` allows is not requeued: submitit's handler raises instead. The run had
  just written `running` ("re-run to resume"); `ncfine.run.requeue.not_requeued_error` is the
  `failed` error the pipeline writes instead, naming the cause (`hit the SLURM time limit 2 times
  (max_num_timeout=1); re-run the same command to resume from checkpoints/last.ckpt`).
- **Job states without an accounting database.** submitit asks `sacct` for job states. A cluster
  without accounting (`AccountingStorageType=accounting_storage/none`, e.g. a single-node test
  cluster) answers every call with an error: submitit logged a warning per poll, and the state of
  a job that died without writing its result stayed UNKNOWN, so the sweep waited forever.
  `QueueWatcher` falls back to `squeue` (which lists finished jobs for `MinJobAge` seconds) after
  the first failure, saying so once per sweep.
- **One writer per run dir.** Every task of a multi-task job (DDP: `tasks_per_node` > 1 or
  `nodes` > 1) runs the whole Hydra job, and Hydra writes the run dir's `.hydra/*.yaml` and
  appends to its `train.log` in each of them: on a shared filesystem, several nodes writing the
  same files. Lightning and ncfine write only from global rank 0; `secondary_task_overrides`
  makes Hydra do the same (the other tasks log to their console, i.e. their own `.out`).
- **No log line twice.** submitit's logger has its own handlers and also propagates to the root
  logger, which Hydra configures: every submitit line appeared twice, in the sweep's output and in
  each job's `.out`. `quiet_submitit_logging` keeps submitit's own handlers only.
"""

from __future__ import annotations

import getpass
import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from ncfine.sweep.multinode import task_rank
from ncfine.sweep.status import fail_unfinished_run, record_dead_job

log = logging.getLogger(__name__)

# Job states after which SLURM does not run the job again (`squeue --states=all` spelling).
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
# The not-yet-finished states submitit knows; any other unfinished one (CONFIGURING, SUSPENDED,
# REQUEUE_HOLD, ...) is reported to it as PENDING, since submitit takes unknown states for done.
SUBMITIT_UNFINISHED = frozenset({"READY", "PENDING", "RUNNING", "REQUEUED", "COMPLETING", "PREEMPTED"})
# squeue no longer lists a job MinJobAge seconds (default 300) after it ended.
FORGOTTEN = "FORGOTTEN"


# Hydra overrides for the tasks of a job other than global rank 0: no `.hydra/` dir, no train.log.
SECONDARY_TASK_OVERRIDES = (
    "hydra.output_subdir=null",
    "hydra.job_logging.root.handlers=[console]",
    "~hydra.job_logging.handlers.file",  # logging opens every handler it defines, used or not
)


def secondary_task_overrides() -> list[str]:
    """SECONDARY_TASK_OVERRIDES in a task other than global rank 0, else none."""
    return list(SECONDARY_TASK_OVERRIDES) if task_rank() > 0 else []


def quiet_submitit_logging() -> None:
    """submitit's lines through its own handlers only (not also through Hydra's root handlers)."""
    logging.getLogger("submitit").propagate = False


class QueueWatcher(SlurmInfoWatcher):
    """submitit's job-state poller: `sacct` while it answers, `squeue` from its first failure on.

    Polls at 0, 2, 4, 8, ... s after the last submission, then every `delay_s` seconds (submitit's
    schedule); a job's result file is checked every second regardless.
    """

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self.use_squeue = False

    def update(self) -> None:
        command = self._make_command()  # the sacct command for the jobs not known to be finished
        if command is None:
            return
        self._num_calls += 1
        if not self.use_squeue:
            try:
                proc = subprocess.run(command, capture_output=True, check=True, timeout=120)
                self._info_dict.update(self.read_info(proc.stdout))
            except (OSError, subprocess.SubprocessError) as exc:
                self.use_squeue = True
                log.warning(f"sacct gives no job states ({_reason(exc)}); using squeue for the rest of this sweep")
        if self.use_squeue:
            self._info_dict.update(self._squeue_states())
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _squeue_states(self) -> dict[str, dict[str, str]]:
        # The user's jobs rather than `-j ID`: squeue fails outright when one ID is no longer known.
        command = ["squeue", "--noheader", "--array", "--states=all", "--user", getpass.getuser(), "--format=%i|%T|%N"]
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug(f"squeue failed ({_reason(exc)}); job states unchanged until the next poll")
            return {}
        listed = parse_squeue(out)
        states = {job_id: info for job_id, info in listed.items() if job_id in self._registered}
        for job_id in self._registered - self._finished - set(listed):
            states[job_id] = {"State": FORGOTTEN, "RawState": FORGOTTEN, "NodeList": ""}
        return states


def parse_squeue(text: str) -> dict[str, dict[str, str]]:
    """`JOBID|STATE|NODELIST` lines (squeue --array) -> {job_id: {State, RawState, NodeList}}."""
    states: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        raw = parts[1].strip().upper()
        state = raw if raw in FINAL_STATES or raw in SUBMITIT_UNFINISHED else "PENDING"
        states[parts[0].strip()] = {"State": state, "RawState": raw, "NodeList": parts[2] if len(parts) > 2 else ""}
    return states


def watch_with_queue(jobs: Sequence[SlurmJob], watcher: QueueWatcher | None = None) -> list[SlurmJob]:
    """Give submitted SLURM jobs (and the per-task sub-jobs of multi-task ones) one `QueueWatcher`.

    Set on the job objects: submitit builds the jobs of an array as plain `SlurmJob`s whatever
    the executor's `job_class`, all sharing the class-level sacct watcher.
    """
    watcher = watcher or QueueWatcher(delay_s=60)

    def attach(job: SlurmJob) -> None:
        job.watcher = watcher
        watcher.register_job(job.job_id)
        for sub_job in getattr(job, "_sub_jobs", []):
            attach(sub_job)

    for job in jobs:
        attach(job)
    return list(jobs)


def collect_outcomes(
    jobs: Sequence[Any], job_overrides: Sequence[Sequence[str]], initial_job_idx: int, sweep_dir: Path
) -> list[JobReturn]:
    """Wait for every job; a job that ended without a result is recorded, not raised.

    Its JobReturn is COMPLETED with no value: Hydra's sweeper re-raises a FAILED one's exception
    (with a traceback) right away; the job's real outcome is in the sweep's job record, which
    `SweepStatusCallback.on_multirun_end` turns into the summary line and the exit code.
    """
    returns: list[JobReturn] = []
    for offset, (job, overrides) in enumerate(zip(jobs, job_overrides)):
        num = initial_job_idx + offset
        try:
            returns.append(job.results()[0])
            continue
        except FailedJobError as exc:  # a subclass of UncompletedJobError: first
            reason = f"job {job.job_id} raised {_last_line(str(exc))}"
        except UncompletedJobError:
            reason = dead_job_reason(job.job_id, _state(job))
        log.error(f"job #{num}: {reason}")
        run_dir = record_dead_job(sweep_dir, num, list(overrides), reason)
        if run_dir:
            fail_unfinished_run(run_dir, reason)  # nothing runs it again: not `running` any more
        returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None))
    return returns


def dead_job_reason(job_id: str, state: str) -> str:
    """Why a job ended without a result, from its last scheduler state."""
    if state == "TIMEOUT":
        return f"job {job_id} was stopped at its SLURM time limit (state TIMEOUT) and not requeued"
    return f"job {job_id} ended without a result (state {state}): killed, out of memory or out of requeues"


def _state(job: Any) -> str:
    try:
        info = job.get_info(mode="cache") if hasattr(job, "get_info") else {}
        return info.get("RawState") or info.get("State") or job.state
    except Exception:  # noqa: BLE001 - only for the message
        return "unknown"


def _last_line(trace: str) -> str:
    lines = [line.strip() for line in trace.splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["an error"])[-1][:200]


def _reason(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", None)
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    first = (stderr or "").strip().splitlines()
    return first[0] if first else f"{type(exc).__name__}: {exc}"
