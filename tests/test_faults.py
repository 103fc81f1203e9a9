"""Faults a long run meets: preemption signals, truncated checkpoints, a diverging loss, crashes
during a write, and the determinism a re-run relies on."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FAST, run_cli
from ncfine.api import compose, train
from ncfine.utils.atomic import atomic_write_json, atomic_write_text

# The synthetic Gaussian mixture and an MLP: epochs of about a second, analysis included.
SYNTHETIC = [*FAST, "data=synthetic", "model=mlp", "logger=none"]


def results_of(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def epochs_in(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_sigusr1_checkpoints_before_exit_and_the_rerun_finishes(tmp_path):
    # What SLURM sends ahead of a time limit (submitit's signal_delay_s).
    run_dir = tmp_path / "run"
    args = [*SYNTHETIC, "trainer.max_epochs=30", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncfine.train", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "metrics.csv").exists() or len(epochs_in(run_dir)) < 1:
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before its first epoch"
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    code = proc.wait(timeout=120)
    stderr = proc.stderr.read()
    assert code == 143, stderr[-3000:]
    assert "ncfine: interrupted; checkpoint saved, re-run the same command to resume" in stderr
    stopped = results_of(run_dir)
    assert stopped["status"] == "running" and 1 <= stopped["epochs_completed"] < 30
    assert (run_dir / "checkpoints" / "last.ckpt").exists()

    done = run_cli([*args, "trainer.max_epochs=30"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert results_of(run_dir)["status"] == "completed"
    assert epochs_in(run_dir) == list(range(30))


@pytest.mark.slow
def test_truncated_checkpoint_falls_back_to_the_previous_one_then_to_a_fresh_start(tmp_path):
    run_dir = tmp_path / "run"
    args = [*SYNTHETIC, f"hydra.run.dir={run_dir}", "skip_completed=false"]
    assert run_cli([*args, "trainer.max_epochs=2"], env={"NCFINE_ROOT": str(tmp_path)}).returncode == 0
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "last.ckpt").exists() and (ckpt / "previous.ckpt").exists()  # the two newest are kept

    data = (ckpt / "last.ckpt").read_bytes()
    (ckpt / "last.ckpt").write_bytes(data[: len(data) // 3])  # a write cut short
    resumed = run_cli([*args, "trainer.max_epochs=3"], env={"NCFINE_ROOT": str(tmp_path)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr  # Hydra sends log records to stdout and RUN_DIR/train.log
    warnings = [line for line in log.splitlines() if "last.ckpt is unreadable" in line]
    assert len(warnings) == 1 and "falling back" in warnings[0], log[-3000:]
    assert "previous.ckpt (saved during epoch 0)" in log
    assert epochs_in(run_dir) == [0, 1, 2]  # epoch 1 redone from the epoch-0 checkpoint, listed once
    assert results_of(run_dir)["status"] == "completed"

    for name in ("last.ckpt", "previous.ckpt"):
        (ckpt / name).write_bytes(b"not a checkpoint")
    fresh = run_cli([*args, "trainer.max_epochs=2"], env={"NCFINE_ROOT": str(tmp_path)})
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert (fresh.stdout + fresh.stderr).count("is unreadable") == 2
    assert epochs_in(run_dir) == [0, 1] and results_of(run_dir)["epochs_completed"] == 2


def test_nan_loss_stops_within_the_epoch_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        [*SYNTHETIC, "optimizer.lr=1e30", "trainer.max_epochs=5", f"hydra.run.dir={run_dir}"],
        env={"NCFINE_ROOT": str(tmp_path)},
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    results = results_of(run_dir)
    assert results["status"] == "diverged" and results["diverged_epoch"] == 0
    assert "non-finite training loss at epoch 0" in results["error"]
    assert results["epochs_completed"] == 0


def test_atomic_writes_leave_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"status": "completed"})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, '{"status": "trunc')
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


def test_same_seed_gives_bitwise_identical_metrics_on_cpu(tmp_path):
    # The digits demo's model (BatchNorm, augmentation, shuffling) and every analysis metric.
    tables = []
    for name in ("a", "b"):
        cfg = compose([*FAST, "logger=none", "seed=3"], run_dir=tmp_path / name)
        assert train(cfg)["status"] == "completed"
        tables.append((tmp_path / name / "metrics.csv").read_text())
    assert tables[0] == tables[1]
    header = tables[0].splitlines()[0]
    assert "nc/train/nc1" in header and "fine/test/kmeans_per_coarse_acc" in header and "fine/probe_acc" in header


def test_analysis_and_its_schedule_do_not_change_the_training_trajectory(tmp_path):
    # Evaluation passes draw nothing from the global RNG: with analysis every epoch, every other
    # epoch or not at all, the same seed trains the same weights (augmentations, shuffles).
    base = [
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.accelerator=cpu",
        "logger=none",
        "seed=3",
    ]
    analysis = [
        "callbacks.neural_collapse.max_samples=200",
        "callbacks.fine_recovery.max_samples=200",
        "callbacks.fine_recovery.kmeans_n_init=2",
        "callbacks.progress_bar.refresh_rate=0",
        "callbacks.plots.max_samples=200",
    ]
    variants = {
        "every_epoch": [*base, *analysis],
        "every_2nd": [
            *base,
            *analysis,
            "callbacks.neural_collapse.every_n_epochs=2",
            "callbacks.fine_recovery.every_n_epochs=2",
        ],
        "none": [*base, "callbacks=none"],
    }
    losses = {}
    for name, overrides in variants.items():
        assert train(compose(overrides, run_dir=tmp_path / name))["status"] == "completed"
        with open(tmp_path / name / "metrics.csv") as handle:
            losses[name] = [(row["train/loss"], row["val/acc"]) for row in csv.DictReader(handle)]
    assert len(losses["none"]) == 3
    assert losses["every_epoch"] == losses["every_2nd"] == losses["none"], losses


def test_the_seed_matters(tmp_path):
    tables = []
    for seed in (3, 4):
        train(compose([*SYNTHETIC, f"seed={seed}"], run_dir=tmp_path / str(seed)))
        tables.append((tmp_path / str(seed) / "metrics.csv").read_text())
    assert tables[0] != tables[1]


def test_training_in_a_worker_thread_does_not_touch_signal_handlers(tmp_path):
    # Ray Tune trainables, web apps: fit outside the main thread, where signal.signal raises.
    import threading

    out = {}
    cfg = compose([*SYNTHETIC, "trainer.max_epochs=1"], run_dir=tmp_path / "run")
    worker = threading.Thread(target=lambda: out.update(results=train(cfg)))
    worker.start()
    worker.join(timeout=300)
    assert out["results"]["status"] == "completed", out["results"].get("error")
