"""What a recovery number is measured against: the same analysis of the inputs and of the untrained network.

Fine-class recovery from coarse-trained features (Yang, Steinhardt & Hu 2023) means something only
beside what needs no training at all. Per-superclass k-means of CIFAR-10's standardised pixels
already recovers the mod-5 pairs at about 0.62 (the chance level of a 2-way split is 0.5), and the
penultimate features of a randomly initialised network at 0.64-0.68: a network "keeps" the fine
classes when its features beat both, and "loses" them when it falls to them. The label-free floor
(about 0.5 + 0.4 / sqrt(n) for n points per superclass) only says that k-means saw no structure.

Two baselines, each analysed exactly like the trained features (`training_keys.feature_metrics`:
NC1-NC4, k-means per superclass and globally, linear probe, k-NN) and reported under

    baseline/<name>/<rest>   for every training key <group>/<rest>  (`training_keys.regroup_key`)

    input   the inputs as the model sees them: normalised, not augmented, flattened
            (e.g. baseline/input/test/kmeans_per_coarse_acc, baseline/input/probe_acc)
    init    the penultimate features of the network before its first optimizer step, with its
            untrained head for NC3/NC4 (e.g. baseline/init/train/nc1)
"""

from __future__ import annotations

from collections.abc import Mapping

from ncfine.analysis.training_keys import SplitFeatures, feature_metrics, regroup_key

INPUT = "input"
INIT = "init"
BASELINES = (INPUT, INIT)


def baseline_key(name: str, key: str) -> str:
    """A training key renamed for baseline `name`: `fine/test/kmeans_per_coarse_acc` ->
    `baseline/<name>/test/kmeans_per_coarse_acc`."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; valid baselines are {list(BASELINES)}")
    return regroup_key(f"baseline/{name}", key)


def baseline_metrics(
    baselines: Mapping[str, Mapping[str, SplitFeatures]],
    *,
    classifiers: Mapping[str, tuple] | None = None,
    **kwargs,
) -> dict[str, float]:
    """`baseline/<name>/...` keys for {name: {split: (h, coarse, fine)}} (names from `BASELINES`).

    classifiers: {name: (weight, bias)} for the baselines that have a head (the untrained
    network's: NC3, NC4 and nc2_equinorm_w); the inputs have none. kwargs go to
    `training_keys.feature_metrics` (num_coarse, num_fine, fine, nc_splits, recovery_splits,
    settings or the RecoverySettings fields), so every value is computed as the trained
    features' value of the same key.
    """
    metrics: dict[str, float] = {}
    for name, splits in baselines.items():
        weight, bias = (classifiers or {}).get(name, (None, None))
        found = feature_metrics(splits, weight=weight, bias=bias, **kwargs)
        metrics.update({baseline_key(name, key): value for key, value in found.items()})
    return metrics
