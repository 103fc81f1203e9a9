"""The sweep's job record (.ncfine_jobs): one owner per sweep dir, and jobs that died without a result."""

import json
import os
import socket
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from ncfine.sweep.status import (
    MANIFEST_DIR,
    OWNER_LOCK,
    SweepDirBusy,
    SweepStatusCallback,
    claim_sweep_dir,
    job_statuses,
    record_dead_job,
    release_sweep_dir,
    summary_line,
)


def _config(sweep_dir, name="grid"):
    return OmegaConf.create({"sweep_name": name, "hydra": {"sweep": {"dir": str(sweep_dir)}}})


@pytest.fixture
def other_sweep():
    """A live process on this host standing in for another sweep's launching process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _owned_by(sweep_dir, pid, command="ncfine-train -m experiment=smoke_grid"):
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / OWNER_LOCK).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-11-30 16:00:00", "command": command})
    )


def test_second_sweep_into_a_running_sweeps_dir_is_refused_and_its_record_kept(tmp_path, other_sweep, capsys):
    sweep = tmp_path / "multirun" / "grid"
    _owned_by(sweep, other_sweep.pid)
    (sweep / MANIFEST_DIR).mkdir()
    (sweep / MANIFEST_DIR / "0.json").write_text(json.dumps({"num": 0, "run_dir": str(sweep / "a")}))

    with pytest.raises(SystemExit) as exit_info:
        SweepStatusCallback().on_multirun_start(_config(sweep))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"ncfine: error: sweep dir {sweep} is in use by a running sweep (pid {other_sweep.pid}")
    assert "ncfine-train -m experiment=smoke_grid" in err[0] and "sweep_name=" in err[0]
    assert (sweep / MANIFEST_DIR / "0.json").exists()  # the running sweep's record is untouched


def test_a_finished_or_crashed_sweeps_dir_is_taken_over(tmp_path):
    sweep = tmp_path / "grid"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _owned_by(sweep, dead.pid)  # crashed: its process is gone
    (sweep / MANIFEST_DIR).mkdir()
    (sweep / MANIFEST_DIR / "0.json").write_text("{}")

    callback = SweepStatusCallback()
    callback.on_multirun_start(_config(sweep))
    assert json.loads((sweep / OWNER_LOCK).read_text())["pid"] == os.getpid()
    assert list((sweep / MANIFEST_DIR).iterdir()) == []  # the old record is cleared for the new sweep
    claim_sweep_dir(sweep)  # the same process again (a notebook re-running a sweep) takes it back
    callback.on_multirun_end(_config(sweep))  # the end of the sweep releases it
    assert not (sweep / OWNER_LOCK).exists()
    claim_sweep_dir(sweep)  # the same command again, later
    release_sweep_dir(sweep)


def test_dead_jobs_are_named_missing_or_failed(tmp_path):
    sweep = tmp_path / "grid"
    manifest = sweep / MANIFEST_DIR
    manifest.mkdir(parents=True)
    for num, status in ((0, "completed"), (1, "running"), (2, None)):
        run_dir = sweep / f"seed={num}"
        run_dir.mkdir()
        (manifest / f"{num}.json").write_text(
            json.dumps({"num": num, "run_dir": str(run_dir), "overrides": [f"seed={num}"]})
        )
        if status:
            (run_dir / "results.json").write_text(json.dumps({"status": status, "error": None}))
    record_dead_job(sweep, 1, ["seed=1"], "job 7_1 ended without a result (state FAILED)")  # SIGKILL mid-training
    record_dead_job(sweep, 2, ["seed=2"], "job 7_2 ended without a result (state FAILED)")  # before results.json
    record_dead_job(sweep, 3, ["seed=3"], "job 7_3 ended without a result (state CANCELLED)")  # never started

    jobs = job_statuses(manifest)
    assert [(j["num"], j["status"]) for j in jobs] == [(0, "completed"), (1, "failed"), (2, "missing"), (3, "missing")]
    assert jobs[1]["error"] == "job 7_1 ended without a result (state FAILED)"
    assert summary_line("grid", jobs, ("failed", "missing", "running")).splitlines() == [
        "ncfine: sweep grid: 3 of 4 jobs failed (1 completed, 1 failed, 2 missing)",
        "ncfine:   job 7_1 ended without a result (state FAILED) [1 job failed: seed=1]",
        "ncfine:   job 7_2 ended without a result (state FAILED) [1 job missing: seed=2]",
        "ncfine:   job 7_3 ended without a result (state CANCELLED) [1 job missing: job #3 (seed=3)]",
    ]


def test_a_lock_being_written_counts_as_busy(tmp_path):
    sweep = tmp_path / "grid"
    sweep.mkdir()
    (sweep / OWNER_LOCK).write_text("")  # another sweep between creating the file and writing it
    with pytest.raises(SweepDirBusy, match=r"\(starting\)"):
        claim_sweep_dir(sweep)
    old = os.stat(sweep / OWNER_LOCK).st_mtime - 60
    os.utime(sweep / OWNER_LOCK, (old, old))  # a minute later still empty: left by a crash
    claim_sweep_dir(sweep)
    assert json.loads((sweep / OWNER_LOCK).read_text())["pid"] == os.getpid()
