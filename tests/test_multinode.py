"""trainer.num_nodes: the config key, trainer=ddp_multinode, and the checks that stop a multi-node
run nothing would start on its other nodes before it waits in DDP's rendezvous (ncfine.sweep.multinode).
Fast tier; the real 2-node runs are in test_slurm_multinode.py."""

import json
import signal
import time

import pytest
from hydra import compose, initialize_config_dir

from conftest import run_cli
from ncfine.run.nodes import lost_peer_error, run_error
from ncfine.sweep.multinode import node_count_overrides, sweep_error
from ncfine.sweep.submitit_jobs import SECONDARY_TASK_OVERRIDES, secondary_task_overrides
from ncfine.utils.config import CONFIG_DIR


def test_num_nodes_is_a_trainer_key_and_ddp_multinode_sets_it():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        assert compose("train").trainer.num_nodes == 1
        multi = compose("train", overrides=["trainer=ddp_multinode"]).trainer
    assert (multi.strategy, multi.num_nodes, multi.devices) == ("ddp", 2, 1)


def test_sweep_error_names_both_settings():
    assert sweep_error("slurm", 2, [2, 2]) is None
    assert sweep_error("slurm", 1, [1, None]) is None
    assert sweep_error("slurm", 1, [1, 2]) == (
        "trainer.num_nodes=2 but hydra.launcher.nodes=1: SLURM would start 1 node(s) for a run that "
        "waits for 2; set both to the same number"
    )
    assert sweep_error("slurm", 2, [1]).startswith("trainer.num_nodes=1 but hydra.launcher.nodes=2:")
    assert sweep_error("local", None, [1]) is None
    assert sweep_error("local", None, [2]).startswith("trainer.num_nodes=2 but hydra/launcher=local starts")
    assert sweep_error("slurm", 1, [0]) == "trainer.num_nodes must be a positive integer, got 0"


def test_run_error_without_a_launcher_of_other_nodes():
    assert run_error(1, {}) is None and run_error(None, {}) is None
    assert run_error(2, {}).startswith("trainer.num_nodes=2 but this run was not started on 2 nodes")
    assert run_error(2, {"SLURM_NTASKS": "2"}) is None  # srun (a submitit job or the user's own sbatch)
    assert run_error(2, {"NODE_RANK": "1"}) is None  # torchrun, or by hand
    assert run_error("2", {}) == "trainer.num_nodes must be a positive integer, got '2'"


def test_node_count_overrides_picks_what_can_change_num_nodes():
    overrides = ["seed=1", "trainer=ddp_multinode", "+trainer.num_nodes=3", "experiment=smoke_grid", "data=synthetic"]
    assert node_count_overrides(overrides) == ("trainer=ddp_multinode", "+trainer.num_nodes=3", "experiment=smoke_grid")


