import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Keep every test hermetic: no network, no accounts, small thread pools on the 2-core CI box.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Thread budget: torch threads x test processes must not exceed the cores. Under pytest-xdist
# (`make test PYTEST_ARGS="-n 2"`) each worker gets cores // workers, else the 2 cores of CI.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Spinning OpenMP workers slow concurrent test processes on 2 cores by up to 10x.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


@pytest.fixture
def log_dir(tmp_path, monkeypatch):
    """Runs of the CLI write under tmp_path/logs."""
    path = tmp_path / "logs"
    monkeypatch.setenv("NCFINE_LOG_DIR", str(path))
    monkeypatch.setenv("NCFINE_ROOT", str(tmp_path))
    return path


def run_cli(args, env=None, timeout=600, module="ncfine.train"):
    """Run `python -m ncfine.train ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=full_env.get("NCFINE_ROOT", str(REPO)),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Small but real: two tiny epochs of the digits demo, analysis on a subset.
FAST = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.accelerator=cpu",
    "callbacks.neural_collapse.max_samples=200",
    "callbacks.fine_recovery.max_samples=200",
    "callbacks.fine_recovery.kmeans_n_init=2",
    "callbacks.baselines.max_samples=200",
    "callbacks.baselines.kmeans_n_init=2",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.plots.max_samples=200",
]


# ---- real SLURM (tests/test_slurm.py, issue #14) ---------------------------------------------
# The cluster comes from `eval "$(scripts/slurm-local.sh up)"` (SLURM_CONF). Without one the SLURM
# tests skip with one line, except in CI (CI=true), where that is a failure: CI must run them.
NO_SLURM = 'no SLURM cluster: run `eval "$(scripts/slurm-local.sh up)"`'
_slurm_version: list[str] = []


def quiet_trainer(tmp_path, callbacks, **overrides):
    """A one-epoch, two-step CPU Trainer that writes nothing (no logger, checkpoint, progress bar or
    summary), for tests that drive callbacks through Lightning directly; `overrides` replace any option."""
    import pytorch_lightning as pl

    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=2,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    return pl.Trainer(**{**options, **overrides})


@pytest.fixture(scope="module")
def tiny_digits_run(tmp_path_factory):
    """A run dir of one tiny epoch of the digits demo (5 superclasses of 2 digits) with its checkpoint,
    for the post-hoc apps and benchmarks; no logger, plots or baselines (they read the checkpoint)."""
    from ncfine.api import compose, train

    run_dir = tmp_path_factory.mktemp("digits") / "run"
    overrides = [*FAST, "trainer.max_epochs=1", "logger=none", "callbacks.plots=null", "analysis.baselines=[]"]
    results = train(compose(overrides, run_dir=run_dir))
    assert results["status"] == "completed", results["error"]
    return run_dir


def _slurmctld_version() -> str | None:
    """slurmctld's version if SLURM_CONF names a cluster that answers, else None."""
    if not os.environ.get("SLURM_CONF"):
        return None
    try:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    versions = [line.split("=", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("SLURM_VERSION")]
    return versions[0] if proc.returncode == 0 and versions else None


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running cluster's slurmctld version; skips (fails under CI=true) without a cluster."""
    version = _slurmctld_version()
    if version is None:
        reason = f"{NO_SLURM} (SLURM_CONF={os.environ.get('SLURM_CONF', 'unset')})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(NO_SLURM)
    _slurm_version[:] = [version]
    return version


def pytest_terminal_summary(terminalreporter):
    ran = [
        r
        for key in ("passed", "failed")
        for r in terminalreporter.stats.get(key, [])
        if r.when == "call" and "slurm" in r.keywords
    ]
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "slurm" in r.keywords]
    errors = [r for r in terminalreporter.stats.get("error", []) if "slurm" in getattr(r, "keywords", {})]
    if ran:
        terminalreporter.write_line(
            f"SLURM: {len(ran)} tests ran against slurmctld {_slurm_version[0] if _slurm_version else '?'}"
        )
    elif skipped or errors:
        why = f"{len(skipped)} skipped" if skipped else f"{len(errors)} errors"
        terminalreporter.write_line(f"SLURM: 0 tests ran ({why}: {NO_SLURM})")


# ---- end real SLURM ----------------------------------------------------------------------------
