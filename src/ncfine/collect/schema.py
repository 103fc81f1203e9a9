"""What every collect step agrees on: the columns of the sweep table, the completed status, the
error type, the status tally used in titles and cells, file names made of metric keys, and the
keys of a metric's baselines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# hierarchy tells the fine-label arms (identity: nothing to recover) apart; max_train_samples is the
# data-size axis (None: the whole split, or a run from before results.json recorded it).
CONFIG_COLUMNS = ("data", "hierarchy", "max_train_samples", "backbone", "lr", "weight_decay", "seed")
METRIC_COLUMNS = (
    "val/acc",
    # Coarse accuracy on the training batches (augmented, the model in train mode): with NC1 on the
    # train split, how far a run is into the terminal phase.
    "train/acc",
    "nc/train/nc1",
    "nc/train/nc2_etf_error",
    "nc/train/nc3",
    "nc/train/nc4",
    "nc/test/nc1",
    "nc/test/nc2_etf_error",
    "nc/test/nc3",
    "nc/test/nc4",
    # Recovery from the training features (fine_recovery.splits with train): the features that
    # collapse; empty for runs that analysed the test split only. Each per-superclass recovery and
    # the probe come with the same measurement of the inputs and of the untrained network
    # (ncfine.analysis.baselines): a run "keeps" the fine classes only above both. The baselines
    # are empty for runs made before they were measured.
    "fine/train/kmeans_per_coarse_acc",
    "baseline/input/train/kmeans_per_coarse_acc",
    "baseline/init/train/kmeans_per_coarse_acc",
    "fine/train/kmeans_global_acc",
    "fine/test/kmeans_per_coarse_acc",
    "baseline/input/test/kmeans_per_coarse_acc",
    "baseline/init/test/kmeans_per_coarse_acc",
    "fine/test/kmeans_global_acc",
    # The fine labels reconstructed end to end (superclass from the head, fine class from k-means
    # inside it), bounded by val/acc; set beside a fine-label run's val/acc. Its baselines cluster
    # the inputs and the untrained features inside the same predicted superclasses.
    "fine/test/reconstructed_acc",
    "baseline/input/test/reconstructed_acc",
    "baseline/init/test/reconstructed_acc",
    "fine/probe_acc",
    "baseline/input/probe_acc",
    "baseline/init/probe_acc",
    "fine/knn_acc",
)
# The default heatmaps; a metric that no completed job logged is left out (ncfine.collect.heatmaps).
HEATMAP_METRICS = (
    "fine/train/kmeans_per_coarse_acc",
    "fine/test/kmeans_per_coarse_acc",
    "nc/train/nc1",
    # the coarse accuracies: on the training batches (is the cell in the terminal phase?) and on test
    "train/acc",
    "val/acc",
)
# Keys that place a job in the lr x wd grid; other swept keys make a separate `variant`.
GRID_OVERRIDES = ("model.backbone", "optimizer.lr", "optimizer.weight_decay", "seed")
# Overrides that never make a variant: `experiment` names the recipe, and the parts of one study
# swept into one sweep dir (experiment=cifar10_cpu_gen, cifar10_cpu_gen_wd5e-3, ...) differ in it;
# what a part changes shows in the keys it sweeps (weight decay, arm, training-set size).
NOT_VARIANTS = ("experiment",)
OK = "completed"
# The config key of the training-set size, as a Hydra override names it.
SIZE_OVERRIDE = "data.max_train_samples"
# The baselines a run measures before its first step: the inputs (pixels) and the untrained network.
INPUT_BASELINE = "input"
INIT_BASELINE = "init"


def is_number(value: Any) -> bool:
    """An int or float as read from results.json / W&B (not a bool, which is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class CollectError(ValueError):
    """Nothing to collect, or an unusable argument."""


def tally(statuses: Iterable[Any]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def file_stem(*parts: Any) -> str:
    """Parts of a figure's name joined by `_`, with the characters of metric keys and Hydra
    overrides that do not belong in a file name replaced (`/`, space, `:` -> `_`; `=` -> `-`;
    `,` -> `+`): `file_stem("nc/train/nc1", "resnet18")` is `nc_train_nc1_resnet18`."""
    stem = "_".join(str(p) for p in parts if p not in (None, ""))
    for bad, good in (("/", "_"), ("\\", "_"), (" ", "_"), (":", "_"), ("=", "-"), (",", "+")):
        stem = stem.replace(bad, good)
    return stem


def image_count(size: Any) -> int | None:
    """A `max_train_samples` as a whole number of training images; None for the whole split (null),
    a run that did not record it, or anything that is not a count."""
    if is_number(size) and float(size).is_integer() and size > 0:
        return int(size)
    if isinstance(size, str) and size.strip().isdigit():
        return int(size.strip()) or None
    return None


def baseline_key(key: str, baseline: str) -> str:
    """The key of the same measurement on a baseline: `baseline_key("fine/test/kmeans_per_coarse_acc",
    "init")` is `baseline/init/test/kmeans_per_coarse_acc`. The string rule of
    `ncfine.analysis.baselines.baseline_key`, restated so that collect imports no torch."""
    _, _, rest = key.partition("/")
    return f"baseline/{baseline}/{rest}"