def test_tasks_other_than_rank_zero_do_not_write_hydra_files(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert secondary_task_overrides() == []
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    assert secondary_task_overrides() == list(SECONDARY_TASK_OVERRIDES)
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
    assert secondary_task_overrides() == []


def test_plain_multi_node_run_stops_before_the_rendezvous(tmp_path):
    # Without the check this run waits 30 minutes for a second node (tried: still waiting after 60 s).
    started = time.monotonic()
    proc = run_cli(
        ["trainer=ddp_multinode", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'run'}"], timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "ncfine: error: trainer.num_nodes=2 but this run was not started on 2 nodes (no SLURM task, no torchrun); "
        "use hydra/launcher=slurm hydra.launcher.nodes=2 (with -m), or trainer.num_nodes=1"
    )
    assert "Traceback" not in proc.stderr and time.monotonic() - started < 60


def test_local_launcher_sweep_with_two_nodes_stops_before_starting_a_job(log_dir):
    # The sweep varies trainer.num_nodes: the launcher composes one job per value to find the 2.
    proc = run_cli(
        ["-m", "data=synthetic", "model=mlp", "sweep_name=nodes", "hydra/launcher=local", "trainer.num_nodes=1,2"],
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ncfine: error:")]
    assert errors == [
        "ncfine: error: 1 of 2 jobs (#1 trainer.num_nodes=2): trainer.num_nodes=2 but hydra/launcher=local "
        "starts every job on this machine only; use hydra/launcher=slurm hydra.launcher.nodes=2, or trainer.num_nodes=1"
    ]
    sweep = log_dir / "train" / "multirun" / "nodes"
    assert not (sweep / ".submitit").exists() and not list(sweep.glob("*/results.json"))  # nothing started
    assert not (sweep / ".ncfine_jobs.lock").exists()  # the sweep dir is free again


GLOO_RESET = (
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [10.223.23.12]:45200: "
    "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the application."
)


def test_lost_peer_error_is_one_short_line(tmp_path):
    from ncfine.run.pipeline import failure_error

    assert (
        lost_peer_error(RuntimeError(GLOO_RESET), 2)
        == "a node or task of this 2-process DDP run died (Connection reset by peer)"
    )
    assert lost_peer_error(RuntimeError(GLOO_RESET), 1) is None  # no peers to lose
    assert lost_peer_error(ValueError("Connection reset by peer"), 2) is None
    assert lost_peer_error(RuntimeError("CUDA out of memory"), 2) is None

    class Trainer:
        world_size = 2

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    error = failure_error(RuntimeError(GLOO_RESET), Trainer(), tmp_path)
    assert error == (
        "a node or task of this 2-process DDP run died (Connection reset by peer); "
        "re-run the same command to resume from checkpoints/last.ckpt"
    )
    assert len(error) <= 160  # the sweep summary's width per error: the resume hint is not cut off
    assert failure_error(KeyError("x"), Trainer(), tmp_path) == "KeyError: 'x'"


def _train_with_peer_loss(tmp_path, monkeypatch, sigterm):
    import pytorch_lightning as pl
    from pytorch_lightning.trainer.connectors.signal_connector import _SignalConnector

    import ncfine.run.pipeline as pipeline
    from ncfine.api import compose, train

    def notifier_whose_broadcast_fails(self, signum, frame):
        # Lightning's SIGTERM handler broadcasts to the other ranks before it sets its flag; on
        # a 2-node requeue the other node may be gone already.
        raise RuntimeError(GLOO_RESET)

    class PeerLost(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                if sigterm:
                    signal.raise_signal(signal.SIGTERM)  # as SLURM's requeue sends it
                raise RuntimeError(GLOO_RESET)  # the next collective, its peer gone

    monkeypatch.setattr(_SignalConnector, "_sigterm_notifier_fn", notifier_whose_broadcast_fails)
    real_build = pipeline.build
    monkeypatch.setattr(
        pipeline, "build", lambda cfg, extra_callbacks=None: real_build(cfg, [*extra_callbacks, PeerLost()])
    )
    cfg = compose(
        ["data=synthetic", "model=mlp", "logger=none", "trainer.max_epochs=3", "trainer.accelerator=cpu"]
        + ["callbacks=none"],
        run_dir=tmp_path / "run",
    )
    return cfg, train


def test_a_broken_collective_after_sigterm_is_an_interruption(tmp_path, monkeypatch):
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    before = signal.getsignal(signal.SIGTERM)
    cfg, train = _train_with_peer_loss(tmp_path, monkeypatch, sigterm=True)
    with pytest.raises(SIGTERMException):  # train.py exits 143: no result for submitit, SLURM requeues
        train(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "running" and results["error"] == "interrupted; re-run the same command to resume"
    assert results["epochs_completed"] == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers of the fit are gone again


def test_a_broken_collective_without_sigterm_is_a_failure(tmp_path, monkeypatch):
    cfg, train = _train_with_peer_loss(tmp_path, monkeypatch, sigterm=False)
    with pytest.raises(RuntimeError, match="Connection reset by peer"):
        train(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and results["error"].startswith(
        "RuntimeError: [/__w/pytorch"
    )  # 1 process: no peer
