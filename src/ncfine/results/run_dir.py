"""What `ncfine-train` and `ncfine-analyze` both write into a run dir, in one low module.

`rows_to_csv` is metrics.csv (one row per epoch, `epoch` first); `config_summary` is the
`config` entry of results.json, the handful of values a sweep table is indexed by. The file
layout itself is in the README ("What a run writes") and ../docs.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf


def rows_to_csv(rows: list[dict[str, float]]) -> str:
    """One row per epoch, `epoch` first, then the metric keys sorted; missing values left empty."""
    keys = sorted({k for row in rows for k in row if k != "epoch"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["epoch", *keys], restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(v) if k == "epoch" else _format(v)) for k, v in row.items()})
    return buffer.getvalue()


def _format(value: float) -> str:
    return repr(float(value)) if not math.isnan(value) else "nan"


def config_summary(cfg: DictConfig) -> dict[str, Any]:
    """The handful of config values a sweep table is indexed by."""
    select = lambda key: OmegaConf.select(cfg, key, default=None)  # noqa: E731
    return {
        "backbone": select("model.backbone"),
        "lr": select("optimizer.lr"),
        "weight_decay": select("optimizer.weight_decay"),
        "optimizer": str(select("optimizer._target_")).rsplit(".", 1)[-1],
        "scheduler": str(select("scheduler._target_")).rsplit(".", 1)[-1],
        "data": _choice("data") or source_name(select("data.source._target_")),
        "hierarchy": OmegaConf.to_container(select("data.hierarchy"))
        if OmegaConf.is_config(select("data.hierarchy"))
        else select("data.hierarchy"),
        "batch_size": select("data.batch_size"),
        # The training images used (data.max_train_samples; null: the whole split): the data-size axis.
        "max_train_samples": select("data.max_train_samples"),
        "max_epochs": select("trainer.max_epochs"),
        "seed": select("seed"),
        "task_name": select("task_name"),
        "sweep_name": select("sweep_name"),
    }


def source_name(target: str | None) -> str:
    """The data config's name (`digits`) for a source class path, as a CLI run records it."""
    from ncfine.data.sources import REGISTRY

    cls_name = str(target).rsplit(".", 1)[-1]
    return next((name for name, cls in REGISTRY.items() if cls.__name__ == cls_name), cls_name)


def _choice(group: str) -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get(group)
    except Exception:  # noqa: BLE001 - outside a Hydra run (compose API, notebooks)
        return None
