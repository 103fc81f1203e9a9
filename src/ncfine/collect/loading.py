"""Run dirs on disk -> one dict per job (results.json plus where it came from); a sweep's
multirun.yaml -> the jobs it asked for that have no dir yet."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ncfine.collect.schema import GRID_OVERRIDES, SIZE_OVERRIDE, CollectError

# Directories inside a run dir or sweep dir that never hold jobs.
_SKIP_DIRS = {"checkpoints", "plots", "wandb", "csv", "tensorboard", "lightning_logs"}


def find_job_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """Every job dir below `sweep_dir`: a dir with results.json or a Hydra job record (.hydra/)."""
    root = Path(sweep_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        is_job = "results.json" in filenames or (here / ".hydra" / "overrides.yaml").exists()
        if is_job and (here != root or "multirun.yaml" not in filenames):
            found.append(here)
            dirnames[:] = []  # a job's own subfolders hold no other jobs
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
    return found


def load_runs(sweep_dir: str | os.PathLike, expected: bool = True) -> list[dict[str, Any]]:
    """One dict per job dir below `sweep_dir`, in the shape of results.json plus `job`
    (the dir relative to the sweep dir), `run_dir` and `overrides` (Hydra's, when recorded).

    With `expected`, the jobs the sweep's last command asked for (its multirun.yaml) that have no
    dir yet (still queued on SLURM, or never started) are rows too, with status `missing`."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise CollectError(f"sweep dir {str(root)!r} does not exist or is not a directory")
    runs = [load_run(path, root) for path in find_job_dirs(root)]
    if expected:
        found = {Path(run["run_dir"]).resolve() for run in runs}
        for name, overrides, config in expected_jobs(root):
            if (root / name).resolve() not in found:
                runs.append(
                    {
                        "job": name,
                        "run_dir": str(root / name),
                        "status": "missing",
                        "error": "not started (no job dir)",
                        "epochs_completed": None,
                        "wall_time_s": None,
                        "metrics": {},
                        "config": config,
                        "overrides": overrides,
                    }
                )
    return runs


DEFAULT_SUBDIR = "${ncfine.dirname:${hydra:job.override_dirname}}"


def expected_jobs(sweep_dir: str | os.PathLike) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(job dir name, overrides, config summary) of every job the sweep's last command launched,
    computed from `SWEEP_DIR/multirun.yaml` the way Hydra's basic sweeper and ncfine's
    `hydra.sweep.subdir` name them; [] when that is not possible (another sweeper or subdir)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists():
        return []
    try:
        from hydra._internal.config_loader_impl import get_overrides_dirname
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        from ncfine.utils.config import dirname

        cfg = OmegaConf.load(path)
        hydra_cfg = OmegaConf.to_container(cfg.hydra, resolve=False)
        sweeper = hydra_cfg.get("sweeper") or {}
        if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return []
        if (hydra_cfg.get("sweep") or {}).get("subdir") != DEFAULT_SUBDIR:
            return []
        naming = hydra_cfg["job"]["config"]["override_dirname"]
        parser = OverridesParser.create()
        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        task = [str(item) for item in (hydra_cfg.get("overrides") or {}).get("task") or []]
        batches = BasicSweeper.split_arguments(parser.parse_overrides(params + task), sweeper.get("max_batch_size"))
        jobs = [job for batch in batches for job in batch]
        keys = (*GRID_OVERRIDES, SIZE_OVERRIDE)
        base = {key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False) for key in keys}
        data = (hydra_cfg.get("runtime") or {}).get("choices", {}).get("data")
        expected = []
        for job in jobs:
            parsed = parser.parse_overrides(job)
            name = dirname(
                get_overrides_dirname(parsed, list(naming["exclude_keys"]), naming["item_sep"], naming["kv_sep"])
            )
            values = dict(base)
            for override in parsed:
                if override.key_or_group.lstrip("+~") in keys:
                    values[override.key_or_group.lstrip("+~")] = override.value()
            expected.append(
                (
                    name,
                    list(job),
                    {
                        "backbone": values["model.backbone"],
                        "lr": values["optimizer.lr"],
                        "weight_decay": values["optimizer.weight_decay"],
                        "seed": values["seed"],
                        "data": data,
                        "max_train_samples": values[SIZE_OVERRIDE],
                    },
                )
            )
        return expected
    except Exception:  # noqa: BLE001 - an unreadable record only loses the not-started rows
        return []


def load_run(run_dir: Path, root: Path | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    job = str(run_dir.relative_to(root)) if root is not None and run_dir != root else run_dir.name
    overrides = _read_yaml_list(run_dir / ".hydra" / "overrides.yaml")
    results = _read_json(run_dir / "results.json")
    if results is None:
        exists = (run_dir / "results.json").exists()
        return {
            "job": job,
            "run_dir": str(run_dir),
            "status": "missing",
            "error": "results.json unreadable" if exists else "no results.json (the job died before writing it)",
            "epochs_completed": _epochs_from_metrics(run_dir),
            "wall_time_s": None,
            "metrics": {},
            "config": _config_from_hydra(run_dir),
            "overrides": overrides,
        }
    config = dict(results.get("config") or {}) or _config_from_hydra(run_dir)
    swept_size = _size_override(overrides)
    if "max_train_samples" not in config and swept_size:
        # a run from before results.json recorded its size: the sweep's override still says it
        config["max_train_samples"] = swept_size[0]
    return {
        "job": job,
        "run_dir": str(run_dir),
        "status": results.get("status") or "missing",
        "error": results.get("error"),
        "epochs_completed": results.get("epochs_completed"),
        "wall_time_s": results.get("wall_time_s"),
        "metrics": dict(results.get("metrics") or {}),
        "config": config,
        "overrides": overrides,
    }


def _size_override(overrides: list[str]) -> list[int | None]:
    """[the training-set size] that a `data.max_train_samples=N` (or `=null`) override set, else []."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") == SIZE_OVERRIDE:
            value = value.strip().strip("'\"")
            if value == "null":
                return [None]
            return [int(value)] if value.isdigit() else []
    return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _read_yaml_list(path: Path) -> list[str]:
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    try:
        return [str(item) for item in OmegaConf.to_container(OmegaConf.load(path))]
    except Exception:  # noqa: BLE001 - a damaged record only loses the grouping hint
        return []


def _config_from_hydra(run_dir: Path) -> dict[str, Any]:
    """backbone/lr/wd/seed, data, hierarchy and training-set size of a job that wrote no
    results.json, from Hydra's record of its config."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        path = run_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception:  # noqa: BLE001 - no config: the row keeps its dir name and status
        return {}
    pick = lambda key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)  # noqa: E731
    return {
        "backbone": pick("model.backbone"),
        "lr": pick("optimizer.lr"),
        "weight_decay": pick("optimizer.weight_decay"),
        "seed": pick("seed"),
        "data": _hydra_choice(run_dir, "data"),
        "hierarchy": _plain(pick("data.hierarchy")),
        "max_train_samples": pick(SIZE_OVERRIDE),
    }


def _plain(value: Any) -> Any:
    """A config node as plain Python (a mapping hierarchy as a dict), anything else as it is."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _hydra_choice(run_dir: Path, group: str) -> str | None:
    from omegaconf import OmegaConf

    try:
        hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")
        return OmegaConf.select(hydra_cfg, f"hydra.runtime.choices.{group}", default=None)
    except Exception:  # noqa: BLE001 - no Hydra record: unknown
        return None


def _epochs_from_metrics(run_dir: Path) -> int | None:
    try:
        return max(0, sum(1 for _ in (run_dir / "metrics.csv").open()) - 1)
    except OSError:
        return None
