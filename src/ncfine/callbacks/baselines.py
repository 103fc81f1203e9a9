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

One recovery metric depends on the epoch: the fine labels reconstructed inside the superclasses the
trained head predicts (`fine/<split>/reconstructed_acc`). Its baselines cluster the inputs and the
untrained features inside the same predicted superclasses, so only the features differ; the fine
recovery callback asks for them every analysed epoch (`reconstruction_metrics`). The callback keeps
the baseline features of the recovery splits for that (rank 0): the untrained ones in the checkpoint
too, the inputs extracted again by a resumed run. Unlike the others, these baseline keys follow the
epoch: each row holds the value measured with that epoch's predictions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch

from ncfine.analysis.baselines import BASELINES, INIT, INPUT, baseline_key, baseline_metrics
from ncfine.analysis.settings import RecoverySettings
from ncfine.analysis.training_keys import reconstruction_keys
from ncfine.features import (
    ANALYSIS_SPLITS,
    PENULTIMATE,
    Features,
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
        # {name: {recovery split: Features}} of the baselines, for `reconstruction_metrics` (rank 0).
        self.features: dict[str, dict[str, Features]] = {}
        self._mismatch_logged = False

    # ---- state carried inside the checkpoint -------------------------------------------------
    def state_dict(self) -> dict:
        # The untrained features for the reconstruction baselines (their initial weights are gone
        # after the first step); the inputs are extracted again on resume instead (larger, unchanged).
        init = {
            split: {field: getattr(f, field).cpu() for field in ("h", "coarse", "fine", "index")}
            for split, f in self.features.get(INIT, {}).items()
        }
        return {"metrics": dict(self.metrics), "measured": list(self.measured), "init_features": init}

    def load_state_dict(self, state_dict: dict) -> None:
        self.metrics = dict(state_dict.get("metrics", {}))
        self.measured = tuple(state_dict.get("measured", ()))
        init = state_dict.get("init_features") or {}
        self.features = {INIT: {split: Features(split=split, **f) for split, f in init.items()}} if init else {}

    # ---- hooks ---------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Fail before the first epoch, not after the baselines' eval pass, when the backend cannot run here.
        from ncfine.analysis.kmeans import resolve_backend

        resolve_backend(self.settings.kmeans_backend)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wanted = [b for b in self.baselines if b not in self.measured]
        if not wanted:
            self._restore_reconstruction_features(trainer, pl_module)
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
        hierarchy = trainer.datamodule.hierarchy
        fine = not hierarchy.is_identity
        probes = fine and (self.settings.probe or self.settings.knn)
        splits = dict.fromkeys(
            (*self.nc_splits, *(self.recovery_splits if fine else ()), *(ANALYSIS_SPLITS if probes else ()))
        )
        by_split = self._extract(trainer, pl_module, names, splits)
        metrics = None
        if trainer.is_global_zero:
            features = {name: {split: by_split[split][_layer(name)] for split in splits} for name in names}
            head = pl_module.head
            classifiers = {}
            if isinstance(head, torch.nn.Linear):
                classifiers[INIT] = (head.weight.detach(), head.bias.detach() if head.bias is not None else None)
            metrics = baseline_metrics(
                {
                    name: {split: (f.h, f.coarse, f.fine) for split, f in found.items()}
                    for name, found in features.items()
                },
                classifiers=classifiers,
                num_coarse=hierarchy.num_coarse,
                num_fine=hierarchy.num_fine,
                fine=fine,
                nc_splits=self.nc_splits,
                recovery_splits=self.recovery_splits,
                settings=self.settings,
            )
            if self._reconstructs(trainer):
                for name, found in features.items():
                    self.features[name] = {split: found[split] for split in self.recovery_splits if split in found}
        if trainer.world_size > 1:
            metrics = trainer.strategy.broadcast(metrics, src=0)
        return dict(metrics or {})

    def _extract(self, trainer, pl_module, names: Sequence[str], splits) -> dict[str, dict[str, Features]]:
        """{split: {layer: Features}} of the layers baselines `names` read, one eval pass per split
        over the fixed subsets (every rank; gathered)."""
        datamodule = trainer.datamodule
        layers = list(dict.fromkeys(_layer(name) for name in names))
        device = pl_module.device
        autocast = extraction_autocast(trainer, device)
        by_split = {}
        for split in splits:
            cap = samples_cap(split, self.max_samples, self.max_samples_per_split)
            loader = datamodule.analysis_dataloader(split, indices=subset_indices(datamodule.split_size(split), cap))
            by_split[split] = extract_layer_features(
                pl_module, loader, device, split, layers, "flatten", self.input_size, autocast
            )
        return by_split

    # ---- the reconstruction baselines, every analysed epoch ------------------------------------
    def _reconstructs(self, trainer: pl.Trainer) -> bool:
        return self.settings.reconstruct and bool(self.recovery_splits) and not trainer.datamodule.hierarchy.is_identity

    def _restore_reconstruction_features(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After a resume: the inputs again (one pass; they do not change); the untrained features
        come from the checkpoint, where it has them."""
        if not self._reconstructs(trainer):
            return
        if INPUT in self.measured and INPUT not in self.features:
            by_split = self._extract(trainer, pl_module, [INPUT], self.recovery_splits)
            if trainer.is_global_zero:
                self.features[INPUT] = {split: found[INPUT_LAYER] for split, found in by_split.items()}
        if INIT in self.measured and INIT not in self.features and trainer.is_global_zero:
            log.warning(
                "baselines: resumed from a checkpoint without the untrained network's features, "
                "so baseline/init/<split>/reconstructed_acc is not measured from here on"
            )

    def reconstruction_metrics(self, predicted: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """`baseline/<name>/<split>/reconstructed_acc` for {split: (sample index, predicted superclass)}
        of the trained network now: each baseline's features clustered inside the superclasses the
        trained head predicts for the same samples (rank 0; empty where the features are not kept)."""
        metrics: dict[str, float] = {}
        for name, by_split in self.features.items():
            for split, base in by_split.items():
                if split not in predicted:
                    continue
                index, labels = predicted[split]
                if not torch.equal(base.index.cpu(), index.cpu()):
                    if not self._mismatch_logged:
                        log.warning(
                            f"baselines: the {split} samples analysed now are not the ones the baselines measured "
                            "(set the same max_samples / max_samples_per_split in callbacks.baselines); "
                            "their reconstruction baselines are left out"
                        )
                        self._mismatch_logged = True
                    continue
                found = reconstruction_keys(
                    split,
                    base.h,
                    labels.to(base.h.device),
                    base.coarse,
                    base.fine,
                    normalize=self.settings.normalize,
                    kmeans_backend=self.settings.kmeans_backend,
                    kmeans_n_init=self.settings.kmeans_n_init,
                    kmeans_max_iter=self.settings.kmeans_max_iter,
                    seed=self.settings.seed,
                )
                metrics.update({baseline_key(name, key): value for key, value in found.items()})
        return metrics

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


def _layer(name: str) -> str:
    """The feature layer baseline `name` reads: the inputs or the penultimate features."""
    return INPUT_LAYER if name == INPUT else PENULTIMATE
