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
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.plots.max_samples=200",
]
