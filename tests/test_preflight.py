"""A sweep with a bad value stops before any job starts (ncfine.sweep.preflight), a run-time failure
summary puts each reason first and whole, and a completed run re-run with a larger
trainer.max_epochs is extended, not skipped (issue #27).

The sweeps are real CLI multiruns (`python -m ncfine.train -m ...`) on 2 jobs, through the
submitit local launcher and ncfine-train's default (sequential) launcher.
"""

import csv
import json
import shutil
import time

import pytest

from conftest import FAST, run_cli
from ncfine.api import compose, train
from ncfine.utils.errors import ConfigError

# Each bad value of the issue, with the one line the pre-flight prints for it.
BAD_VALUES = {
    "width": (["model.width=0"], "model.width must be a positive number (1 = the backbone as timm builds it), got 0"),
    "seed": (["seed=x"], "seed must be an integer, got 'x'"),
    "max_train_samples": (
        ["++data.max_train_samples=0"],
        "data.max_train_samples must be a positive integer or null, got 0",
    ),
    "data_root": (
        ["data=cifar10", "data.source.root=/nonexistent"],
        "CIFAR-10 not found: looked for /nonexistent/cifar-10-batches-py and /nonexistent (expected data_batch_1, "
        "data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta); set "
        "data.source.download=true or data.source.root=DIR containing cifar-10-batches-py",
    ),
}
PREFLIGHT_LIMIT_S = 20  # the budget for a bad 2-job sweep to stop, start-up included


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("ncfine: error: ")]


def assert_nothing_started(sweep):
    assert sweep.is_dir()  # Hydra's multirun.yaml: the sweep's log
    assert not list(sweep.rglob("results.json")) and not (sweep / ".submitit").exists()
    assert [p.name for p in sweep.iterdir()] == ["multirun.yaml"], list(sweep.iterdir())  # no job dir, no lock


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_bad_value_stops_a_local_sweep_before_any_job_starts(bad, log_dir):
    overrides, reason = BAD_VALUES[bad]
    started = time.monotonic()
    proc = run_cli(["-m", "hydra/launcher=local", f"sweep_name={bad}", "optimizer.lr=0.05,0.01", *overrides])
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert error_lines(proc.stderr) == [f"ncfine: error: all 2 jobs: {reason}"], proc.stderr[-3000:]
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"ncfine: sweep {bad}: stopped before starting any of its 2 jobs")
    )
    assert "Traceback" not in proc.stderr
    assert_nothing_started(log_dir / "train" / "multirun" / bad)
    assert elapsed < PREFLIGHT_LIMIT_S, f"{elapsed:.1f} s"
    print(f"{bad}: stopped after {elapsed:.1f} s")


def test_default_launcher_names_each_reason_once_with_the_jobs_it_affects(log_dir):
    # Two reasons: one in every job, one in job #1 only; the default (sequential) launcher.
    proc = run_cli(["-m", "sweep_name=mixed", "optimizer.lr=0.05,-1", "model.width=0", "seed=0"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert sorted(error_lines(proc.stderr)) == [
        "ncfine: error: 1 of 2 jobs (#1 optimizer.lr=-1): optimizer.lr must be a positive number, got -1",
        f"ncfine: error: all 2 jobs: {BAD_VALUES['width'][1]}",
    ]
    assert_nothing_started(log_dir / "train" / "multirun" / "mixed")


def test_run_time_failures_are_summarized_reason_first_and_whole(log_dir):
    # Failures the pre-flight cannot see (they need the model or Lightning's own checks): an MLP of
    # depth 0, and a val_check_interval longer than the epoch. Both jobs fail, for two reasons.
    proc = run_cli(
        [
            "-m",
            *FAST,
            "data=synthetic",
            "model=mlp",
            "logger=none",
            "trainer.max_epochs=1",
            "sweep_name=two",
            "model.backbone_kwargs.depth=0,3",
            "+trainer.val_check_interval=1000",
        ]
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    head = lines.index("ncfine: sweep two: 2 of 2 jobs failed (2 failed)")
    sweep = log_dir / "train" / "multirun" / "two"
    errors = {
        d.name: json.loads((d / "results.json").read_text())["error"]
        for d in sweep.iterdir()
        if (d / "results.json").exists()
    }
    assert len(errors) == 2 and len(set(errors.values())) == 2
    reasons = lines[head + 1 :]
    expected = sorted(f"ncfine:   {' '.join(error.split())} [1 job failed: {name}]" for name, error in errors.items())
    assert sorted(reasons) == expected  # each reason whole (its advice included), then the job
    depth = next(line for line in reasons if "depth" in line)
    assert depth.startswith("ncfine:   mlp depth must be a positive integer, got 0 [1 job failed: ")
    assert any(line.startswith("ncfine:   ValueError: `val_check_interval` (1000)") for line in reasons)


def _lrs(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return {int(row["epoch"]): float(row["train/lr"]) for row in csv.DictReader(handle)}


def test_completed_run_is_extended_by_a_larger_max_epochs(tmp_path, caplog):
    base = [*FAST, "data=synthetic", "model=mlp", "logger=none"]
    run_dir = tmp_path / "run"

    def run(epochs, where=run_dir):
        return train(compose([*base, f"trainer.max_epochs={epochs}"], run_dir=where))

    first = run(2)
    assert first["status"] == "completed" and first["epochs_completed"] == 2
    with caplog.at_level("INFO", logger="ncfine.run.pipeline"):
        assert run(2)["wall_time_s"] == first["wall_time_s"]  # the same count: skipped, as before
    assert "already completed (2 epochs); skipping. To train it further re-run it with a larger trainer.max_epochs" in (
        caplog.text
    )

    extended = run(4)
    assert extended["status"] == "completed" and extended["epochs_completed"] == 4
    assert json.loads((run_dir / "results.json").read_text())["epochs_completed"] == 4
    lrs = _lrs(run_dir)
    assert sorted(lrs) == [0, 1, 2, 3]  # each epoch once in metrics.csv
    # The cosine schedule is rebuilt for 4 epochs: the extra epochs follow a 4-epoch run's lr.
    planned = run(4, tmp_path / "four")
    assert planned["epochs_completed"] == 4
    four = _lrs(tmp_path / "four")
    assert [lrs[e] for e in (2, 3)] == pytest.approx([four[e] for e in (2, 3)], rel=1e-5)
    assert lrs[2] > 0  # not the 2-epoch schedule's end (0), nor past it
    assert run(3)["epochs_completed"] == 4  # fewer than it trained: skipped

    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(ConfigError, match="has no readable checkpoint to extend it to trainer.max_epochs=6"):
        run(6)
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"  # the result stays
