"""Sweeps on a real SLURM cluster through the real CLI (`python -m ncfine.train -m ... hydra/launcher=slurm`).

The cluster is the single-node one of `eval "$(scripts/slurm-local.sh up)"` (CI brings it up in
.ci/run); without one these tests skip with one line (fail under CI=true, see conftest.py). Each
test injects one event with SLURM's own tools (`scontrol requeue`, a time limit, `scancel
--signal=KILL`, a bad override, `srun` with 2 tasks) and asserts on the run dirs the sweep left.
Jobs train the synthetic Gaussian mixture with an MLP (about a second per epoch on 2 cores), so
the cost is mostly SLURM's scheduling and the Python start-up of each job.
"""

import csv
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

# Cheap jobs: synthetic data, MLP, analysis on a subset. No `progress_bar.refresh_rate=0`: the
# one-line-per-epoch display is part of what is checked in the jobs' .out files.
CHEAP = [
    "data=synthetic",
    "model=mlp",
    "logger=none",
    "trainer.accelerator=cpu",
    "callbacks.neural_collapse.max_samples=200",
    "callbacks.fine_recovery.max_samples=200",
    "callbacks.fine_recovery.kmeans_n_init=2",
    "callbacks.plots.max_samples=200",
]


def slurm(name, **launcher):
    """Launcher overrides for the 2-core test node: one CPU per job, no GPU, little memory."""
    fields = {"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, **launcher}
    return [f"sweep_name={name}", "hydra/launcher=slurm", *(f"hydra.launcher.{k}={v}" for k, v in fields.items())]


def unique(name):
    # Finished jobs stay in squeue for MinJobAge: a name per test run keeps the jobs apart.
    return f"{name}{os.getpid()}"


class Sweep:
    """`python -m ncfine.train ARGS` in the background, its output in files."""

    def __init__(self, args, log_dir):
        self.root = Path(os.environ["NCFINE_ROOT"])
        self.out, self.err = self.root / "sweep.out", self.root / "sweep.err"
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ncfine.train", "-m", *args],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=err,
                text=True,
            )

    def running(self):
        return self.proc.poll() is None

    def result(self, timeout=300):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"sweep still running after {timeout} s: {self.err.read_text()[-3000:]}") from None
        return rc, self.out.read_text(), self.err.read_text()

    def wait_until(self, predicate, what, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if not self.running():
                raise AssertionError(
                    f"sweep ended (rc {self.proc.returncode}) before {what}: {self.err.read_text()[-3000:]}"
                )
            time.sleep(0.3)
        self.proc.kill()
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def start_sweep(log_dir):
    """start_sweep(name, args) -> a running Sweep; a failed test leaves no sweep or job behind."""
    started = []

    def start(name, args):
        sweep = Sweep(args, log_dir)
        started.append((name, sweep))
        return sweep

    yield start
    for name, sweep in started:
        if sweep.running():
            sweep.proc.kill()
            sweep.proc.wait()
        subprocess.run(["scancel", f"--name=ncfine_{name}"], capture_output=True, timeout=60)


def squeue(name):
    """[(job id, state)] of the sweep's jobs (job name ncfine_<sweep_name>), array tasks one per line."""
    out = subprocess.run(
        ["squeue", "--noheader", "--array", "--states=all", f"--name=ncfine_{name}", "--format=%i|%T"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [tuple(line.split("|")) for line in out.split()]


def running_jobs(name):
    return [job for job, state in squeue(name) if state == "RUNNING"]


def restarts(job_id):
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=60).stdout
    return int(out.split("Restarts=")[1].split()[0])


def sweep_dir(log_dir, name):
    return log_dir / "train" / "multirun" / name


def run_dirs(sweep):
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def results_of(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def epochs_in(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def run_dir_where(sweep, **config):
    """The run dir whose results.json config has these values (dir names can be cut to a hash)."""
    for path in sweep.glob("*/results.json"):
        try:
            summary = json.loads(path.read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if all(summary.get(k) == v for k, v in config.items()):
            return path.parent
    return None


def epochs_done(sweep, **config):
    run_dir = run_dir_where(sweep, **config)
    try:
        return results_of(run_dir).get("epochs_completed", 0) if run_dir else 0
    except (OSError, ValueError):
        return 0


def summary_line(text):
    lines = [line for line in text.splitlines() if line.startswith("ncfine: sweep")]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def reason_lines(text):
    """The summary's lines after its head: one per distinct reason, the reason first and whole."""
    return [line for line in text.splitlines() if line.startswith("ncfine:   ")]


def log_span(run_dir):
    """(first, last) timestamp of the run's train.log (Hydra's `[YYYY-mm-dd HH:MM:SS,mmm]` prefix)."""
    stamps = [
        datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
        for line in (run_dir / "train.log").read_text().splitlines()
        if line.startswith("[20")
    ]
    return stamps[0], stamps[-1]


def job_outputs(sweep):
    return sorted((sweep / ".submitit").rglob("*_log.out"))


def test_array_sweep_respects_array_parallelism_and_collects(log_dir, start_sweep):
    name = unique("array")
    sweep = start_sweep(name, [*CHEAP, "trainer.max_epochs=2", "seed=0,1,2", *slurm(name, array_parallelism=1)])
    seen, most_at_once = set(), 0
    while sweep.running():
        running = running_jobs(name)
        seen |= set(running)
        most_at_once = max(most_at_once, len(running))
        time.sleep(0.3)
    rc, out, err = sweep.result()
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 3 of 3 jobs finished (3 completed)"
    # One job array (ids <array>_<task>), never more than array_parallelism=1 task running,
    # though the node has room for two.
    assert most_at_once == 1 and len({job.split("_")[0] for job in seen}) == 1 and all("_" in j for j in seen)

    sweep_path = sweep_dir(log_dir, name)
    dirs = run_dirs(sweep_path)
    assert sorted(results_of(d)["config"]["seed"] for d in dirs) == [0, 1, 2]
    for run_dir in dirs:
        assert results_of(run_dir)["status"] == "completed"
        assert epochs_in(run_dir) == [0, 1]
    # The run dirs agree: the jobs' training spans do not overlap.
    spans = sorted(log_span(d) for d in dirs)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans

    collected = run_cli([str(sweep_path)], module="ncfine.collect")
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert collected.stdout.startswith("ncfine-collect: 3 jobs (3 completed)")
    with open(sweep_path / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(float(r["seed"])) for r in rows) == [0, 1, 2] and {r["status"] for r in rows} == {"completed"}

    # Logs: no accounting database here, so sacct fails; said once for the sweep, not per poll.
    assert (out + err).count("sacct") == 1, out + err
    launcher_lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(launcher_lines) == len(set(launcher_lines)), launcher_lines
    outputs = job_outputs(sweep_path)
    assert len(outputs) == 3
    for path in outputs:
        text = path.read_text()
        assert "\r" not in text  # no tqdm frames in a SLURM .out
        assert [line.split("  ")[0] for line in text.splitlines() if line.startswith("epoch ")] == [
            "epoch 1/2",
            "epoch 2/2",
        ]
        assert text.count("Job completed successfully") == 1, text  # submitit's lines once, not also via Hydra


def requeue_after_epoch_2(log_dir, start_sweep, name, launcher):
    """Run one 10-epoch job with the `launcher` overrides, `scontrol requeue` it after epoch 2 (what
    a preemption does; SIGTERM to every task) and check that it completes after exactly one restart,
    every epoch once, resumed from last.ckpt. Returns (sweep dir, run dir)."""
    sweep = start_sweep(name, [*CHEAP, "trainer.max_epochs=10", "seed=0", *launcher])
    sweep_path = sweep_dir(log_dir, name)
    sweep.wait_until(lambda: epochs_done(sweep_path, seed=0) >= 2, "epoch 2 of the job")
    [job] = running_jobs(name)
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
    rc, out, err = sweep.result()
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 1 of 1 jobs finished (1 completed)"
    assert restarts(job) == 1

    [run_dir] = run_dirs(sweep_path)
    results = results_of(run_dir)
    assert results["status"] == "completed" and results["epochs_completed"] == 10
    assert epochs_in(run_dir) == list(range(10))  # every epoch exactly once
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in (run_dir / "train.log").read_text()
    return sweep_path, run_dir


def test_requeued_job_resumes_from_last_checkpoint(log_dir, start_sweep):
    name = unique("requeue")
    _, run_dir = requeue_after_epoch_2(log_dir, start_sweep, name, slurm(name))
    assert "Received SIGTERM" in (run_dir / "train.log").read_text()


def test_time_limit_checkpoints_requeues_and_completes(log_dir, start_sweep):
    # slurmctld checks time limits every 30 s and sends `--signal=USR2@signal_delay_s` at the first
    # check where less than signal_delay_s + 30 s remain. So that the signal lands while the job
    # trains whatever this machine's speed, the test cuts the running job's limit to 1 minute with
    # `scontrol update` once training is under way (the signal then comes within 30 s; 150 epochs
    # take longer), and gives the requeued job its 10 minutes back so the rest runs in one attempt.
    name = unique("timelimit")
    epochs = 150
    sweep = start_sweep(
        name,
        [
            *CHEAP,
            f"trainer.max_epochs={epochs}",
            "seed=0",
            *slurm(name, timeout_min=10, signal_delay_s=45, max_num_timeout=3),
        ],
    )
    sweep_path = sweep_dir(log_dir, name)
    sweep.wait_until(lambda: epochs_done(sweep_path, seed=0) >= 3, "epoch 3 of the job")
    [job] = running_jobs(name)
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=1"], check=True, timeout=60)
    sweep.wait_until(lambda: restarts(job) >= 1, "the job's requeue", timeout=120)
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True, timeout=60)
    stopped_at = epochs_done(sweep_path, seed=0)
    assert 3 <= stopped_at < epochs, stopped_at  # requeued mid-training
    rc, out, err = sweep.result(timeout=420)
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 1 of 1 jobs finished (1 completed)"

    [run_dir] = run_dirs(sweep_path)
    results = results_of(run_dir)
    assert results["status"] == "completed" and results["epochs_completed"] == epochs
    assert epochs_in(run_dir) == list(range(epochs))  # every epoch exactly once
    log = (run_dir / "train.log").read_text()
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in log
    assert restarts(job) == 1
    job_out = "".join(path.read_text() for path in job_outputs(sweep_path))
    assert "Caught signal SIGUSR2" in job_out and "this job is timed-out" in job_out
    assert "Requeued job" in job_out and "(2 remaining timeouts)" in job_out  # max_num_timeout=3, one used


def test_time_limit_past_max_num_timeout_ends_the_run_failed_and_a_rerun_resumes(log_dir, start_sweep):
    # max_num_timeout=0: submitit requeues for no time limit. The limit is cut to 1 minute once
    # training is under way, as in the test above, so SIGUSR2 comes while the job trains.
    name = unique("outoftime")
    epochs = 150
    args = [
        *CHEAP,
        f"trainer.max_epochs={epochs}",
        "seed=0",
        *slurm(name, timeout_min=10, signal_delay_s=45, max_num_timeout=0),
    ]
    sweep = start_sweep(name, args)
    sweep_path = sweep_dir(log_dir, name)
    sweep.wait_until(lambda: epochs_done(sweep_path, seed=0) >= 3, "epoch 3 of the job")
    [job] = running_jobs(name)
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=1"], check=True, timeout=60)
    rc, out, err = sweep.result(timeout=180)
    assert rc == 1, err[-3000:]
    assert restarts(job) == 0

    [run_dir] = run_dirs(sweep_path)
    results = results_of(run_dir)
    error = (
        "hit the SLURM time limit 1 time (max_num_timeout=0); "
        "re-run the same command to resume from checkpoints/last.ckpt"
    )
    assert (results["status"], results["error"]) == ("failed", error)  # not `running`: nothing will requeue it
    stopped_at = results["epochs_completed"]
    assert 3 <= stopped_at < epochs and "val/acc" in results["metrics"]
    assert epochs_in(run_dir) == list(range(stopped_at))
    assert summary_line(err) == f"ncfine: sweep {name}: 1 of 1 jobs failed (1 failed)"
    assert reason_lines(err) == [f"ncfine:   {error} [1 job failed: {run_dir.name}]"]
    job_out = "".join(path.read_text() for path in job_outputs(sweep_path))
    assert "this job is timed-out" in job_out and "Job not requeued because: timed-out too many times" in job_out
    collected = run_cli([str(sweep_path)], module="ncfine.collect")
    assert collected.stdout.startswith("ncfine-collect: 1 jobs (1 failed)"), collected.stderr[-3000:]

    # The same command again resumes the failed run from its last.ckpt (only completed runs are skipped).
    again = start_sweep(name, args)
    last = str(run_dir / "checkpoints" / "last.ckpt")
    again.wait_until(lambda: epochs_done(sweep_path, seed=0) > stopped_at, "an epoch past the failed run's last")
    resumed = results_of(run_dir)
    assert resumed["status"] == "running" and resumed["resumed_from"] == last
    assert epochs_in(run_dir)[: stopped_at + 1] == list(range(stopped_at + 1))


def test_killed_job_is_named_in_the_summary_and_the_others_finish(log_dir, start_sweep):
    name = unique("killed")
    sweep = start_sweep(name, [*CHEAP, "trainer.max_epochs=8", "seed=0,1,2", *slurm(name, array_parallelism=2)])
    sweep_path = sweep_dir(log_dir, name)
    sweep.wait_until(lambda: epochs_done(sweep_path, seed=1) >= 1, "epoch 1 of job seed=1")
    [task] = [job for job in running_jobs(name) if job.endswith("_1")]
    subprocess.run(["scancel", "--signal=KILL", task], check=True, timeout=60)  # as the OOM killer would
    rc, out, err = sweep.result()
    assert rc == 1, err[-3000:]
    assert "Traceback" not in out + err and "UncompletedJobError" not in out + err
    killed = run_dir_where(sweep_path, seed=1)
    assert summary_line(err) == f"ncfine: sweep {name}: 1 of 3 jobs failed (2 completed, 1 failed)"
    [reason] = reason_lines(err)
    assert reason.startswith(f"ncfine:   job {task} ended without a result") and reason.endswith(
        f"[1 job failed: {killed.name}]"
    ), reason

    for run_dir in run_dirs(sweep_path):
        if run_dir != killed:
            assert results_of(run_dir)["status"] == "completed" and epochs_in(run_dir) == list(range(8))
    # The killed process left `running`; the launcher, which saw the job end, ends it `failed`
    # (progress kept). A re-run resumes it: only completed runs are skipped.
    results = results_of(killed)
    assert results["status"] == "failed" and 1 <= results["epochs_completed"] < 8
    assert results["error"].startswith(f"job {task} ended without a result")
    assert results["error"].endswith("; re-run the same command to resume from checkpoints/last.ckpt")


def test_failing_job_does_not_stop_the_others(log_dir, start_sweep):
    # preflight=false: lr=-1 fails inside its job (the pre-flight would stop the sweep first).
    name = unique("failing")
    args = [*CHEAP, "trainer.max_epochs=2", "seed=0", "optimizer.lr=0.05,-1", "preflight=false"]
    sweep = start_sweep(name, [*args, *slurm(name, array_parallelism=2)])
    rc, out, err = sweep.result()
    assert rc == 1, err[-3000:]
    assert summary_line(err) == f"ncfine: sweep {name}: 1 of 2 jobs failed (1 completed, 1 failed)"
    [reason] = reason_lines(err)
    assert reason.startswith("ncfine:   optimizer.lr must be a positive number, got -1 [1 job failed: ")
    statuses = {results_of(d)["config"]["lr"]: results_of(d)["status"] for d in run_dirs(sweep_dir(log_dir, name))}
    assert statuses == {0.05: "completed", -1: "failed"}


def test_bad_sweep_submits_nothing(log_dir, start_sweep):
    # The pre-flight composes and checks both jobs on the submitting host: model.width=0 stops the
    # sweep before sbatch, so SLURM never sees a job (squeue --states=all lists none by its name).
    name = unique("badsweep")
    started = time.monotonic()
    sweep = start_sweep(name, [*CHEAP, "model.width=0", "seed=0,1", *slurm(name)])
    rc, out, err = sweep.result(timeout=120)
    elapsed = time.monotonic() - started
    assert rc == 2, err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("ncfine: error:")] == [
        "ncfine: error: all 2 jobs: model.width must be a positive number (1 = the backbone as timm builds it), got 0"
    ], err
    assert squeue(name) == []  # never submitted (squeue --states=all also lists finished jobs)
    sweep_path = sweep_dir(log_dir, name)
    assert not (sweep_path / ".submitit").exists() and not list(sweep_path.rglob("results.json"))
    print(f"bad SLURM sweep stopped after {elapsed:.1f} s, nothing submitted")


def test_data_root_missing_on_the_submitting_host_warns_and_submits(log_dir, start_sweep, tmp_path):
    # The nodes may mount paths the login node does not: a missing data root is a warning there.
    # Here the node is this machine, so the job then fails with the source's own message.
    name = unique("noroot")
    missing = tmp_path / "not_here"
    cheap = [a for a in CHEAP if not a.startswith(("data=", "model="))]
    args = [*cheap, "data=cifar10", "model.backbone=resnet10t", f"data.source.root={missing}"]
    sweep = start_sweep(name, [*args, "trainer.max_epochs=1", "seed=0", *slurm(name)])
    rc, out, err = sweep.result()
    warnings = [line for line in err.splitlines() if line.startswith("ncfine: warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("ncfine: warning: the sweep's job: CIFAR-10 not found"), err
    assert "the nodes may see other paths, so the jobs are submitted anyway" in warnings[0]
    assert rc == 1, err[-3000:]
    [reason] = reason_lines(err)
    assert reason.startswith("ncfine:   CIFAR-10 not found: looked for") and "data.source.download=true" in reason


def test_ddp_inside_one_slurm_job_equals_one_process(log_dir, start_sweep, tmp_path):
    # lr ~ 0 and no batch norm: both runs analyse (nearly) the initial weights, so the 2-rank
    # analysis (features gathered over ranks) must equal the 1-process one, as in test_ddp.py.
    same = [
        *CHEAP,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "optimizer.lr=1e-12",
        "+model.backbone_kwargs.batch_norm=false",
        "seed=0",
    ]
    name = unique("ddp")
    sweep = start_sweep(
        name, [*same, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *slurm(name, tasks_per_node=2)]
    )
    single = run_cli([*same, "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path / 'single'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    rc, out, err = sweep.result()
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 1 of 1 jobs finished (1 completed)"

    sweep_path = sweep_dir(log_dir, name)
    [run_dir] = run_dirs(sweep_path)  # both ranks, one run dir
    assert results_of(run_dir)["status"] == "completed" and epochs_in(run_dir) == [0]  # written once, by rank 0
    outputs = {path.name.split("_")[-2]: path.read_text() for path in job_outputs(sweep_path)}
    assert sorted(outputs) == ["0", "1"]  # srun started 2 tasks
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs["1"]  # Lightning took rank 1 from SLURM
    assert "epoch 1/1" in outputs["0"] and "epoch 1/1" not in outputs["1"]

    with open(run_dir / "metrics.csv") as handle:
        [ddp] = list(csv.DictReader(handle))
    with open(tmp_path / "single" / "metrics.csv") as handle:
        [one] = list(csv.DictReader(handle))
    analysed = [k for k in one if k.startswith(("nc/", "fine/"))]
    assert len(analysed) > 30 and "fine/test/kmeans_per_coarse_acc" in analysed
    assert float(ddp["nc/train/num_classes_present"]) == 5
    for key in analysed:
        a, b = float(one[key]), float(ddp[key])
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (key, a, b)
