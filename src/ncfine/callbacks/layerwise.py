"""Layer-wise NC and fine-class recovery every n epochs: `callbacks=layerwise`.

The same machinery as `ncfine-analyze`: one eval pass per split gives every chosen layer
(`ncfine.features.extract_layer_features`, forward hooks pooling as they go), gathered over DDP
ranks with the shared `gather_unique`, over the same fixed subsets (`max_samples`, `max_samples_per_split`) as
the other analysis callbacks; rank 0 computes `ncfine.analysis.layerwise.layerwise_metrics` and
the result is broadcast and logged under `layer/<layer>/<split>/<metric>` (plus
`layer/<layer>/depth` and `/dim`).
The penultimate layer is already covered by the NC and recovery callbacks under their own keys;
here it gets the `layer/penultimate/...` keys as well, so depth curves end at the penultimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ncfine.analysis.layerwise import layerwise_metrics
from ncfine.analysis.settings import RecoverySettings
from ncfine.callbacks.epoch_analysis import EpochAnalysisCallback
from ncfine.features import (
    PENULTIMATE,
    Features,
    as_layer_model,
    check_pool,
    extract_layer_features,
    extraction_autocast,
    resolve_layers,
    subset_indices,
)


class LayerwiseCallback(EpochAnalysisCallback):
    """Every `every_n_epochs` (and at the end of fit): the metrics of `ncfine-analyze` per layer.

    layers: module names inside the backbone, `input`, `penultimate`; null = every timm stage +
    penultimate. pool / flatten_size: see `ncfine.features.pooling`. recovery: the k-means / probe
    options of `ncfine.analysis.settings.RecoverySettings`, flat in `callbacks.layerwise` as in
    `callbacks.fine_recovery`.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        splits: Sequence[str] = ("train", "test"),
        max_samples: int | None = None,
        layers: Sequence[str] | None = None,
        pool: str = "avg",
        flatten_size: int = 4,
        recovery_splits: Sequence[str] = ("test",),
        max_samples_per_split: Mapping[str, int | None] | None = None,
        **recovery,
    ):
        super().__init__(every_n_epochs, splits, max_samples, max_samples_per_split)
        check_pool(pool, flatten_size)
        self.layers = list(layers) if layers is not None else None
        self.pool, self.flatten_size = pool, flatten_size
        self.recovery_splits = tuple(recovery_splits)
        self.settings = RecoverySettings.from_options(recovery, "callbacks.layerwise")
        self._features: dict[str, dict[str, Features]] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        # A misspelt layer fails before the first epoch, not after it.
        resolve_layers(as_layer_model(pl_module).root, self.layers)

    def required_splits(self, trainer) -> tuple[str, ...]:
        return ()  # extracted in on_train_epoch_end below, all layers in one pass

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self.should_run(trainer):
            return
        # Every rank runs its shard (the gather inside needs all of them); rank 0 computes in super().
        datamodule = trainer.datamodule
        device = pl_module.device
        autocast = extraction_autocast(trainer, device)  # as the NC and recovery callbacks' pass
        self._features = {}
        for split in self.splits:
            indices = subset_indices(datamodule.split_size(split), self.samples_cap(split))
            loader = datamodule.analysis_dataloader(split, indices=indices)
            self._features[split] = extract_layer_features(
                pl_module, loader, device, split, self.layers, self.pool, self.flatten_size, autocast
            )
        try:
            super().on_train_epoch_end(trainer, pl_module)
        finally:
            self._features = {}  # only this epoch's features are ever held

    def compute(self, trainer, pl_module) -> dict[str, float]:
        hierarchy = trainer.datamodule.hierarchy
        first = self._features[self.splits[0]]
        layers = {
            name: {split: (f[name].h, f[name].coarse, f[name].fine) for split, f in self._features.items()}
            for name in first
        }
        head = pl_module.head
        classifier = {}
        if PENULTIMATE in layers and isinstance(head, torch.nn.Linear):
            classifier = dict(
                head_layer=PENULTIMATE,
                weight=head.weight.detach(),
                bias=head.bias.detach() if head.bias is not None else None,
            )
        # plain_keys=False: nc/... and fine/... belong to the NC and recovery callbacks (their own subsets).
        return layerwise_metrics(
            layers,
            **classifier,
            plain_keys=False,
            num_coarse=hierarchy.num_coarse,
            num_fine=hierarchy.num_fine,
            fine=not hierarchy.is_identity,
            recovery_splits=self.recovery_splits,
            settings=self.settings,
        )
