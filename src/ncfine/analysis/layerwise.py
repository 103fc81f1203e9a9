"""The training-time analysis of one layer's features, and of many layers at once (pure torch).

`ncfine.analysis.training_keys.feature_metrics` computes, for one set of features, exactly what
the NC and fine-recovery callbacks log during training, under the same keys (`nc/<split>/...`,
`fine/<split>/kmeans_...`, `fine/probe_acc`, `fine/knn_acc`) and with the same calls.

`layer_key(layer, key)` renames such a key for a layer: the group (`nc`, `fine`) is replaced by
`layer/<layer>`: `nc/train/nc1` -> `layer/<layer>/train/nc1`, `nc/train/fine/nc1` ->
`layer/<layer>/train/fine/nc1`, `fine/test/kmeans_per_coarse_acc` ->
`layer/<layer>/test/kmeans_per_coarse_acc`, `fine/probe_acc` -> `layer/<layer>/probe_acc`.
`layerwise_metrics` does this for every layer and adds `layer/<layer>/depth` (0 = shallowest)
and `layer/<layer>/dim` (the feature dimension), so the depth order survives a CSV column sort.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ncfine.analysis.training_keys import SplitFeatures, feature_metrics, regroup_key


def layer_key(layer: str, key: str) -> str:
    """A training key renamed for `layer` (see the module docstring)."""
    return regroup_key(f"layer/{layer}", key)


def layerwise_metrics(
    layers: Mapping[str, Mapping[str, SplitFeatures]],
    *,
    head_layer: str | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    plain_keys: bool = True,
    **kwargs,
) -> dict[str, float]:
    """`layer/<layer>/...` keys for every layer of {layer: {split: (h, coarse, fine)}}, the layers
    in depth order (shallowest first). `head_layer` (the classifier's input, `penultimate`) gets
    the classifier (weight, bias) for NC3/NC4 and, with `plain_keys`, its metrics are also returned
    under the plain training keys (`nc/...`, `fine/...`), as the callbacks log them; `kwargs` go to
    `feature_metrics`."""
    metrics: dict[str, float] = {}
    for depth, (layer, splits) in enumerate(layers.items()):
        classifier = dict(weight=weight, bias=bias) if layer == head_layer else {}
        metrics[f"layer/{layer}/depth"] = float(depth)
        metrics[f"layer/{layer}/dim"] = float(next(iter(splits.values()))[0].shape[1])
        found = feature_metrics(splits, **classifier, **kwargs)
        if layer == head_layer and plain_keys:
            metrics.update(found)
        for key, value in found.items():
            metrics[layer_key(layer, key)] = value
    return metrics
