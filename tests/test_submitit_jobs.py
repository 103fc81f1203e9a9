"""ncfine's additions to the submitit launchers, without a cluster: job states from squeue when
sacct has no accounting database (one warning), and every job's outcome collected."""

import json
import logging
import os
import stat

from hydra.core.utils import JobStatus
from submitit.core.utils import FailedJobError, UncompletedJobError

from ncfine.submitit_jobs import FORGOTTEN, QueueWatcher, collect_outcomes, parse_squeue
from ncfine.sweep_status import MANIFEST_DIR, job_statuses


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
    with caplog.at_level(logging.WARNING, logger="ncfine.submitit_jobs"):
        watcher.update()
        watcher.update()
    warnings = [r.getMessage() for r in caplog.records if "sacct" in r.getMessage()]
    assert warnings == ["sacct gives no job states (Slurm accounting storage is disabled); "
                        "using squeue for the rest of this sweep"]
    assert watcher.get_state("7_0", mode="cache") == "COMPLETED"
    assert watcher.get_state("7_1", mode="cache") == "RUNNING"
    assert watcher.get_state("7_2", mode="cache") == "PENDING"  # not finished, though submitit does not know it
    assert watcher.get_state("5", mode="cache") == FORGOTTEN  # SLURM forgot it (MinJobAge): done, not waited for
    assert watcher.is_done("7_0", mode="cache") and watcher.is_done("5", mode="cache")
    assert not watcher.is_done("7_1", mode="cache") and not watcher.is_done("7_2", mode="cache")
    assert "9" not in watcher._info_dict  # another sweep's job


def test_parse_squeue_keeps_the_raw_state():
    assert parse_squeue("3_1|OUT_OF_MEMORY|n1\n\n") == {"3_1": {"State": "OUT_OF_MEMORY", "RawState": "OUT_OF_MEMORY",
                                                                 "NodeList": "n1"}}
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
    (sweep / MANIFEST_DIR / "1.json").write_text(json.dumps({"num": 1, "run_dir": str(run_dir), "overrides": ["seed=1"]}))
    (run_dir / "results.json").write_text(json.dumps({"status": "running", "error": None}))
    ok = object()
    jobs = [FakeJob("7_0", ok), FakeJob("7_1", UncompletedJobError("no result")), FakeJob("7_2", ok),
            FakeJob("7_3", FailedJobError("trace\nRuntimeError: boom\n----\nYou can check full logs"))]
    returns = collect_outcomes(jobs, [["seed=0"], ["seed=1"], ["seed=2"], ["seed=3"]], 0, sweep)

    assert returns[0] is ok and returns[2] is ok  # the job after the dead one was still collected
    assert [r.status for r in (returns[1], returns[3])] == [JobStatus.COMPLETED] * 2  # no re-raise in Hydra's sweeper
    statuses = {job["num"]: (job["status"], job["error"]) for job in job_statuses(sweep / MANIFEST_DIR)}
    assert statuses[1] == ("failed", "job 7_1 ended without a result (state FAILED): killed, out of memory or out of requeues")
    assert statuses[3] == ("missing", "job 7_3 raised RuntimeError: boom")
