"""`ncfine-collect SWEEP_DIR`: one table of a sweep's jobs, and lr x wd heatmaps per backbone.

    ncfine-collect logs/paper_grid/multirun/paper_grid             # writes into the sweep dir
    ncfine-collect SWEEP_DIR --out reports/grid
    ncfine-collect --wandb ENTITY/PROJECT --group paper_grid --out reports/grid

Writes `summary.csv` and `summary.md` (one row per job: backbone, lr, wd, seed, status, coarse
test accuracy `val/acc`, NC1-NC4 on train and test, fine-class recovery, probe and k-NN accuracy,
epochs, wall time, error) and `heatmap_<metric>_<backbone>.png` (lr x wd, seeds as mean +- std)
for `fine/test/kmeans_per_coarse_acc` and `nc/train/nc1`. With several seeds per config,
`summary_by_config.csv` and a second table in summary.md give mean +- std over seeds.

Every job shows up: a job whose results.json says failed/diverged/running keeps that status, and
a job dir with no results.json (Hydra made it, the job died before writing) is `missing`, and so
is a job that SWEEP_DIR/multirun.yaml (the sweep's last command) asked for but that has no dir yet
(queued, or never started); in a heatmap such cells are grey and say why. Nothing is dropped silently.

The steps are plain functions for notebooks:
    runs = load_runs(sweep_dir); table = summarize(runs); write_heatmaps(table, out_dir)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

CONFIG_COLUMNS = ("data", "backbone", "lr", "weight_decay", "seed")
METRIC_COLUMNS = (
    "val/acc",
    "nc/train/nc1", "nc/train/nc2_etf_error", "nc/train/nc3", "nc/train/nc4",
    "nc/test/nc1", "nc/test/nc2_etf_error", "nc/test/nc3", "nc/test/nc4",
    "fine/test/kmeans_per_coarse_acc", "fine/test/kmeans_global_acc",
    "fine/probe_acc", "fine/knn_acc",
)
HEATMAP_METRICS = ("fine/test/kmeans_per_coarse_acc", "nc/train/nc1")
# Keys that place a job in the lr x wd grid; other swept keys make a separate `variant`.
GRID_OVERRIDES = ("model.backbone", "optimizer.lr", "optimizer.weight_decay", "seed")
OK = "completed"
# Directories inside a run dir or sweep dir that never hold jobs.
_SKIP_DIRS = {"checkpoints", "plots", "wandb", "csv", "tensorboard", "lightning_logs"}


class CollectError(ValueError):
    """Nothing to collect, or an unusable argument."""


# ---- loading -----------------------------------------------------------------------------------
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
                runs.append({
                    "job": name, "run_dir": str(root / name), "status": "missing",
                    "error": "not started (no job dir)", "epochs_completed": None, "wall_time_s": None,
                    "metrics": {}, "config": config, "overrides": overrides,
                })
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

        from ncfine.config import dirname

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
        base = {key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
                for key in GRID_OVERRIDES}
        data = (hydra_cfg.get("runtime") or {}).get("choices", {}).get("data")
        expected = []
        for job in jobs:
            parsed = parser.parse_overrides(job)
            name = dirname(get_overrides_dirname(parsed, list(naming["exclude_keys"]), naming["item_sep"],
                                                 naming["kv_sep"]))
            values = dict(base)
            for override in parsed:
                if override.key_or_group.lstrip("+~") in GRID_OVERRIDES:
                    values[override.key_or_group.lstrip("+~")] = override.value()
            expected.append((name, list(job), {
                "backbone": values["model.backbone"], "lr": values["optimizer.lr"],
                "weight_decay": values["optimizer.weight_decay"], "seed": values["seed"], "data": data}))
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
            "job": job, "run_dir": str(run_dir), "status": "missing",
            "error": "results.json unreadable" if exists else "no results.json (the job died before writing it)",
            "epochs_completed": _epochs_from_metrics(run_dir), "wall_time_s": None, "metrics": {},
            "config": _config_from_hydra(run_dir), "overrides": overrides,
        }
    return {
        "job": job, "run_dir": str(run_dir), "status": results.get("status") or "missing",
        "error": results.get("error"), "epochs_completed": results.get("epochs_completed"),
        "wall_time_s": results.get("wall_time_s"), "metrics": dict(results.get("metrics") or {}),
        "config": dict(results.get("config") or {}) or _config_from_hydra(run_dir), "overrides": overrides,
    }


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
    """backbone/lr/wd/seed of a job that wrote no results.json, from Hydra's record of its config."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        path = run_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception:  # noqa: BLE001 - no config: the row keeps its dir name and status
        return {}
    pick = lambda key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)  # noqa: E731
    return {"backbone": pick("model.backbone"), "lr": pick("optimizer.lr"),
            "weight_decay": pick("optimizer.weight_decay"), "seed": pick("seed"), "data": _hydra_choice(run_dir, "data")}


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


