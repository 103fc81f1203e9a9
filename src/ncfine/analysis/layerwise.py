"""The training-time analysis of one layer's features, and of many layers at once (pure torch).

`feature_metrics` computes, for one set of features, exactly what the NC and fine-recovery
callbacks log during training, under the same keys and with the same calls:

    nc/<split>/<m>          nc_metrics against the coarse labels (and the classifier W, b when
                            given: nc2_equinorm_w, nc3, nc4)                Papyan, Han & Donoho 2020
    nc/<split>/fine/<m>     nc_metrics against the fine labels (no classifier)
    fine/<split>/kmeans_<mode>_{acc,nmi,ari}
                            k-means per superclass / globally, Hungarian accuracy, NMI, ARI
                                                                            Yang, Steinhardt & Hu 2023
    fine/probe_acc          linear probe of the fine labels, fit on train, scored on test
    fine/knn_acc            cosine k-NN of test against train

`layer_key(layer, key)` renames such a key for a layer: the group (`nc`, `fine`) is replaced by
`layer/<layer>`: `nc/train/nc1` -> `layer/<layer>/train/nc1`, `nc/train/fine/nc1` ->
`layer/<layer>/train/fine/nc1`, `fine/test/kmeans_per_coarse_acc` ->
`layer/<layer>/test/kmeans_per_coarse_acc`, `fine/probe_acc` -> `layer/<layer>/probe_acc`.
`layerwise_metrics` does this for every layer and adds `layer/<layer>/depth` (0 = shallowest)
and `layer/<layer>/dim` (the feature dimension), so the depth order survives a CSV column sort.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ncfine.analysis.collapse import nc_metrics
from ncfine.analysis.probes import knn_probe, linear_probe
from ncfine.analysis.recovery import fine_recovery

# (h, coarse, fine) of one split
SplitFeatures = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

RECOVERY_MODES = ("per_coarse", "global")
GROUPS = ("nc", "fine")


def feature_metrics(
    splits: Mapping[str, SplitFeatures],
    *,
    num_coarse: int | None = None,
    num_fine: int | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    fine: bool = True,
    nc_splits: Sequence[str] | None = None,
    recovery_splits: Sequence[str] = ("test",),
    modes: Sequence[str] = RECOVERY_MODES,
    normalize: str = "none",
    kmeans_backend: str = "auto",
    kmeans_n_init: int = 10,
    kmeans_max_iter: int = 100,
    probe: bool = True,
    probe_weight_decay: float = 1e-4,
    probe_max_iter: int = 100,
    knn: bool = True,
    knn_k: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """The training keys (module docstring) for one set of features per split.

    `fine=False` (coarse and fine labels are the same classes) leaves out everything fine.
    NC runs on `nc_splits` (default: every split given), k-means on `recovery_splits` that are
    given, the probes when both `train` and `test` are given.
    """
    metrics: dict[str, float] = {}
    for split in (nc_splits if nc_splits is not None else list(splits)):
        if split not in splits:
            continue
        h, coarse, fine_labels = splits[split]
        result = nc_metrics(h, coarse, weight, bias, num_classes=num_coarse)
        metrics.update({f"nc/{split}/{k}": float(v) for k, v in result.items()})
        if fine:
            result = nc_metrics(h, fine_labels, num_classes=num_fine)
            metrics.update({f"nc/{split}/fine/{k}": float(v) for k, v in result.items()})
    if not fine:
        return metrics
    kmeans = dict(normalize=normalize, backend=kmeans_backend, n_init=kmeans_n_init, max_iter=kmeans_max_iter,
                  seed=seed)
    for split in recovery_splits:
        if split not in splits:
            continue
        h, coarse, fine_labels = splits[split]
        for mode in modes:
            result = fine_recovery(h, coarse, fine_labels, mode=mode, **kmeans)
            for name in ("acc", "nmi", "ari"):
                metrics[f"fine/{split}/kmeans_{mode}_{name}"] = float(result[name])
    if (probe or knn) and "train" in splits and "test" in splits:
        (train_h, _, train_fine), (test_h, _, test_fine) = splits["train"], splits["test"]
        if probe:
            result = linear_probe(train_h, train_fine, test_h, test_fine, weight_decay=probe_weight_decay,
                                  max_iter=probe_max_iter, num_classes=num_fine)
            metrics["fine/probe_acc"] = float(result["acc"])
        if knn:
            metrics["fine/knn_acc"] = float(knn_probe(train_h, train_fine, test_h, test_fine, k=knn_k)["acc"])
    return metrics


def layer_key(layer: str, key: str) -> str:
    """A training key renamed for `layer` (see the module docstring)."""
    group, _, rest = key.partition("/")
    if group not in GROUPS or not rest:
        raise ValueError(f"{key!r} is not an nc/ or fine/ metric key")
    return f"layer/{layer}/{rest}"


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
