"""The run's baselines, measured once before the first optimizer step (`ncfine.analysis.baselines`).

`baseline/input/...`: the analysis of the inputs as the model sees them (normalised, unaugmented,
flattened; images larger than `input_size` average-pooled to `input_size` x `input_size` first, so
the cost stays bounded for ImageNet-sized inputs). `baseline/init/...`: the analysis of the
penultimate features of the network as initialised, with its untrained head. Both come from one
eval pass per split over the same fixed subsets as the NC and recovery callbacks, under the same
autocast, and go through the same functions with the same k-means / probe settings.

The values are constants of the run: they are logged once to every Lightning logger and carried on
every row of metrics.csv (so results.json's final metrics hold them too), and they are kept in the
checkpoint, so a resumed run reports the baselines of its own initialisation. A run resumed from a
checkpoint written without them (an older ncfine) measures the input baseline and says that the
init baseline is lost with the initial weights.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch

from ncfine.analysis.baselines import BASELINES, INIT, INPUT, baseline_metrics
from ncfine.analysis.settings import RecoverySettings
from ncfine.features import (
    ANALYSIS_SPLITS,
    PENULTIMATE,
    check_sample_caps,
    extract_layer_features,
    extraction_autocast,
    samples_cap,
    subset_indices,
)
from ncfine.features import INPUT as INPUT_LAYER
from ncfine.utils.errors import ConfigError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)

# The one-line summary printed when the baselines are measured: (label, key) in this order.
_SUMMARY = (
    ("k-means per superclass, test", "test/kmeans_per_coarse_acc"),
    ("k-means per superclass, train", "train/kmeans_per_coarse_acc"),
    ("linear probe", "probe_acc"),
)


class BaselinesCallback(pl.Callback):
    """Measures `baseline/<name>/...` for each of `baselines` (`input`, `init`) at the start of training.

    nc_splits / recovery_splits: where NC1-NC4 and k-means run, as the NC and recovery callbacks'
    splits (the probes fit on train and score on test); max_samples / max_samples_per_split: their
    fixed subsets; input_size: the largest side of the flattened inputs; recovery: the k-means /
    probe options of `ncfine.analysis.settings.RecoverySettings`, as callbacks.fine_recovery's.
    """

    def __init__(
        self,
        baselines: Sequence[str] = BASELINES,
        nc_splits: Sequence[str] = ("train", "test"),
        recovery_splits: Sequence[str] = ("test",),
        max_samples: int | None = None,
        max_samples_per_split: Mapping[str, int | None] | None = None,
        input_size: int = 32,
        **recovery,
    ):
        baselines = [baselines] if isinstance(baselines, str) else list(baselines or ())
        bad = [b for b in baselines if b not in BASELINES]
        if bad:
            raise ConfigError(f"unknown baseline(s) {bad}; valid baselines are {list(BASELINES)}")
        bad = [s for s in (*nc_splits, *recovery_splits) if s not in ANALYSIS_SPLITS]
        if bad:
            raise ConfigError(f"unknown analysis split(s) {bad}; valid splits are {list(ANALYSIS_SPLITS)}")
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ConfigError(f"baselines input_size must be a positive integer, got {input_size!r}")
        self.baselines = tuple(dict.fromkeys(baselines))
        self.nc_splits, self.recovery_splits = tuple(nc_splits), tuple(recovery_splits)
        self.max_samples = max_samples
        self.max_samples_per_split = check_sample_caps(max_samples, max_samples_per_split)
        self.input_size = input_size
        self.settings = RecoverySettings.from_options(recovery, "callbacks.baselines")
        self.metrics: dict[str, float] = {}
        self.measured: tuple[str, ...] = ()  # the baselines `metrics` holds (restored from a checkpoint too)
        self.seconds: float | None = None

    # ---- state carried inside the checkpoint -------------------------------------------------
    def state_dict(self) -> dict:
        return {"metrics": dict(self.metrics), "measured": list(self.measured)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.metrics = dict(state_dict.get("metrics", {}))
        self.measured = tuple(state_dict.get("measured", ()))

    # ---- hooks ---------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Fail before the first epoch, not after the baselines' eval pass, when the backend cannot run here.
        from ncfine.analysis.kmeans import resolve_backend

        resolve_backend(self.settings.kmeans_backend)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wanted = [b for b in self.baselines if b not in self.measured]
        if not wanted:
            return  # resumed: the checkpoint holds this run's baselines
        if INIT in wanted and trainer.global_step > 0:
            wanted.remove(INIT)
            log.warning(
                f"baselines: resumed at step {trainer.global_step} from a checkpoint without them; "
                "the init baseline needs the initial weights and is not measured"
            )
        if not wanted:
            return
        started = time.perf_counter()
        found = self.measure(trainer, pl_module, wanted)
        self.seconds = time.perf_counter() - started
        self.metrics.update(found)
        self.measured = tuple(dict.fromkeys((*self.measured, *wanted)))
        if trainer.is_global_zero and found:
            for logger in trainer.loggers:
                logger.log_metrics(found, step=trainer.global_step)
            log.info(self.describe(wanted))

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, names: Sequence[str]) -> dict[str, float]:
        """The metrics of baselines `names` for the model as it is now (every rank extracts its
        shard; rank 0 computes; the result is broadcast)."""
        datamodule = trainer.datamodule
        hierarchy = datamodule.hierarchy
        fine = not hierarchy.is_identity
        probes = fine and (self.settings.probe or self.settings.knn)
        splits = dict.fromkeys(
            (*self.nc_splits, *(self.recovery_splits if fine else ()), *(ANALYSIS_SPLITS if probes else ()))
        )
        layers = [INPUT_LAYER if name == INPUT else PENULTIMATE for name in names]
        device = pl_module.device
        autocast = extraction_autocast(trainer, device)
        by_split = {}
        for split in splits:
            cap = samples_cap(split, self.max_samples, self.max_samples_per_split)
            loader = datamodule.analysis_dataloader(split, indices=subset_indices(datamodule.split_size(split), cap))
            by_split[split] = extract_layer_features(
                pl_module, loader, device, split, layers, "flatten", self.input_size, autocast
            )
        metrics = None
        if trainer.is_global_zero:
            features = {}
            for name in names:
                layer = INPUT_LAYER if name == INPUT else PENULTIMATE
                features[name] = {split: (f[layer].h, f[layer].coarse, f[layer].fine) for split, f in by_split.items()}
            head = pl_module.head
            classifiers = {}
            if isinstance(head, torch.nn.Linear):
                classifiers[INIT] = (head.weight.detach(), head.bias.detach() if head.bias is not None else None)
            metrics = baseline_metrics(
                features,
                classifiers=classifiers,
                num_coarse=hierarchy.num_coarse,
                num_fine=hierarchy.num_fine,
                fine=fine,
                nc_splits=self.nc_splits,
                recovery_splits=self.recovery_splits,
                settings=self.settings,
            )
        if trainer.world_size > 1:
            metrics = trainer.strategy.broadcast(metrics, src=0)
        return dict(metrics or {})

    def describe(self, names: Sequence[str]) -> str:
        """One line: the headline recovery values of each baseline just measured."""
        parts = []
        for label, rest in _SUMMARY:
            values = [
                f"{name} {self.metrics[f'baseline/{name}/{rest}']:.4f}"
                for name in names
                if f"baseline/{name}/{rest}" in self.metrics
            ]
            if values:
                parts.append(f"{label}: {', '.join(values)}")
        took = f" ({self.seconds:.1f} s)" if self.seconds is not None else ""
        return f"baselines before training{took}: " + ("; ".join(parts) or f"{', '.join(names)} measured")
