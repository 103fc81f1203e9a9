"""Distributed analysis: 2 processes (gloo, ddp_spawn) give the metrics of 1 process on the same model,
and the documented CPU route `ncfine-train trainer=ddp trainer.accelerator=cpu` runs end to end."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FAST, run_cli
from ddp_analysis_job import TEST_SUBSET, build_model

JOB = Path(__file__).with_name("ddp_analysis_job.py")


def run_job(devices, checkpoint, run_dir):
    proc = subprocess.run(
        [sys.executable, str(JOB), str(devices), str(checkpoint), str(run_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_analysis_equals_one_process(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "weights.pt"
    torch.save(build_model().state_dict(), checkpoint)

    single = run_job(1, checkpoint, tmp_path / "single")
    double = run_job(2, checkpoint, tmp_path / "ddp")
    assert len(single) == len(double) == 1  # one row per epoch: rank 1 wrote nothing

    analysed = [k for k in single[0] if k.startswith(("nc/", "fine/", "layer/", "baseline/"))]
    assert len(analysed) > 30 and "nc/train/nc1" in analysed and "fine/test/kmeans_per_coarse_acc" in analysed
    assert "baseline/input/test/kmeans_per_coarse_acc" in analysed and "baseline/init/probe_acc" in analysed
    assert "layer/layer2/test/kmeans_per_coarse_acc" in analysed and "layer/penultimate/probe_acc" in analysed
    # Both runs saw every sample once: the duplicates DistributedSampler padded in were dropped.
    assert float(double[0]["nc/train/num_classes_present"]) == 5
    for key in analysed:
        a, b = float(single[0][key]), float(double[0][key])
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), (key, a, b)
    # Cluster accuracies are multiples of 1/TEST_SUBSET: a single sample counted twice would show.
    acc = float(double[0]["fine/test/kmeans_per_coarse_acc"]) * TEST_SUBSET
    assert abs(acc - round(acc)) < 1e-6

    # Logged once: the CSV logger (rank 0 only) has the analysis metrics in exactly one row.
    with open(tmp_path / "ddp" / "csv" / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("nc/test/nc1")]
    assert len(logged) == 1 and float(logged[0]["nc/test/nc1"]) == pytest.approx(float(double[0]["nc/test/nc1"]))


@pytest.mark.slow
@pytest.mark.ddp
def test_cli_ddp_on_cpu_trains_and_rank_zero_writes_the_run_files(log_dir):
    # Lightning relaunches `python -m ncfine.train ...` for rank 1 (its Hydra-aware subprocess
    # launcher); both ranks must share one run dir and only rank 0 may write the run files.
    proc = run_cli([*FAST, "trainer=ddp", "trainer.accelerator=cpu"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir,) = [p.parent for p in log_dir.rglob("results.json")]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs_completed"] == 2
    with open(run_dir / "metrics.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]
    assert "nc/test/nc1" in results["metrics"] and "fine/probe_acc" in results["metrics"]
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 ran, in the same dir
    # SyncBatchNorm is CUDA-only: the ddp config turns it on for GPUs alone.
    assert "sync_batchnorm: false" in (run_dir / "config.yaml").read_text()
    # Analysis values are computed once and broadcast: no "use sync_dist=True" advice for them.
    assert "It is recommended to use `self.log('nc/" not in proc.stderr
