"""Training progress: tqdm's bar on a terminal, one line per epoch anywhere else.

On SLURM, under nohup or in CI, stdout is a file and tqdm's carriage-return frames fill a job's
`.out` with hundreds of overwritten bars per epoch. `progress_bar(mode="auto")` (the default in
conf/callbacks/default.yaml) keeps the bar when stdout is a terminal and otherwise prints

    epoch 3/20  train/loss 0.4123  train/acc 0.8750  val/loss 0.3901  val/acc 0.8802  1.9 s

at the end of each epoch (rank 0 only). `refresh_rate: 0` turns either display off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

from ncfine.utils.errors import ConfigError


class EpochLinesProgressBar(ProgressBar):
    """One line per training epoch: epoch, the logged train/val losses and accuracies, seconds.

    A Lightning `ProgressBar`, so Lightning adds no tqdm bar of its own next to it.
    """

    def __init__(self, refresh_rate: int = 1, stream: TextIO | None = None):
        super().__init__()
        # Only on/off here (a line per epoch whatever the rate): 0 is the bar's "off" as well.
        self.refresh_rate = int(refresh_rate)
        self._enabled = self.refresh_rate > 0
        self._stream = stream
        self._epoch_start = time.monotonic()
        self._val_epoch: int | None = None
        self._val: dict[str, float] = {}

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = self.refresh_rate > 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch
            self._val = _losses_and_accuracies(trainer.callback_metrics, "val/")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Read on every rank, printed on rank 0 only: under DDP, reading callback_metrics reduces
        # the logged values across ranks (a collective), so one rank reading alone would hang.
        epoch = trainer.current_epoch
        metrics = _losses_and_accuracies(trainer.callback_metrics, "train/")
        if not self._enabled or not trainer.is_global_zero:
            return
        if self._val_epoch == epoch:  # callback_metrics keeps older epochs' val/* when validation skipped
            metrics.update(self._val)
        print(
            epoch_line(epoch, trainer.max_epochs, metrics, time.monotonic() - self._epoch_start),
            file=self._stream or sys.stdout,
            flush=True,
        )


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict[str, float], seconds: float) -> str:
    """`epoch 3/20  train/loss 0.4123  ...  1.9 s` (epochs counted from 1, as a person reads them)."""
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = [f"epoch {epoch + 1}{total}", *(f"{key} {value:.4f}" for key, value in metrics.items()), f"{seconds:.1f} s"]
    return "  ".join(parts)


def _losses_and_accuracies(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    picked = {}
    for key in sorted(metrics):
        if key.startswith(prefix) and ("loss" in key or "acc" in key):
            value = metrics[key]
            picked[key] = float(value.detach().cpu()) if isinstance(value, torch.Tensor) else float(value)
    return picked


# mode -> display; "auto" picks one by whether stdout is a terminal.
PROGRESS_BARS: dict[str, Callable[..., ProgressBar]] = {
    "bar": TQDMProgressBar,
    "lines": EpochLinesProgressBar,
}


def progress_bar(mode: str = "auto", refresh_rate: int = 20, is_terminal: bool | None = None) -> ProgressBar:
    """The progress display for `mode`: `bar` (tqdm), `lines` (one line per epoch) or `auto`
    (`bar` when stdout is a terminal, else `lines`)."""
    if mode == "auto":
        terminal = sys.stdout.isatty() if is_terminal is None else is_terminal
        mode = "bar" if terminal else "lines"
    if mode not in PROGRESS_BARS:
        raise ConfigError(f"callbacks.progress_bar.mode must be one of auto, {', '.join(PROGRESS_BARS)}; got {mode!r}")
    return PROGRESS_BARS[mode](refresh_rate=refresh_rate)
