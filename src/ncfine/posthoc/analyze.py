"""`ncfine.analyze(module, data, layers=...)`: NC and fine-class recovery of any model, layer by layer.

    import ncfine
    metrics = ncfine.analyze(model, datamodule)                       # default layers
    metrics = ncfine.analyze(model, {"train": train_loader, "test": test_loader}, layers=["layer3", "penultimate"])

One eval pass per split gives every layer (`ncfine.features.extract_layer_features`), then
`ncfine.analysis.layerwise.layerwise_metrics` computes the training-time metrics per layer:
keys `layer/<layer>/<split>/<metric>`, plus the plain training keys (`nc/...`, `fine/...`) of
`penultimate` and `val/acc` (coarse test accuracy) when the model's linear head has one output per
coarse class (only then NC3/NC4 too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ncfine.analysis.layerwise import layerwise_metrics
from ncfine.analysis.settings import RecoverySettings, resolve_settings
from ncfine.features import (
    LOGITS,
    PENULTIMATE,
    Features,
    LayerModel,
    as_layer_model,
    check_sample_caps,
    extract_layer_features,
    samples_cap,
    subset_indices,
)
from ncfine.utils.errors import ConfigError

VALID_SPLITS = ("train", "test")


@dataclass
class LayerAnalysis:
    """The result of `run_analysis`: metrics, and per layer its dimension, in depth order."""

    metrics: dict[str, float]
    layers: list[str]
    dims: dict[str, int]
    num_samples: dict[str, int]
    head: str  # how NC3/NC4 were handled, for the report
    notes: list[str] = field(default_factory=list)


def analyze(module: nn.Module, data: Any, layers: Sequence[str] | str | None = None, **kwargs) -> dict[str, float]:
    """The metrics of `run_analysis` (see there for the arguments)."""
    return run_analysis(module, data, layers, **kwargs).metrics


def run_analysis(
    module: nn.Module | LayerModel,
    data: Any,
    layers: Sequence[str] | str | None = None,
    *,
    splits: Sequence[str] = VALID_SPLITS,
    max_samples: int | None = None,
    max_samples_per_split: Mapping[str, int | None] | None = None,
    pool: str = "avg",
    flatten_size: int = 4,
    head: nn.Module | str | None = None,
    device: torch.device | str | None = None,
    num_coarse: int | None = None,
    num_fine: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    recovery_splits: Sequence[str] = ("test",),
    settings: RecoverySettings | None = None,
    **recovery,
) -> LayerAnalysis:
    """Analyse `module` layer by layer on `data`.

    module: any nn.Module (see `ncfine.features.as_layer_model` for how its head is found; `head` names it).
    data: an ncfine `HierarchicalDataModule` (its hierarchy gives the class counts; the caps take
        the same fixed subset as the training callbacks), or {split: iterable of
        (image, coarse, fine[, index]) batches} (the caps keep the first samples).
    max_samples, max_samples_per_split: how many samples of each split are analysed: the smaller
        of `max_samples` and `max_samples_per_split[split]` (None: all), as in the training callbacks.
    layers: module names inside the model (`ncfine.features.layers`), `input`, `penultimate`; None
        for the stages + penultimate.
    splits: `train` and/or `test`; the probes need both, k-means runs on `test` by default.
    pool, flatten_size: how a layer's output becomes a vector (`ncfine.features.pooling`).
    recovery_splits: the splits k-means runs on.
    settings, recovery: the k-means / probe options, a `RecoverySettings` or its fields as keywords
        (modes, normalize, kmeans_n_init, probe_max_iter, knn_k, seed, ...).
    """
    settings = resolve_settings(settings, recovery, "analyze")
    model = as_layer_model(module, head)
    splits = _check_splits(splits)
    per_split = check_sample_caps(max_samples, max_samples_per_split)
    caps = {split: samples_cap(split, max_samples, per_split) for split in splits}
    if device is None:
        param = next(model.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)

    hierarchy = getattr(data, "hierarchy", None)
    by_split: dict[str, dict[str, Features]] = {}
    for split in splits:
        batches = _batches(data, split, caps[split])
        by_split[split] = extract_layer_features(
            model, batches, device, split, layers, pool, flatten_size, autocast_dtype, logits=True
        )
    first = by_split[splits[0]]
    names = [name for name in first if name != LOGITS]
    if hierarchy is not None:
        num_coarse = num_coarse or hierarchy.num_coarse
        num_fine = num_fine or hierarchy.num_fine
        fine = not hierarchy.is_identity
    else:
        feats = [f for split in by_split.values() for f in split.values()]
        num_coarse = num_coarse or int(max(int(f.coarse.max()) for f in feats)) + 1
        num_fine = num_fine or int(max(int(f.fine.max()) for f in feats)) + 1
        fine = not all(torch.equal(f.coarse, f.fine) for f in feats)

    linear = model.linear_head
    weight = bias = None
    notes: list[str] = []
    if linear is not None and linear.out_features == num_coarse:
        weight = linear.weight.detach().to(device)
        bias = linear.bias.detach().to(device) if linear.bias is not None else None
        head_note = f"linear head with {num_coarse} outputs: NC3/NC4 and coarse accuracy from it"
    elif linear is not None:
        head_note = (
            f"the head has {linear.out_features} outputs but the data {num_coarse} coarse classes: "
            "no NC3/NC4, no coarse accuracy"
        )
    else:
        head_note = "no linear head: no NC3/NC4, no coarse accuracy"

    layer_splits = {
        name: {split: (f[name].h, f[name].coarse, f[name].fine) for split, f in by_split.items()} for name in names
    }
    metrics = layerwise_metrics(
        layer_splits,
        head_layer=PENULTIMATE if PENULTIMATE in names else None,
        weight=weight,
        bias=bias,
        num_coarse=num_coarse,
        num_fine=num_fine,
        fine=fine,
        recovery_splits=recovery_splits,
        settings=settings,
    )
    if weight is not None and "test" in by_split and LOGITS in by_split["test"]:
        logits = by_split["test"][LOGITS]
        metrics["val/acc"] = float((logits.h.argmax(1) == logits.coarse).double().mean())
    if not fine:
        notes.append("coarse and fine labels are the same classes: fine metrics skipped")
    return LayerAnalysis(
        metrics=metrics,
        layers=names,
        dims={name: int(first[name].h.shape[1]) for name in names},
        num_samples={split: len(next(iter(f.values()))) for split, f in by_split.items()},
        head=head_note,
        notes=notes,
    )


def _check_splits(splits: Sequence[str] | str) -> list[str]:
    if isinstance(splits, str):
        splits = [splits]
    splits = list(dict.fromkeys(splits))
    bad = [s for s in splits if s not in VALID_SPLITS]
    if bad or not splits:
        raise ConfigError(f"unknown analysis split(s) {bad or splits}; valid splits are {list(VALID_SPLITS)}")
    return splits


def _batches(data: Any, split: str, max_samples: int | None) -> Iterable:
    if callable(getattr(data, "analysis_dataloader", None)):
        data.setup()
        indices = subset_indices(data.split_size(split), max_samples)
        return data.analysis_dataloader(split, indices=indices)
    if isinstance(data, Mapping):
        if split not in data:
            raise ConfigError(
                f"no {split!r} loader in the data given (it has {sorted(data)}); pass splits={sorted(data)}"
            )
        return _first_samples(data[split], max_samples)
    raise ConfigError(
        f"data must be an ncfine HierarchicalDataModule or a dict of loaders by split, got {type(data).__name__}"
    )


def _first_samples(batches: Iterable, max_samples: int | None) -> Iterable:
    seen = 0
    for batch in batches:
        if max_samples is not None and seen >= max_samples:
            return
        batch = tuple(batch)
        if len(batch) < 3:
            raise ConfigError("batches must be (image, coarse, fine[, index]) tuples")
        keep = len(batch[1]) if max_samples is None else min(len(batch[1]), max_samples - seen)
        if len(batch) < 4:
            batch = (*batch, torch.arange(seen, seen + len(batch[1])))
        seen += keep
        yield tuple(t[:keep] for t in batch[:4])
