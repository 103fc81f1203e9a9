"""ncfine's additions to the submitit launchers, without a cluster: job states from squeue when
sacct has no accounting database (one warning), every job's outcome collected, and a terminal
results.json status for a job that will not run again (out of time-limit requeues, killed)."""

import json
import logging
import os
import signal
import stat
from types import SimpleNamespace

import pytest
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf
from submitit.core.job_environment import SignalHandler
from submitit.core.utils import DelayedSubmission, FailedJobError, UncompletedJobError

from ncfine.run import pipeline, requeue
from ncfine.run.requeue import not_requeued_error
from ncfine.sweep.status import MANIFEST_DIR, fail_unfinished_run, job_statuses
from ncfine.sweep.submitit_jobs import FORGOTTEN, QueueWatcher, collect_outcomes, parse_squeue

RESUME = "re-run the same command to resume from checkpoints/last.ckpt"


def _fake_tool(bin_dir, name, script):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_without_accounting_states_come_from_squeue_and_sacct_is_reported_once(tmp_path, monkeypatch, caplog):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # What Debian's sacct says on a cluster with AccountingStorageType=accounting_storage/none.
    _fake_tool(bin_dir, "sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1\n')
    _fake_tool(bin_dir, "squeue", 'printf "7_0|COMPLETED|vm\\n7_1|RUNNING|vm\\n7_2|CONFIGURING|vm\\n9|PENDING|\\n"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    watcher = QueueWatcher()
    for job_id in ("7_0", "7_1", "7_2", "5"):
        watcher.register_job(job_id)
    with caplog.at_level(logging.WARNING, logger="ncfine.sweep.submitit_jobs"):
        watcher.update()
        watcher.update()
    warnings = [r.getMessage() for r in caplog.records if "sacct" in r.getMessage()]
    assert warnings == [
        "sacct gives no job states (Slurm accounting storage is disabled); using squeue for the rest of this sweep"
    ]
    assert watcher.get_state("7_0", mode="cache") == "COMPLETED"
    assert watcher.get_state("7_1", mode="cache") == "RUNNING"
    assert watcher.get_state("7_2", mode="cache") == "PENDING"  # not finished, though submitit does not know it
    assert watcher.get_state("5", mode="cache") == FORGOTTEN  # SLURM forgot it (MinJobAge): done, not waited for
    assert watcher.is_done("7_0", mode="cache") and watcher.is_done("5", mode="cache")
    assert not watcher.is_done("7_1", mode="cache") and not watcher.is_done("7_2", mode="cache")
    assert "9" not in watcher._info_dict  # another sweep's job


def test_parse_squeue_keeps_the_raw_state():
    assert parse_squeue("3_1|OUT_OF_MEMORY|n1\n\n") == {
        "3_1": {"State": "OUT_OF_MEMORY", "RawState": "OUT_OF_MEMORY", "NodeList": "n1"}
    }
    assert parse_squeue("4|REQUEUE_HOLD|")["4"]["State"] == "PENDING"


class FakeJob:
    def __init__(self, job_id, outcome):
        self.job_id, self._outcome, self.state = job_id, outcome, "FAILED"

    def results(self):
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return [self._outcome]


def test_every_job_is_waited_for_and_dead_ones_are_recorded(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / MANIFEST_DIR).mkdir(parents=True)
    run_dir = sweep / "seed=1"
    run_dir.mkdir()
    (sweep / MANIFEST_DIR / "1.json").write_text(
        json.dumps({"num": 1, "run_dir": str(run_dir), "overrides": ["seed=1"]})
    )
    (run_dir / "results.json").write_text(json.dumps({"status": "running", "error": None}))
    ok = object()
    jobs = [
        FakeJob("7_0", ok),
        FakeJob("7_1", UncompletedJobError("no result")),
        FakeJob("7_2", ok),
        FakeJob("7_3", FailedJobError("trace\nRuntimeError: boom\n----\nYou can check full logs")),
    ]
    returns = collect_outcomes(jobs, [["seed=0"], ["seed=1"], ["seed=2"], ["seed=3"]], 0, sweep)

    assert returns[0] is ok and returns[2] is ok  # the job after the dead one was still collected
    assert [r.status for r in (returns[1], returns[3])] == [JobStatus.COMPLETED] * 2  # no re-raise in Hydra's sweeper
    statuses = {job["num"]: (job["status"], job["error"]) for job in job_statuses(sweep / MANIFEST_DIR)}
    # The dead job's results.json says so too (no checkpoint yet: a re-run starts over).
    killed = "job 7_1 ended without a result (state FAILED): killed, out of memory or out of requeues"
    assert statuses[1] == ("failed", f"{killed}; re-run the same command to start it again")
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert statuses[3] == ("missing", "job 7_3 raised RuntimeError: boom")


def _run_dir(path, status, checkpoint=True):
    path.mkdir(parents=True)
    if checkpoint:
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    results = {
        "status": status,
        "error": "interrupted; re-run the same command to resume",
        "epochs_completed": 4,
        "metrics": {"val/acc": 0.75},
        "run_dir": str(path),
    }
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_a_job_stopped_at_its_time_limit_ends_failed_keeping_its_progress(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / MANIFEST_DIR).mkdir(parents=True)
    run_dir = _run_dir(sweep / "seed=0", "running")
    entry = {"num": 0, "run_dir": str(run_dir), "overrides": ["seed=0"]}
    (sweep / MANIFEST_DIR / "0.json").write_text(json.dumps(entry))
    job = FakeJob("8_0", UncompletedJobError("no result"))
    job.state = "TIMEOUT"  # SLURM stopped it at the limit before it could be requeued
    collect_outcomes([job], [["seed=0"]], 0, sweep)

    results = json.loads((run_dir / "results.json").read_text())
    reason = "job 8_0 was stopped at its SLURM time limit (state TIMEOUT) and not requeued"
    assert (results["status"], results["error"]) == ("failed", f"{reason}; {RESUME}")
    assert results["epochs_completed"] == 4 and results["metrics"] == {"val/acc": 0.75}
    [entry] = job_statuses(sweep / MANIFEST_DIR)
    assert (entry["status"], entry["error"]) == ("failed", f"{reason}; {RESUME}")


def test_only_a_running_results_json_is_ended(tmp_path):
    for status in ("completed", "failed", "diverged"):
        run_dir = _run_dir(tmp_path / status, status)
        before = (run_dir / "results.json").read_text()
        assert not fail_unfinished_run(run_dir, "job 1 ended without a result")
        assert (run_dir / "results.json").read_text() == before
    assert not fail_unfinished_run(tmp_path / "never-started", "job 2 ended without a result")
    assert not (tmp_path / "never-started").exists()


def test_not_requeued_errors_name_the_cause():
    exhausted = UncompletedJobError("Job not requeued because: timed-out too many times.")
    assert not_requeued_error(exhausted, "/nowhere", max_num_timeout=0, executor="slurm") == (
        "hit the SLURM time limit 1 time (max_num_timeout=0); re-run the same command to start it again"
    )
    assert not_requeued_error(exhausted, "/nowhere", max_num_timeout=3, executor="local").startswith(
        "hit the time limit 4 times (max_num_timeout=3); "
    )
    other = UncompletedJobError("Job not requeued because: checkpoint function returned None.")
    assert not_requeued_error(other, "/nowhere").startswith("not requeued: checkpoint function returned None; ")


class _Task:
    """Stands in for ncfine's launcher in the job: submitit requeues what `checkpoint` returns."""

    def __call__(self):
        return None

    def checkpoint(self):
        return DelayedSubmission(self)


class _InterruptedRunFiles:
    """What the pipeline uses of RunFilesCallback once fit stopped on submitit's signal: 3 epochs
    done, last.ckpt saved, submitit's real handler deferred until `hand_over_preemption`."""

    epochs_completed, wall_time_s, last_row = 3, 12.5, {"epoch": 2, "train/loss": 0.25, "val/acc": 0.5}

    def __init__(self, handler):
        self.handler = handler

    def hand_over_preemption(self):
        self.handler(signal.SIGUSR2, None)


@pytest.mark.parametrize(
    "max_num_timeout, timeouts_before", [(0, 0), (1, 1), (1, 0)], ids=["0-exhausted", "1-exhausted", "1-requeued"]
)
def test_submitits_last_time_limit_ends_the_run_failed_and_an_earlier_one_requeues(
    tmp_path, monkeypatch, max_num_timeout, timeouts_before
):
    # submitit's real signal handler, as the deferred one the pipeline hands over to after fit
    # stopped and last.ckpt was saved; the job's launcher config says max_num_timeout.
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setattr(requeue, "_job_max_num_timeout", lambda: max_num_timeout)
    run_dir = _run_dir(tmp_path / "run", "running")
    delayed = DelayedSubmission(_Task())
    delayed.set_timeout(0, max_num_timeout - timeouts_before)  # 0 minutes: this signal is a time limit
    requeued = []
    env = SimpleNamespace(global_rank=0, _requeue=requeued.append)
    handler = SignalHandler(env, SimpleNamespace(submitted_pickle=tmp_path / "submitted.pkl"), delayed)
    record = pipeline.ResultsRecorder(run_dir, OmegaConf.create({"seed": 0}))
    record.running(3, _InterruptedRunFiles.last_row)

    exhausted = timeouts_before == max_num_timeout
    with pytest.raises(UncompletedJobError if exhausted else SystemExit):
        pipeline.hand_over_preemption(_InterruptedRunFiles(handler.checkpoint_and_try_requeue), record, 0.0)

    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs_completed"] == 3 and results["metrics"] == {"train/loss": 0.25, "val/acc": 0.5}
    if exhausted:
        times = max_num_timeout + 1
        assert requeued == [] and results["status"] == "failed"
        assert results["error"] == (
            f"hit the SLURM time limit {times} time{'s' * (times > 1)} (max_num_timeout={max_num_timeout}); {RESUME}"
        )
    else:  # requeued with one timeout fewer left; the requeued job resumes, so `running` is true
        assert requeued == [max_num_timeout - timeouts_before - 1] and results["status"] == "running"
