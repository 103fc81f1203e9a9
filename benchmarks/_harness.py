"""What the training benchmarks share: timing ncfine's real Trainer/module/data path per epoch.

`ncfine_epochs` composes the config exactly as `ncfine-train OVERRIDES` would and builds it with
`ncfine.pipeline.build` (the same code path as a real run), adding only a timing callback.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
import torch

from ncfine.api import compose
from ncfine.pipeline import build


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochTimer(pl.Callback):
    """Seconds per training epoch: from the epoch's first hook to after every other callback's
    epoch-end work (the analysis callbacks run in on_train_epoch_end, before this one)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        sync(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        sync(self.device)
        self.times.append(time.perf_counter() - self._start)


def ncfine_epochs(overrides: Sequence[str], device: torch.device) -> tuple[list[float], float, object]:
    """(seconds per epoch, wall seconds of fit, datamodule) of one run through ncfine's pipeline.

    Validation runs inside the training epoch in Lightning, so it is part of each epoch's time
    unless the overrides set trainer.limit_val_batches=0.
    """
    run_dir = Path(tempfile.mkdtemp(prefix="ncfine-bench-"))
    cfg = compose([*overrides, "logger=none", "+trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false"],
                  run_dir=run_dir)
    timer = EpochTimer(device)
    datamodule, model, trainer = build(cfg, extra_callbacks=[timer])
    sync(device)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    sync(device)
    return timer.times, time.perf_counter() - start, datamodule


def mean_after_warmup(times: Sequence[float]) -> float:
    """Mean of the epochs after the first (kernel selection, caches, lazy init), or the only one."""
    timed = list(times[1:]) if len(times) > 1 else list(times)
    return sum(timed) / len(timed)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
