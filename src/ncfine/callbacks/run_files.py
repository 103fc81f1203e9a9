"""The run dir's own files: metrics.csv (one row per epoch), results.json and resumable checkpoints.

Runs as a `Checkpoint` callback, so Lightning calls it after the other callbacks and the module at
the end of each epoch: the row it writes holds that epoch's training, validation and analysis
metrics, and the checkpoint it saves right after holds the same rows. Resuming from a checkpoint
restores the table from it, so every epoch appears exactly once in metrics.csv whatever the crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ncfine.callbacks.baselines import BaselinesCallback
from ncfine.callbacks.epoch_analysis import EpochAnalysisCallback
from ncfine.callbacks.preemption import PreemptionSignals
from ncfine.results.run_dir import rows_to_csv
from ncfine.utils.atomic import atomic_write_text
from ncfine.utils.checkpoints import LAST, PREVIOUS
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)


class RunFilesCallback(Checkpoint):
    """Writes `metrics.csv` and `checkpoints/{last,previous}.ckpt` at the end of every epoch.

    `on_epoch_written(epochs_completed, row)` is called after each row (the pipeline uses it to keep
    results.json's `running` status current). Checkpoints are written atomically (temp + rename) and
    the two newest are kept, so a checkpoint truncated by a crash can fall back to the one before.
    """

    def __init__(self, run_dir: str | os.PathLike, on_epoch_written: Callable[[int, dict], None] | None = None):
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.on_epoch_written = on_epoch_written
        self.rows: list[dict[str, float]] = []
        self.prior_wall_time_s = 0.0
        self._start = time.monotonic()
        self._val_epoch: int | None = None
        self._val_metrics: dict[str, float] = {}
        self.signals: PreemptionSignals | None = None

    # ---- state carried inside the checkpoint -------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "wall_time_s": self.wall_time_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self.prior_wall_time_s = float(state_dict.get("wall_time_s", 0.0))
        self._start = time.monotonic()

    @property
    def wall_time_s(self) -> float:
        return self.prior_wall_time_s + (time.monotonic() - self._start)

    @property
    def epochs_completed(self) -> int:
        return len(self.rows)

    @property
    def last_row(self) -> dict[str, float]:
        return dict(self.rows[-1]) if self.rows else {}

    # ---- hooks ---------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.monotonic()
        self.signals = PreemptionSignals(lambda signum: trainer._signal_connector._sigterm_notifier_fn(signum, None))
        self.signals.install()
        if trainer.is_global_zero:
            self._write_table()  # drops rows past the checkpoint we resumed from
            if self.rows and self.on_epoch_written is not None:  # resumed: results.json says how far
                self.on_epoch_written(self.epochs_completed, self.last_row)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.signals is not None:
            self.signals.watch_sigterm()  # Lightning registered its SIGTERM handler after on_fit_start

    @property
    def sigterm_received(self) -> bool:
        """Whether SIGTERM reached this process during fit, even where Lightning's handler failed."""
        return self.signals is not None and self.signals.sigterm_received

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._val_epoch = trainer.current_epoch
        self._val_metrics = {k: _to_float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        row: dict[str, float] = {"epoch": epoch}
        # The epoch-level train/* values the module logged (Lightning reduced them before this hook).
        row.update({k: _to_float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})
        # val/* only when validation ran this epoch: callback_metrics keeps older epochs' values.
        if self._val_epoch == epoch:
            row.update(self._val_metrics)
        for callback in trainer.callbacks:
            if isinstance(callback, EpochAnalysisCallback) and callback.last_epoch == epoch:
                row.update(callback.last_metrics)
            elif isinstance(callback, BaselinesCallback):
                # Constants of the run, on every row: any row and results.json say what it is measured against.
                row.update(callback.metrics)
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        if trainer.is_global_zero:
            self._write_table()
        self.save(trainer)
        if trainer.is_global_zero and self.on_epoch_written is not None:
            self.on_epoch_written(self.epochs_completed, row)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Preemption (SIGTERM, SIGUSR1, submitit's signal) mid-epoch: keep the partial epoch so a
        # re-run continues it.
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            log.warning(f"interrupted at epoch {trainer.current_epoch}: saving {self.ckpt_dir / LAST} before exit")
            self.save(trainer)
        if self.signals is not None:
            self.signals.restore()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.signals is not None:
            self.signals.restore()

    def hand_over_preemption(self) -> None:
        """After the interrupted run is recorded: let a deferred scheduler handler (submitit's
        requeue-and-exit) run now that last.ckpt holds the partial epoch."""
        if self.signals is not None:
            self.signals.hand_over()

    # ---- files ---------------------------------------------------------------------------------
    def save(self, trainer: pl.Trainer) -> None:
        """Atomically write last.ckpt, keeping the one it replaces as previous.ckpt."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_dir / f".{LAST}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, loops, callbacks
        if trainer.is_global_zero:
            last = self.ckpt_dir / LAST
            if last.exists():
                os.replace(last, self.ckpt_dir / PREVIOUS)
            os.replace(tmp, last)

    def _write_table(self) -> None:
        atomic_write_text(self.run_dir / "metrics.csv", rows_to_csv(self.rows))


def _to_float(value: Any) -> float:
    return float(value.detach().cpu()) if isinstance(value, torch.Tensor) else float(value)