# ---- W&B ---------------------------------------------------------------------------------------
WANDB_STATES = {"finished": "completed", "running": "running", "pending": "running", "preempting": "running",
                "preempted": "running", "crashed": "failed", "failed": "failed", "killed": "failed"}


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
    }
    status = summary.get("ncfine/status") or WANDB_STATES.get(str(getattr(run, "state", "")).lower(), "failed")
    metrics = {k: float(v) for k, v in summary.items()
               if "/" in k and not k.startswith(("_", "ncfine/", "trainer/")) and _is_number(v)}
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- the table ---------------------------------------------------------------------------------
def summarize(runs: Sequence[dict[str, Any]], metrics: Sequence[str] = METRIC_COLUMNS) -> pd.DataFrame:
    """One row per job: config columns, status, `metrics` (NaN where a job has none), epochs,
    wall time, error, and `variant` (what else the sweep varied besides backbone/lr/wd/seed)."""
    variants = _variants([run.get("overrides") or [] for run in runs])
    rows = []
    for run, variant in zip(runs, variants):
        cfg = run.get("config") or {}
        row = {"job": run.get("job")}
        row.update({key: cfg.get(key) for key in CONFIG_COLUMNS})
        row["variant"] = variant
        row["status"] = run.get("status")
        found = run.get("metrics") or {}
        row.update({key: _float(found.get(key)) for key in metrics})
        row["epochs"] = run.get("epochs_completed")
        row["wall_time_s"] = run.get("wall_time_s")
        row["error"] = run.get("error")
        rows.append(row)
    columns = ["job", *CONFIG_COLUMNS, "variant", "status", *metrics, "epochs", "wall_time_s", "error"]
    table = pd.DataFrame(rows, columns=columns)
    for key in ("lr", "weight_decay"):
        table[key] = pd.to_numeric(table[key], errors="coerce")
    table["seed"] = pd.to_numeric(table["seed"], errors="coerce").astype("Int64")
    return table.sort_values(["variant", "backbone", "lr", "weight_decay", "seed", "job"],
                             ascending=[True, True, False, False, True, True], na_position="last",
                             key=_sort_key).reset_index(drop=True)


def _sort_key(column: pd.Series) -> pd.Series:
    return column.astype(str) if column.dtype == object else column


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _variants(overrides: list[list[str]]) -> list[str]:
    """Per job, the overrides that differ between jobs, apart from the lr x wd grid and the seed."""
    parsed = [dict(item.split("=", 1) if "=" in item else (item, "") for item in items) for items in overrides]
    keys = {k for p in parsed for k in p if k.lstrip("+~") not in GRID_OVERRIDES}
    varying = sorted(k for k in keys if len({p.get(k) for p in parsed}) > 1)
    return [",".join(f"{k}={p[k]}" for k in varying if k in p) for p in parsed]


