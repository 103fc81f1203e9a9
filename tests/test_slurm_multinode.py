"""DDP across two SLURM nodes through the real CLI (`trainer=ddp_multinode hydra.launcher.nodes=2`).

The cluster is the two-node one of `eval "$(scripts/slurm-local.sh up --nodes 2)"` (CI brings it
up in .ci/run): slurmd n1 and n2 each in its own network and UTS namespace, so srun starts one
task per node, Lightning takes ranks and the rendezvous address (n1) from SLURM, and gloo talks
between the nodes over their veth pairs. The nodes share this machine's filesystem, as a real
cluster's nodes share theirs. Without such a cluster these tests skip with one line (fail under
CI=true). Jobs are the cheap ones of test_slurm.py: the synthetic mixture with an MLP, on CPU.
"""

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import test_slurm
from conftest import run_cli
from test_slurm import (
    CHEAP,
    epochs_done,
    epochs_in,
    job_outputs,
    reason_lines,
    requeue_after_epoch_2,
    results_of,
    run_dirs,
    running_jobs,
    slurm,
    summary_line,
    sweep_dir,
    unique,
)

start_sweep = test_slurm.start_sweep  # the fixture, for this module's tests too

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster", "two_nodes")]

WRITERS = Path(__file__).parent / "writers"
NO_TWO_NODES = 'needs a SLURM cluster of 2 nodes: run `eval "$(scripts/slurm-local.sh up --nodes 2)"`'


