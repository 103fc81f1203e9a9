"""The error of a run that submitit stops requeueing, in the config's terms.

A job that hits its time limit once more than the launcher's `max_num_timeout` allows is not
requeued: submitit's signal handler raises instead. The run had just written `running` ("re-run
to resume"); the pipeline writes `not_requeued_error` instead, so results.json ends `failed`
naming the cause (`hit the SLURM time limit 2 times (max_num_timeout=1); re-run the same command
to resume from checkpoints/last.ckpt`).
"""

from __future__ import annotations

import os

from ncfine.utils.checkpoints import resume_hint


def not_requeued_error(
    exc: BaseException, run_dir: str | os.PathLike, max_num_timeout: int | None = None, executor: str | None = None
) -> str:
    """The `failed` error of an interrupted run that submitit will not requeue: its handler raised
    `exc` (`Job not requeued because: timed-out too many times.`) instead of requeueing.

    Says the cause in the config's terms and how to go on. `max_num_timeout` and `executor`
    default to the running job's (its Hydra launcher config, `SUBMITIT_EXECUTOR`).
    """
    reason = str(exc).strip().removeprefix("Job not requeued because:").strip().rstrip(".")
    if reason == "timed-out too many times":
        if max_num_timeout is None:
            max_num_timeout = _job_max_num_timeout()
        reason = timeouts_exhausted(max_num_timeout, executor or os.environ.get("SUBMITIT_EXECUTOR"))
    else:
        reason = f"not requeued: {reason or type(exc).__name__}"
    return f"{reason}; {resume_hint(run_dir)}"


def timeouts_exhausted(max_num_timeout: int | None, executor: str | None) -> str:
    """'hit the SLURM time limit N times (max_num_timeout=N-1)': submitit requeues a job for its
    first max_num_timeout time limits and gives up at the next one (preemptions do not count)."""
    limit = "the SLURM time limit" if executor == "slurm" else "the time limit"
    if max_num_timeout is None:
        return f"hit {limit} more often than max_num_timeout allows"
    times = int(max_num_timeout) + 1
    return f"hit {limit} {times} time{'' if times == 1 else 's'} (max_num_timeout={max_num_timeout})"


def _job_max_num_timeout() -> int | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        value = HydraConfig.get().launcher.get("max_num_timeout")
        return None if value is None else int(value)
    except Exception:  # noqa: BLE001 - outside a Hydra job, or a launcher without the field
        return None