def aggregate_seeds(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per config (data, backbone, lr, wd, variant): over its completed seeds, the mean and
    std of each metric, `n_seeds`, `n_completed` and `statuses` (e.g. '2 completed, 1 failed')."""
    metrics = [m for m in (metrics or METRIC_COLUMNS) if m in table.columns]
    keys = ["variant", "data", "backbone", "lr", "weight_decay"]
    rows = []
    for group_key, group in table.groupby(keys, dropna=False, sort=False):
        ok = group[group["status"] == OK]
        row = dict(zip(keys, group_key))
        row["n_seeds"] = len(group)
        row["n_completed"] = len(ok)
        row["statuses"] = _tally(group["status"])
        for metric in metrics:
            values = ok[metric].dropna()
            row[f"{metric} mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _tally(statuses: Iterable[Any]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


# ---- markdown ----------------------------------------------------------------------------------
def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (numbers to 4 significant digits, empty for NaN)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, rule]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_summary(table: pd.DataFrame, out_dir: str | os.PathLike, title: str = "sweep") -> list[Path]:
    """summary.csv, summary.md (and summary_by_config.csv when a config ran with several seeds)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "summary.csv", index=False)
    written = [out / "summary.csv"]
    lines = [f"# {title}", "", f"{len(table)} jobs: {_tally(table['status'])}.", "", "## Jobs", "",
             to_markdown(_drop_empty(table)), ""]
    by_config = aggregate_seeds(table)
    if len(by_config) and (by_config["n_seeds"] > 1).any():
        by_config.to_csv(out / "summary_by_config.csv", index=False)
        written.append(out / "summary_by_config.csv")
        lines += ["## Over seeds (mean ± std of completed runs)", "", to_markdown(_drop_empty(_mean_pm_std(by_config))), ""]
    (out / "summary.md").write_text("\n".join(lines))
    written.insert(1, out / "summary.md")
    return written


def _drop_empty(table: pd.DataFrame) -> pd.DataFrame:
    """Without the columns no job has a value in (summary.csv keeps them: a stable schema)."""
    keep = [c for c in table.columns if c in ("job", "status", "backbone", "lr", "weight_decay", "seed")
            or table[c].map(lambda v: _cell(v) != "").any()]
    return table[keep]


def _mean_pm_std(by_config: pd.DataFrame) -> pd.DataFrame:
    shown = by_config[["variant", "data", "backbone", "lr", "weight_decay", "n_seeds", "statuses"]].copy()
    for column in by_config.columns:
        if column.endswith(" mean"):
            metric = column[: -len(" mean")]
            shown[metric] = [_pm(m, s) for m, s in zip(by_config[column], by_config[f"{metric} std"])]
    return shown


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


# ---- heatmaps ----------------------------------------------------------------------------------
def heatmap_grid(table: pd.DataFrame, metric: str, backbone: Any, variant: str = "") -> dict[str, Any]:
    """The lr x wd grid of one backbone: mean/std over completed seeds and a label for each cell.

    Axes are the lr and wd values of the whole table, so a cell no job of this backbone reached
    is labelled `missing`; a cell whose jobs all failed is labelled by their status.
    """
    lrs = sorted(table["lr"].dropna().unique(), reverse=True)
    wds = sorted(table["weight_decay"].dropna().unique(), reverse=True)
    mean = np.full((len(lrs), len(wds)), np.nan)
    std = np.full_like(mean, np.nan)
    labels = [["missing"] * len(wds) for _ in lrs]
    mine = table[(table["backbone"] == backbone) & (table["variant"] == variant)]
    for i, lr in enumerate(lrs):
        for j, wd in enumerate(wds):
            cell = mine[np.isclose(mine["lr"], lr) & np.isclose(mine["weight_decay"], wd)]
            if cell.empty:
                continue
            ok = cell[cell["status"] == OK][metric].dropna()
            not_ok = cell[cell["status"] != OK]
            if len(ok):
                mean[i, j] = ok.mean()
                std[i, j] = ok.std(ddof=1) if len(ok) > 1 else np.nan
                text = f"{mean[i, j]:.3g}" + (f"\n± {std[i, j]:.2g}" if len(ok) > 1 else "")
                if len(not_ok):
                    text += f"\n({_tally(not_ok['status'])})"
                labels[i][j] = text
            elif (cell["status"] == OK).any():
                labels[i][j] = "no value"  # completed, but this metric was not logged
            elif cell["status"].nunique() == 1:
                labels[i][j] = str(cell["status"].iloc[0]) + (f" x{len(cell)}" if len(cell) > 1 else "")
            else:
                labels[i][j] = _tally(cell["status"]).replace(", ", "\n")
    return {"lrs": lrs, "wds": wds, "mean": mean, "std": std, "labels": labels}