@pytest.fixture(scope="session")
def two_nodes(slurm_cluster):
    """The cluster's node names; skips (fails under CI=true) with fewer than two."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=30).stdout
    nodes = sorted(set(out.split()))
    if len(nodes) < 2:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the cluster has nodes {nodes}: {NO_TWO_NODES}", pytrace=False)
        pytest.skip(NO_TWO_NODES)
    return nodes


def two_node(name, **launcher):
    """A 2-node DDP job, one task (one gloo process on one CPU) per node."""
    return ["trainer=ddp_multinode", "trainer.accelerator=cpu", *slurm(name, nodes=2, tasks_per_node=1, **launcher)]


def task_outputs(sweep_path):
    """{global rank: its task's .out text} (submitit's <job>_<rank>_log.out)."""
    return {int(path.name.split("_")[-2]): path.read_text() for path in job_outputs(sweep_path)}


def hosts_of(outputs):
    """{global rank: the host submitit says the task started on}, from its `Starting with JobEnvironment` line."""
    return {rank: text.split("hostname=")[1].split(",")[0] for rank, text in outputs.items() if "hostname=" in text}


def metrics_row(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return rows[-1]


def test_two_node_ddp_equals_one_process(log_dir, start_sweep, tmp_path):
    # lr ~ 0 and no batch norm: both runs analyse (nearly) the initial weights, so the 2-node
    # analysis (features gathered from both nodes, padding duplicates dropped) must equal the
    # 1-process one. The PCA features of the whole test split are saved: one row per test sample.
    same = [
        *CHEAP,
        "callbacks=layerwise",
        "callbacks.layerwise.max_samples=200",
        "callbacks.layerwise.kmeans_n_init=2",
        "callbacks.plots.max_samples=null",
        "callbacks.plots.save_features=true",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "optimizer.lr=1e-12",
        "+model.backbone_kwargs.batch_norm=false",
        "seed=0",
    ]
    name = unique("mnddp")
    started = time.monotonic()
    sweep = start_sweep(name, [*same, *two_node(name)])
    single = run_cli([*same, "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path / 'single'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    rc, out, err = sweep.result()
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 1 of 1 jobs finished (1 completed)"
    print(f"2-node DDP job and 1-process run: {time.monotonic() - started:.0f} s")

    sweep_path = sweep_dir(log_dir, name)
    [run_dir] = run_dirs(sweep_path)
    assert results_of(run_dir)["status"] == "completed"
    outputs = task_outputs(sweep_path)
    assert sorted(outputs) == [0, 1] and sorted(hosts_of(outputs).values()) == ["n1", "n2"]  # one task per node
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1] and "node=1(2)" in outputs[1]  # ranks from SLURM

    # Every test sample once: as many feature rows as the split has samples, each equal to the
    # 1-process run's row of the same sample.
    ddp_features = torch.load(run_dir / "features_test.pt", weights_only=False)
    one_features = torch.load(tmp_path / "single" / "features_test.pt", weights_only=False)
    assert ddp_features["h"].shape == one_features["h"].shape and ddp_features["h"].shape[0] == 1000
    assert torch.equal(ddp_features["fine"], one_features["fine"])
    assert torch.allclose(ddp_features["h"], one_features["h"], rtol=1e-6, atol=1e-6)

    ddp, one = metrics_row(run_dir / "metrics.csv"), metrics_row(tmp_path / "single" / "metrics.csv")
    analysed = [k for k in one if k.startswith(("nc/", "fine/", "layer/")) and one[k] != ""]
    assert sum(k.startswith("layer/") for k in analysed) > 20 and "fine/test/kmeans_per_coarse_acc" in analysed
    assert float(ddp["nc/train/num_classes_present"]) == 5
    for key in analysed:
        a, b = float(one[key]), float(ddp[key])
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), (key, a, b)


def test_two_node_run_dir_has_one_writer(log_dir, start_sweep, tmp_path, monkeypatch):
    # tests/writers/sitecustomize.py, on the jobs' PYTHONPATH (sbatch passes this environment on),
    # records every file write of every Python process of the job: who wrote what is observed,
    # not inferred from the files.
    name = unique("mnwriter")
    writes = tmp_path / "writes"
    writes.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(WRITERS))
    monkeypatch.setenv("NCFINE_WRITES_LOG", str(writes))
    monkeypatch.setenv("NCFINE_WRITES_UNDER", str(sweep_dir(log_dir, name)))
    sweep = start_sweep(name, [*CHEAP, "logger=csv", "trainer.max_epochs=3", *two_node(name)])
    rc, out, err = sweep.result()
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 1 of 1 jobs finished (1 completed)"

    sweep_path = sweep_dir(log_dir, name)
    [run_dir] = run_dirs(sweep_path)
    events = [line.split(" ", 3) for path in writes.glob("*.txt") for line in path.read_text().splitlines()]
    # The observer ran on both nodes: each task wrote its own submitit result, outside the run dir.
    results_by = {host for host, _, _, path in events if path.endswith("_result.pkl")}
    assert results_by == {"n1", "n2"}, events
    # In the run dir, every write (open for writing, rename, remove) by global rank 0 on n1; other
    # tasks may only `mkdir` it (an idempotent makedirs(exist_ok=True)), never write a file there.
    in_run_dir = [(host, rank, kind, path) for host, rank, kind, path in events if path.startswith(f"{run_dir}/")]
    writers = {(host, rank) for host, rank, kind, _ in in_run_dir if kind != "os.mkdir"}
    assert writers == {("n1", "0")}, sorted(e for e in in_run_dir if e[:2] != ("n1", "0"))
    assert len(in_run_dir) > 20  # metrics.csv, results.json, checkpoints, csv logs, plots, train.log

    results = results_of(run_dir)
    assert results["status"] == "completed" and results["epochs_completed"] == 3
    assert epochs_in(run_dir) == [0, 1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt", "previous.ckpt"]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2  # loads, and is the last epoch's
    log = (run_dir / "train.log").read_text()
    outputs = task_outputs(sweep_path)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1" not in log  # rank 1 logs to its .out only
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    assert {p.name for p in (run_dir / ".hydra").iterdir()} == {
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    }


def test_misconfigured_two_node_job_fails_fast_with_one_line(log_dir, start_sweep):
    # trainer=ddp_multinode (trainer.num_nodes=2) on a 1-node allocation would wait in the
    # rendezvous for a second node; Lightning itself notices only inside the job, after the
    # queue wait and the data loading. The sweep command stops before submitting anything.
    name = unique("mnbad")
    started = time.monotonic()
    sweep = start_sweep(name, ["data=synthetic", "model=mlp", "trainer=ddp_multinode", *slurm(name, nodes=1)])
    rc, out, err = sweep.result(timeout=120)
    elapsed = time.monotonic() - started
    assert rc == 2, err[-3000:]
    error_lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert error_lines == [
        "ncfine: error: the sweep's job: trainer.num_nodes=2 but hydra.launcher.nodes=1: SLURM would start 1 "
        "node(s) for a run that waits for 2; set both to the same number"
    ], err
    assert err.strip().splitlines()[-1].startswith(f"ncfine: sweep {name}: stopped before starting its job")
    assert "Traceback" not in out + err
    assert squeue_names(name) == [] and not (sweep_dir(log_dir, name) / ".submitit").exists()  # nothing submitted
    assert elapsed < 60, elapsed  # the time to compose the config, not a rendezvous timeout
    print(f"misconfigured 2-node sweep stopped after {elapsed:.1f} s")


def squeue_names(name):
    out = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--name=ncfine_{name}", "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out.split()


def test_requeued_two_node_job_resumes_on_both_nodes(log_dir, start_sweep):
    name = unique("mnrequeue")
    sweep_path, run_dir = requeue_after_epoch_2(log_dir, start_sweep, name, two_node(name))
    last = str(run_dir / "checkpoints" / "last.ckpt")
    # Both attempts ran on both nodes, and both ranks of the second one loaded last.ckpt.
    outputs = task_outputs(sweep_path)
    for rank, host in hosts_of(outputs).items():
        starts = [line for line in outputs[rank].splitlines() if "Starting with JobEnvironment" in line]
        assert len(starts) == 2 and all(f"hostname={host}," in line for line in starts), outputs[rank][-3000:]
        assert f"[rank: {rank}] resuming from {last}" in outputs[rank], outputs[rank][-3000:]
    assert sorted(hosts_of(outputs).values()) == ["n1", "n2"]


def task_pid(job_id, rank):
    """The pid of the job's task of this global rank on this machine (its submitit process)."""
    for proc in Path("/proc").iterdir():
        try:
            environ = dict(item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item)
            cmdline = (proc / "cmdline").read_text()
        except (OSError, ValueError):
            continue
        if (
            environ.get("SLURM_JOB_ID") == job_id
            and environ.get("SLURM_PROCID") == str(rank)
            and "submitit.core._submit" in cmdline
        ):
            return int(proc.name)
    raise AssertionError(f"no task of rank {rank} of job {job_id} found")


