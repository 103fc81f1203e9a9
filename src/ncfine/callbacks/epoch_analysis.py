"""Base class of the analysis callbacks: schedule, shared features, rank-0 compute, logging."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch

from ncfine.callbacks.feature_store import FeatureStore
from ncfine.features import ANALYSIS_SPLITS, Features, check_sample_caps, samples_cap
from ncfine.utils.errors import ConfigError

VALID_SPLITS = ANALYSIS_SPLITS

# Under DDP Lightning suggests sync_dist=True for every epoch-level key; the analysis values are
# computed once on rank 0 and broadcast, identical on every rank, so there is nothing to reduce.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\('(nc|fine)/")


class EpochAnalysisCallback(pl.Callback):
    """Runs `compute(trainer, pl_module) -> dict[str, float]` every `every_n_epochs` and at the end of fit.

    The result is computed once (rank 0), broadcast, and logged with `pl_module.log_dict`, so it
    reaches every Lightning logger, metrics.csv and results.json.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        splits: Sequence[str] = ("train", "test"),
        max_samples: int | None = None,
        max_samples_per_split: Mapping[str, int | None] | None = None,
    ):
        if not isinstance(every_n_epochs, int) or every_n_epochs <= 0:
            raise ConfigError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}")
        bad = [s for s in splits if s not in VALID_SPLITS]
        if bad:
            raise ConfigError(f"unknown analysis split(s) {bad}; valid splits are {list(VALID_SPLITS)}")
        per_split = check_sample_caps(max_samples, max_samples_per_split)
        self.every_n_epochs = every_n_epochs
        self.splits = tuple(splits)
        self.max_samples = max_samples
        self.max_samples_per_split = per_split
        self.last_epoch: int | None = None
        self.last_metrics: dict[str, float] = {}
        # Wall seconds of the last run: its eval passes (features) and its compute (metrics), so a
        # benchmark can tell the two costs apart (benchmarks/analysis_overhead.py).
        self.last_seconds: dict[str, float] = {}

    def should_run(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last or trainer.should_stop

    def samples_cap(self, split: str) -> int | None:
        """The size of the fixed subset of `split` analysed: the smaller of `max_samples` and
        `max_samples_per_split[split]` (None: the whole split)."""
        return samples_cap(split, self.max_samples, self.max_samples_per_split)

    def features(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Features:
        """This epoch's features of `split` (a fixed random subset when `samples_cap(split)` is set)."""
        return FeatureStore.of(trainer).get(trainer, pl_module, split, self.samples_cap(split))

    def required_splits(self, trainer: pl.Trainer) -> tuple[str, ...]:
        """The splits `compute` reads; every rank extracts them before rank 0 computes."""
        return self.splits

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        raise NotImplementedError

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation passes over the test split anyway: keep its features for this epoch's analysis.
        if self.should_run(trainer) and "test" in self.required_splits(trainer):
            FeatureStore.of(trainer).begin_capture(self, trainer, pl_module, "test")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        FeatureStore.of(trainer).capture_batch(self, outputs, batch, dataloader_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.should_run(trainer):
            return
        # Every rank extracts its shard (the all-gather inside needs all of them); rank 0 then
        # computes on the cached, gathered features.
        started = time.perf_counter()
        for split in self.required_splits(trainer):
            self.features(trainer, pl_module, split)
        _synchronize(pl_module.device)
        extracted = time.perf_counter()
        metrics = self.compute(trainer, pl_module) if trainer.is_global_zero else None
        if trainer.world_size > 1:
            metrics = trainer.strategy.broadcast(metrics, src=0)
        self.last_seconds = {"features": extracted - started, "metrics": time.perf_counter() - extracted}
        self.last_epoch, self.last_metrics = trainer.current_epoch, dict(metrics or {})
        if metrics:
            pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":  # CUDA kernels run ahead of the host; the time is the GPU's
        torch.cuda.synchronize(device)
