"""Real sweeps through the CLI: Hydra's basic launcher, submitit's local launcher, failures,
the sweep's exit code, collection, W&B runs per job, and resuming interrupted runs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, run_cli
from ncfine.collect import heatmap_grid, load_runs, summarize
from ncfine.loggers.wandb import offline_run_dirs, read_run_file

# The smoke grid (2 backbones x 2 lr x 2 wd on digits, few batches) cut to one epoch on 256
# training images; the short override list keeps the job dir names readable (they are the overrides).
SMOKE = ["experiment=smoke_grid", "trainer.max_epochs=1", "++data.max_train_samples=256"]


def results_of(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def epochs_in(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def summary_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("ncfine: sweep")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def reason_lines(stderr):
    """The summary's lines after its head: one per distinct reason, the reason first and whole."""
    return [line for line in stderr.splitlines() if line.startswith("ncfine:   ")]


def test_command_line_value_replaces_a_swept_key(log_dir):
    # Hydra 1.3: a command-line value for a key in hydra.sweeper.params replaces that key's sweep.
    # trainer.max_epochs=0 is bad in every job: the pre-flight stops the 9 (not 27) before any starts.
    proc = run_cli(["experiment=paper_grid", "model.backbone=resnet18", "trainer.max_epochs=0"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert [line for line in proc.stderr.splitlines() if line.startswith("ncfine: error:")] == [
        "ncfine: error: all 9 jobs: trainer.max_epochs must be a positive integer, got 0"
    ]
    sweep = log_dir / "paper_grid" / "multirun" / "paper_grid"
    assert [p.name for p in sweep.iterdir()] == ["multirun.yaml"]  # no job dir


def test_unexpected_error_in_a_sweep_job_keeps_its_traceback_in_the_job_log(log_dir):
    # Not an NcfineError: Lightning's own ValueError at fit time. The job is recorded as failed
    # with one line, and the traceback must still reach the job's log for debugging.
    proc = run_cli(
        ["-m", "data=synthetic", "model=mlp", "logger=none", "trainer.max_epochs=1", "+trainer.val_check_interval=1000"]
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 1 jobs failed" in summary_line(proc.stderr)
    [run_dir] = [p.parent for p in log_dir.rglob("results.json")]
    results = results_of(run_dir)
    assert (
        results["status"] == "failed"
        and results["error"].startswith("ValueError:")
        and "val_check_interval" in results["error"]
    )
    job_log = (run_dir / "train.log").read_text()
    assert "Traceback (most recent call last)" in job_log and "val_check_interval" in job_log


def test_synthetic_sweep_goes_on_past_a_failed_job_and_collects_one_table(log_dir):
    # The fast tier's multirun + collect path: 2 lr x 2 wd on the synthetic mixture with an MLP,
    # one epoch each; lr=-1 fails validation in 2 jobs and the sweep still runs the other 2.
    # preflight=false: each job finds out by itself (the run-time path the pre-flight short-cuts).
    proc = run_cli(
        [
            "-m",
            "preflight=false",
            *FAST,
            "data=synthetic",
            "model=mlp",
            "logger=none",
            "trainer.max_epochs=1",
            "sweep_name=tiny",
            "optimizer.lr=0.05,-1",
            "optimizer.weight_decay=0,5e-4",
        ]
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "ncfine: sweep tiny: 2 of 4 jobs failed (2 completed, 2 failed)" in summary_line(proc.stderr)
    sweep = log_dir / "train" / "multirun" / "tiny"
    results = [results_of(d) for d in sweep.iterdir() if (d / "results.json").exists()]
    statuses = {(r["config"]["lr"], r["config"]["weight_decay"]): r["status"] for r in results}
    assert statuses == {(lr, wd): ("failed" if lr == -1 else "completed") for lr in (0.05, -1) for wd in (0, 5e-4)}

    collected = run_cli([str(sweep)], module="ncfine.collect")
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert collected.stdout.startswith("ncfine-collect: 4 jobs (2 completed, 2 failed)"), collected.stdout
    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["status"] for row in rows) == ["completed", "completed", "failed", "failed"]
    assert all(float(row["nc/train/nc1"]) > 0 for row in rows if row["status"] == "completed")


@pytest.mark.slow
def test_smoke_grid_failed_jobs_do_not_stop_the_sweep(log_dir):
    # lr=-1 fails validation in 4 of the 8 jobs (at run time: preflight=false); the other 4 train,
    # each with its own W&B run.
    proc = run_cli([*SMOKE, "optimizer.lr=0.05,-1", "logger=csv_wandb", "preflight=false"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "4 of 8 jobs failed (4 completed, 4 failed)" in summary_line(proc.stderr)
    [reason] = reason_lines(proc.stderr)
    assert reason.startswith("ncfine:   optimizer.lr must be a positive number, got -1 [4 jobs failed: ")
    assert reason.count("optimizer.lr=-1,") == 4

    sweep = log_dir / "smoke_grid" / "multirun" / "smoke_grid"
    runs = {r["job"]: r for r in load_runs(sweep)}
    assert len(runs) == 8
    for job, run in runs.items():
        assert job.startswith("++data.max_train_samples=256,model.backbone=")
        assert ",optimizer.lr=" in job and ",optimizer.weight_decay=" in job
        expected = "failed" if "optimizer.lr=-1," in job else "completed"
        assert run["status"] == expected, (job, run["error"])
    wandb_ids, pngs = set(), set()
    for job, run in runs.items():
        if run["status"] != "completed":
            continue
        run_dir = sweep / job
        assert epochs_in(run_dir) == [0]
        assert run["metrics"]["nc/train/nc1"] > 0 and 0 <= run["metrics"]["fine/test/kmeans_per_coarse_acc"] <= 1
        for png in ("pca_test.png", "nc_curves.png", "recovery_curves.png"):
            assert (run_dir / "plots" / png).stat().st_size > 5000, png
        # W&B (offline): one run per job, grouped by the sweep, holding the job's NC metrics
        [wandb_dir] = offline_run_dirs(run_dir)
        logged = read_run_file(wandb_dir)
        assert logged["run_id"] == (run_dir / "wandb_id.txt").read_text().strip()
        assert logged["group"] == "smoke_grid"
        assert logged["config"]["model"]["backbone"] == run["config"]["backbone"]
        nc1 = [row["nc/train/nc1"] for row in logged["history"] if "nc/train/nc1" in row]
        assert nc1 == [pytest.approx(run["metrics"]["nc/train/nc1"], rel=1e-6)]  # logged as float32
        assert logged["summary"]["ncfine/status"] == "completed"
        pngs |= {p.name.split("_")[0] for p in (wandb_dir / "files" / "media" / "images" / "plots").glob("*.png")}
        wandb_ids.add(logged["run_id"])
    assert len(wandb_ids) == 4  # wandb.finish() between jobs: no job reused another's W&B run
    assert pngs == {"nc", "pca", "recovery"}

    collected = run_cli([str(sweep)], module="ncfine.collect")
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.startswith("ncfine-collect: 8 jobs (4 completed, 4 failed)")
    with open(sweep / "summary.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 8
    assert sorted(p.name for p in sweep.glob("heatmap_*.png")) == [
        f"heatmap_{m}_{b}.png"
        for m in ("fine_test_kmeans_per_coarse_acc", "nc_train_nc1", "train_acc", "val_acc")  # no fine/train/...
        for b in ("resnet10t", "vgg11")
    ]
    grid = heatmap_grid(summarize(list(runs.values())), "nc/train/nc1", "vgg11")
    assert grid["lrs"] == [0.05, -1.0] and grid["labels"][1] == ["failed", "failed"]
    assert all(v > 0 for v in grid["mean"][0])


@pytest.mark.slow
def test_submitit_local_launcher_runs_jobs_in_processes_and_reruns_skip_finished(log_dir):
    # The launcher pickles the task function and config into each job's process, as on SLURM.
    args = [
        *SMOKE,
        "hydra/launcher=local",
        "model.backbone=resnet10t",
        "optimizer.weight_decay=5e-4",
        "optimizer.lr=0.05,-1",
        "preflight=false",  # lr=-1 fails in its job, at run time
    ]
    proc = run_cli(args)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs failed (1 completed, 1 failed)" in summary_line(proc.stderr)
    sweep = log_dir / "smoke_grid" / "multirun" / "smoke_grid"
    runs = {r["job"]: r for r in load_runs(sweep)}
    tail = "optimizer.weight_decay=0.0005,trainer.max_epochs=1"
    ok = sweep / f"++data.max_train_samples=256,model.backbone=resnet10t,optimizer.lr=0.05,{tail}"
    bad = sweep / f"++data.max_train_samples=256,model.backbone=resnet10t,optimizer.lr=-1,{tail}"
    assert set(runs) == {ok.name, bad.name}
    assert results_of(ok)["status"] == "completed" and results_of(bad)["status"] == "failed"
    logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two submitit jobs, one process each
    first = results_of(ok)

    # The same sweep again (the launcher is not part of the dir names; the basic one starts faster):
    # the finished job is skipped, the failed one is retried and fails again.
    again = run_cli([a for a in args if not a.startswith("hydra/launcher")])
    assert again.returncode == 1
    assert "1 of 2 jobs failed (1 completed, 1 failed)" in summary_line(again.stderr)
    assert results_of(ok)["wall_time_s"] == first["wall_time_s"]
    assert epochs_in(ok) == [0]


def _wait_for(predicate, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"run ended (rc {proc.returncode}) before the expected state: "
                f"{proc.stderr.read()[-3000:] if proc.stderr else ''}"
            )
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out")


def _epochs_done(run_dir):
    try:
        return results_of(run_dir).get("epochs_completed", 0)
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_interrupted_run_resumes_without_duplicate_epochs(log_dir, tmp_path):
    run_dir = tmp_path / "run"
    max_epochs = 8
    # The synthetic Gaussian mixture and an MLP: epochs of about a second, analysis included.
    args = [*FAST, "data=synthetic", "model=mlp", f"trainer.max_epochs={max_epochs}", f"hydra.run.dir={run_dir}"]
    command = [sys.executable, "-m", "ncfine.train", *args]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}

    def start():
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    # 1. SIGTERM (a preemption) after the first epoch: checkpoint written, status stays running.
    proc = start()
    _wait_for(lambda: _epochs_done(run_dir) >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, proc.stderr.read()[-3000:]  # not 0: the scheduler must not see success
    stopped = results_of(run_dir)
    assert stopped["status"] == "running", stopped
    assert 1 <= stopped["epochs_completed"] < max_epochs
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert epochs_in(run_dir) == list(range(stopped["epochs_completed"]))

    # 2. The same command resumes; SIGKILL (no chance to clean up) once it made progress.
    proc = start()
    _wait_for(lambda: _epochs_done(run_dir) > stopped["epochs_completed"], proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed = results_of(run_dir)
    assert killed["status"] == "running" and killed["epochs_completed"] < max_epochs
    assert killed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")  # kept past the first epoch

    # 3. The same command again finishes the run: every epoch exactly once.
    done = run_cli(args)
    assert done.returncode == 0, done.stderr[-3000:]
    final = results_of(run_dir)
    assert final["status"] == "completed" and final["epochs_completed"] == max_epochs
    assert epochs_in(run_dir) == list(range(max_epochs))


@pytest.mark.slow
def test_submitit_preemption_signal_checkpoints_then_requeues_and_the_job_finishes(log_dir, tmp_path):
    # What SLURM sends signal_delay_s before a time limit under submitit (USR2). ncfine defers
    # submitit's handler until last.ckpt holds the partial epoch; submitit then requeues the job.
    sweep = tmp_path / "sweep"
    max_epochs = 10
    args = [
        "-m",
        *FAST,
        "data=synthetic",
        "model=mlp",
        f"trainer.max_epochs={max_epochs}",
        "seed=0",
        "hydra/launcher=local",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncfine.train", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_dir = lambda: next((p.parent for p in sweep.glob("*/results.json")), None)  # noqa: E731
    _wait_for(lambda: job_dir() is not None and _epochs_done(job_dir()) >= 1, proc)
    # submitit's local job id is the pid of its job controller (the folder named %j is submitit's
    # staging area); SLURM signals the task, which is the controller's child here.
    (job_folder,) = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    controller = int(job_folder.name)
    (task,) = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]

    run_dir = job_dir()
    log = "\n".join(p.read_text() for p in job_folder.glob("*_log.*"))
    assert "interrupted at epoch" in log and "Requeued job" in log, log[-3000:]
    assert "resuming from" in log
    final = results_of(run_dir)
    assert final["status"] == "completed" and final["epochs_completed"] == max_epochs
    assert epochs_in(run_dir) == list(range(max_epochs))


SLURM_ENV = {
    "SLURM_NTASKS": "1",
    "SLURM_JOB_NAME": "ncfine_grid",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_JOB_ID": "42",
    "SLURM_NODELIST": "node1",
}


def test_under_submitit_on_slurm_only_submitit_requeues(monkeypatch, tmp_path):
    # In a SLURM job Lightning would requeue itself on SIGUSR1; under submitit that is submitit's job.
    import pytorch_lightning as pl
    from lightning_fabric.plugins.environments import SLURMEnvironment
    from omegaconf import OmegaConf

    from ncfine.run.pipeline import requeue_plugins

    cfg = OmegaConf.create({"trainer": {"max_epochs": 1}})
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)

    def cluster_environment():
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            default_root_dir=tmp_path,
            **requeue_plugins(cfg),
        )
        return trainer._accelerator_connector.cluster_environment

    plain = cluster_environment()  # own sbatch script: Lightning's auto-requeue stays on
    assert isinstance(plain, SLURMEnvironment) and plain.auto_requeue
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    under_submitit = cluster_environment()
    assert isinstance(under_submitit, SLURMEnvironment) and not under_submitit.auto_requeue


def test_sweep_status_counts_jobs_that_died_without_results_as_missing(tmp_path):
    from ncfine.sweep.status import MANIFEST_DIR, job_statuses, summary_line

    manifest = tmp_path / MANIFEST_DIR
    manifest.mkdir()
    for num, status in enumerate(["completed", "diverged", "failed", None]):
        run_dir = tmp_path / f"job{num}"
        run_dir.mkdir()
        if status:
            (run_dir / "results.json").write_text(json.dumps({"status": status, "error": f"{status}!\nline 2"}))
        (manifest / f"{num}.json").write_text(json.dumps({"num": num, "run_dir": str(run_dir), "overrides": []}))
    jobs = job_statuses(manifest)
    assert [j["status"] for j in jobs] == ["completed", "diverged", "failed", "missing"]
    lines = summary_line("grid", jobs, ("failed", "missing", "running")).splitlines()
    assert lines == [
        "ncfine: sweep grid: 2 of 4 jobs failed (1 completed, 1 diverged, 1 failed, 1 missing)",
        "ncfine:   failed! line 2 [1 job failed: job2]",
        "ncfine:   no results.json (the job died before writing it) [1 job missing: job3]",
    ]
    assert (
        summary_line("grid", jobs[:2], ("failed",))
        == "ncfine: sweep grid: 2 of 2 jobs finished (1 completed, 1 diverged)"
    )
