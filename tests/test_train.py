"""End-to-end runs of the real CLI and the in-process API on tiny data."""

import csv
import json

import pytest

from conftest import FAST, run_cli
from ncfine.api import compose, train


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def only_run_dir(log_dir):
    dirs = [p.parent for p in log_dir.rglob("results.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_cli_default_run_writes_run_files(log_dir):
    proc = run_cli(FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(log_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["error"] is None
    assert results["epochs_completed"] == 2
    assert results["config"]["backbone"] == "resnet10t" and results["config"]["data"] == "digits"
    for key in ("torch", "pytorch-lightning", "timm"):
        assert key in results["versions"]
    metrics = results["metrics"]
    for key in (
        "train/loss",
        "train/acc",
        "val/acc",
        "nc/train/nc1",
        "nc/test/nc4",
        "nc/train/fine/nc1",
        "fine/test/kmeans_per_coarse_acc",
        "fine/test/kmeans_global_nmi",
        "fine/probe_acc",
        "fine/knn_acc",
    ):
        assert key in metrics, key
        assert metrics[key] == metrics[key]  # not NaN
    rows = read_rows(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert list(rows[0])[0] == "epoch"
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    assert "coarse accuracy (train/acc, val/acc)" in proc.stdout and "nc/{s}/nc1" in proc.stdout  # the final table


def test_rerun_skips_completed_and_resume_extends_without_duplicates(log_dir, tmp_path):
    run_dir = tmp_path / "run"
    # The synthetic mixture and an MLP: the resume logic is the same for any model, and fast.
    overrides = FAST + ["data=synthetic", "model=mlp", f"hydra.run.dir={run_dir}"]
    assert run_cli(overrides).returncode == 0
    first = json.loads((run_dir / "results.json").read_text())

    again = run_cli(overrides)
    assert again.returncode == 0
    assert json.loads((run_dir / "results.json").read_text())["wall_time_s"] == first["wall_time_s"]

    # A completed run asked for more epochs resumes from its checkpoint (skip_completed off).
    longer = run_cli([*overrides, "trainer.max_epochs=3", "skip_completed=false"])
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert [r["epoch"] for r in read_rows(run_dir)] == ["0", "1", "2"]
    assert json.loads((run_dir / "results.json").read_text())["epochs_completed"] == 3


@pytest.mark.parametrize(
    "data_overrides",
    [
        pytest.param([], id="digits"),
        pytest.param(["data=synthetic", "model=mlp"], id="synthetic"),
    ],
)
def test_in_process_api_trains(tmp_path, data_overrides):
    cfg = compose([*data_overrides, *FAST, "trainer.max_epochs=1", "logger=none"], run_dir=tmp_path / "run")
    results = train(cfg)
    assert results["status"] == "completed"
    # Recorded under the data config's name, as a CLI run records it, so tables can mix the two.
    assert results["config"]["data"] == ("synthetic" if data_overrides else "digits")
    assert 0.0 <= results["metrics"]["val/acc"] <= 1.0
    assert results["metrics"]["nc/train/nc1"] >= 0.0
