"""What every collect step agrees on: the columns of the sweep table, the completed status, the
error type, and the status tally used in titles and cells."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CONFIG_COLUMNS = ("data", "backbone", "lr", "weight_decay", "seed")
METRIC_COLUMNS = (
    "val/acc",
    "nc/train/nc1",
    "nc/train/nc2_etf_error",
    "nc/train/nc3",
    "nc/train/nc4",
    "nc/test/nc1",
    "nc/test/nc2_etf_error",
    "nc/test/nc3",
    "nc/test/nc4",
    "fine/test/kmeans_per_coarse_acc",
    "fine/test/kmeans_global_acc",
    "fine/probe_acc",
    "fine/knn_acc",
)
HEATMAP_METRICS = ("fine/test/kmeans_per_coarse_acc", "nc/train/nc1")
# Keys that place a job in the lr x wd grid; other swept keys make a separate `variant`.
GRID_OVERRIDES = ("model.backbone", "optimizer.lr", "optimizer.weight_decay", "seed")
OK = "completed"


class CollectError(ValueError):
    """Nothing to collect, or an unusable argument."""


def tally(statuses: Iterable[Any]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