def metrics_rows(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_dead_node_fails_the_job_with_one_line_and_a_rerun_resumes(log_dir, start_sweep):
    name = unique("mndead")
    args = [*CHEAP, "trainer.max_epochs=10", "seed=0", *two_node(name)]
    sweep = start_sweep(name, args)
    sweep_path = sweep_dir(log_dir, name)
    sweep.wait_until(lambda: epochs_done(sweep_path, seed=0) >= 2, "epoch 2 of the job")
    [job] = running_jobs(name)
    os.kill(task_pid(job, rank=1), signal.SIGKILL)  # node n2 dies: its task ends without a word
    rc, out, err = sweep.result()
    assert rc == 1, err[-3000:]
    assert "Traceback" not in out + err
    [run_dir] = run_dirs(sweep_path)
    results = results_of(run_dir)
    stopped_at = results["epochs_completed"]
    assert results["status"] == "failed" and 2 <= stopped_at < 10, results
    assert results["error"].startswith("a node or task of this 2-process DDP run died (")
    assert results["error"].endswith("; re-run the same command to resume from checkpoints/last.ckpt")
    assert "\n" not in results["error"]
    assert summary_line(err) == f"ncfine: sweep {name}: 1 of 1 jobs failed (1 failed)"
    [reason] = reason_lines(err)
    print(f"dead node: {reason}")
    assert reason.endswith(
        f"; re-run the same command to resume from checkpoints/last.ckpt [1 job failed: {run_dir.name}]"
    )
    kept = metrics_rows(run_dir)
    assert [int(row["epoch"]) for row in kept] == list(range(stopped_at))

    # The same command again resumes from last.ckpt on both nodes; the rows written before stay.
    again = start_sweep(name, args)
    rc, out, err = again.result()
    assert rc == 0, err[-3000:]
    assert summary_line(out) == f"ncfine: sweep {name}: 1 of 1 jobs finished (1 completed)"
    results = results_of(run_dir)
    assert results["status"] == "completed" and results["epochs_completed"] == 10
    assert epochs_in(run_dir) == list(range(10))
    assert metrics_rows(run_dir)[:stopped_at] == kept  # nothing already written is lost
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in (run_dir / "train.log").read_text()
