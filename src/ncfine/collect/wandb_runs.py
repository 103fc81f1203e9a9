"""W&B runs -> the same per-job dicts as `ncfine.collect.loading.load_runs`."""

from __future__ import annotations

from typing import Any

from ncfine.collect.schema import CollectError, is_number

WANDB_STATES = {
    "finished": "completed",
    "running": "running",
    "pending": "running",
    "preempting": "running",
    "preempted": "running",
    "crashed": "failed",
    "failed": "failed",
    "killed": "failed",
}


def load_wandb_runs(path: str, group: str | None = None, api: Any = None) -> list[dict[str, Any]]:
    """The runs of W&B project `path` ("ENTITY/PROJECT"), optionally of one group (a sweep),
    in the same shape as `load_runs`. Needs network access and `wandb login`.

    Only jobs that reached training have a W&B run; the local sweep dir is the complete record.
    """
    if not path or path.count("/") != 1:
        raise CollectError(f"--wandb takes ENTITY/PROJECT, got {path!r}")
    if api is None:
        from ncfine.utils.errors import require

        wandb = require("wandb", extra="wandb", feature="ncfine-collect --wandb")
        api = wandb.Api(timeout=60)
    filters = {"group": group} if group else None
    return [run_from_wandb(run) for run in api.runs(path, filters=filters)]


def run_from_wandb(run: Any) -> dict[str, Any]:
    """One W&B run (a `wandb.apis.public.Run`) as a `load_runs` row."""
    config = dict(getattr(run, "config", None) or {})
    summary = getattr(run, "summary", None)
    summary = dict(summary._json_dict if hasattr(summary, "_json_dict") else (summary or {}))
    ours = config.get("ncfine") if isinstance(config.get("ncfine"), dict) else {}

    def pick(*keys: str) -> Any:
        for key in keys:
            node: Any = config
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                node = config.get(key, config.get(key.replace(".", "/")))
            if isinstance(node, dict) and "value" in node:
                node = node["value"]
            if node is not None:
                return node
        return None

    cfg = {
        "backbone": ours.get("backbone", pick("model.backbone")),
        "lr": ours.get("lr", pick("optimizer.lr")),
        "weight_decay": ours.get("weight_decay", pick("optimizer.weight_decay")),
        "seed": ours.get("seed", pick("seed")),
        "data": ours.get("data"),
        "hierarchy": ours.get("hierarchy", pick("data.hierarchy")),
        "max_train_samples": ours.get("max_train_samples", pick("data.max_train_samples")),
    }
    status = summary.get("ncfine/status") or WANDB_STATES.get(str(getattr(run, "state", "")).lower(), "failed")
    metrics = {
        k: float(v)
        for k, v in summary.items()
        if "/" in k and not k.startswith(("_", "ncfine/", "trainer/")) and is_number(v)
    }
    return {
        "job": getattr(run, "name", None) or getattr(run, "id", "?"),
        "run_dir": getattr(run, "url", None) or getattr(run, "path", None),
        "status": status,
        "error": summary.get("ncfine/error"),
        "epochs_completed": summary.get("ncfine/epochs_completed"),
        "wall_time_s": summary.get("ncfine/wall_time_s", summary.get("_runtime")),
        "metrics": metrics,
        "config": cfg,
        "overrides": [],
    }