def plot_heatmap(grid: dict[str, Any], metric: str, title: str, path: str | os.PathLike | None = None):
    """Draw one `heatmap_grid` (annotated cells, grey where there is no value)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    mean = np.ma.masked_invalid(grid["mean"])
    rows, cols = mean.shape
    fig = Figure(figsize=(1.6 * cols + 2.4, 1.0 * rows + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    finite = mean.compressed()
    log_scale = metric.rsplit("/", 1)[-1].startswith("nc") and len(finite) and (finite > 0).all()
    norm = (LogNorm(finite.min(), finite.max()) if log_scale and finite.min() < finite.max()
            else Normalize(finite.min(), finite.max()) if len(finite) else Normalize(0, 1))
    image = ax.imshow(mean, cmap=cmap, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_xticks(range(cols), [f"{w:g}" for w in grid["wds"]])
    ax.set_yticks(range(rows), [f"{lr:g}" for lr in grid["lrs"]])
    ax.set_xlabel("weight decay")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize="medium")
    for i in range(rows):
        for j in range(cols):
            value = grid["mean"][i, j]
            dark = not np.isnan(value) and norm(value) < 0.6
            ax.text(j, i, grid["labels"][i][j], ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def heatmap_name(metric: str, backbone: Any, variant: str = "") -> str:
    parts = [metric.replace("/", "_"), str(backbone)] + ([variant] if variant else [])
    safe = "_".join(parts)
    for bad in "/\\ =,:":
        safe = safe.replace(bad, "_" if bad not in "=," else ("-" if bad == "=" else "+"))
    return f"heatmap_{safe}.png"


def write_heatmaps(table: pd.DataFrame, out_dir: str | os.PathLike,
                   metrics: Sequence[str] = HEATMAP_METRICS) -> list[Path]:
    """`heatmap_<metric>_<backbone>[_<variant>].png` for each metric, backbone and variant."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if table["lr"].isna().all() or table["weight_decay"].isna().all():
        return []
    written = []
    combos = table[["backbone", "variant"]].drop_duplicates().dropna(subset=["backbone"])
    for metric in metrics:
        if metric not in table.columns:
            table = table.assign(**{metric: math.nan})
        for backbone, variant in combos.itertuples(index=False):
            grid = heatmap_grid(table, metric, backbone, variant)
            title = f"{metric}: {backbone}" + (f" ({variant})" if variant else "")
            path = out / heatmap_name(metric, backbone, variant)
            plot_heatmap(grid, metric, title, path)
            written.append(path)
    return written


# ---- CLI ---------------------------------------------------------------------------------------
def collect(sweep_dir: str | None = None, out_dir: str | None = None, wandb_path: str | None = None,
            group: str | None = None, heatmap_metrics: Sequence[str] = HEATMAP_METRICS) -> dict[str, Any]:
    """load -> summarize -> write; returns {table, files}."""
    if wandb_path:
        runs = load_wandb_runs(wandb_path, group)
        source = f"W&B {wandb_path}" + (f" group {group}" if group else "")
        out = Path(out_dir or Path.cwd() / f"wandb_{group or wandb_path.replace('/', '_')}")
    else:
        if not sweep_dir:
            raise CollectError("give a SWEEP_DIR, or --wandb ENTITY/PROJECT --group GROUP")
        runs = load_runs(sweep_dir)
        source = str(sweep_dir)
        out = Path(out_dir or sweep_dir)
    if not runs:
        raise CollectError(f"no ncfine runs found in {source} (looked for job dirs with results.json or .hydra/)")
    table = summarize(runs)
    files = write_summary(table, out, title=f"ncfine sweep: {source}")
    files += write_heatmaps(table, out, heatmap_metrics)
    return {"table": table, "files": files}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ncfine-collect",
                                     description="Summarize a sweep: summary.csv, summary.md and lr x wd heatmaps.")
    parser.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR", help="the sweep dir (searched recursively)")
    parser.add_argument("--out", default=None, help="output dir (default: SWEEP_DIR)")
    parser.add_argument("--wandb", default=None, metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", default=None, help="the W&B group (the sweep_name) with --wandb")
    parser.add_argument("--metric", action="append", default=None, metavar="KEY",
                        help=f"heatmap metric (repeatable; default: {', '.join(HEATMAP_METRICS)})")
    args = parser.parse_args(argv)
    try:
        result = collect(args.sweep_dir, args.out, args.wandb, args.group, args.metric or HEATMAP_METRICS)
    except CollectError as exc:
        print(f"ncfine-collect: error: {exc}", file=sys.stderr)
        sys.exit(2)
    table = result["table"]
    print(f"ncfine-collect: {len(table)} jobs ({_tally(table['status'])})")
    for path in result["files"]:
        print(path)


if __name__ == "__main__":
    main()
