"""Per-job dicts -> the sweep table (one row per job), its mean +- std over seeds, and
summary.csv / summary.md."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncfine.collect.schema import (
    CONFIG_COLUMNS,
    GRID_OVERRIDES,
    METRIC_COLUMNS,
    NOT_VARIANTS,
    OK,
    SIZE_OVERRIDE,
    image_count,
    tally,
)


def summarize(runs: Sequence[dict[str, Any]], metrics: Sequence[str] = METRIC_COLUMNS) -> pd.DataFrame:
    """One row per job: config columns, status, `metrics` (NaN where a job has none), epochs,
    wall time, error, and `variant` (what else the sweep varied besides backbone/lr/wd/seed, and
    the training-set size where it tells apart jobs that nothing else does: `run_variants`)."""
    variants = run_variants(runs)
    rows = []
    for run, variant in zip(runs, variants):
        cfg = run.get("config") or {}
        row = {"job": run.get("job")}
        row.update({key: cfg.get(key) for key in CONFIG_COLUMNS})
        if not (row["hierarchy"] is None or isinstance(row["hierarchy"], str)):
            row["hierarchy"] = str(row["hierarchy"])  # a mapping or list hierarchy: one printable cell
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
    for key in ("max_train_samples", "seed"):
        table[key] = pd.to_numeric(table[key], errors="coerce").astype("Int64")
    return table.sort_values(
        ["variant", "backbone", "max_train_samples", "lr", "weight_decay", "seed", "job"],
        ascending=[True, True, True, False, False, True, True],
        na_position="last",
        key=_sort_key,
    ).reset_index(drop=True)


def _sort_key(column: pd.Series) -> pd.Series:
    return column.astype(str) if column.dtype == object else column


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_variants(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Per job (in the order of `runs`), its `variant`: what else the sweep varied (`_variants`),
    and the training-set size where jobs of one variant and backbone differ in it (`_with_sizes`)."""
    configs = [run.get("config") or {} for run in runs]
    backbones = [config.get("backbone") for config in configs]
    variants = _variants([run.get("overrides") or [] for run in runs], backbones)
    return _with_sizes(variants, backbones, [config.get("max_train_samples") for config in configs])


def _variants(overrides: list[list[str]], backbones: Sequence[Any] | None = None) -> list[str]:
    """Per job, the overrides that differ between jobs, apart from the lr x wd grid and the seed
    (and `experiment`: `schema.NOT_VARIANTS`), and apart from a key that only names the backbone
    again: a sweep over arms of a config group
    (experiment=cifar10_cpu_grid's `+cifar10_cpu=resnet18,vgg16_bn`, one arm per backbone) keeps one
    variant per backbone, so its heatmaps are `heatmap_<metric>_<backbone>.png`. A key whose values
    split a backbone (the fine-label arm beside the coarse one of the same backbone) stays."""
    parsed = [dict(item.split("=", 1) if "=" in item else (item, "") for item in items) for items in overrides]
    keys = {k for p in parsed for k in p if k.lstrip("+~") not in (*GRID_OVERRIDES, *NOT_VARIANTS)}
    varying = sorted(k for k in keys if len({p.get(k) for p in parsed}) > 1)
    if backbones is not None:
        varying = [k for k in varying if not _one_to_one([p.get(k) for p in parsed], backbones)]
    return [",".join(f"{k}={p[k]}" for k in varying if k in p) for p in parsed]


def _with_sizes(variants: Sequence[str], backbones: Sequence[Any], sizes: Sequence[Any]) -> list[str]:
    """`variants` with `data.max_train_samples=<size>` added where the jobs of one (variant,
    backbone) trained on different numbers of images and no override says so (the runs of several
    sweeps, or of a config that set the size, collected together): the tables, heatmaps and legends
    then never average a 500-image run with a 3,000-image one. A swept size is in the variant
    already, so there the jobs of one variant agree and nothing is added."""
    named = [_size_text(size) for size in sizes]
    seen: dict[tuple[str, Any], set[str]] = {}
    for variant, backbone, size in zip(variants, backbones, named):
        seen.setdefault((variant, backbone), set()).add(size)
    return [
        ",".join(part for part in (variant, f"{SIZE_OVERRIDE}={size}") if part)
        if len(seen[(variant, backbone)]) > 1
        else variant
        for variant, backbone, size in zip(variants, backbones, named)
    ]


def _size_text(size: Any) -> str:
    """A training-set size as an override writes it: `500`, or `null` for the whole split."""
    count = image_count(size)
    return "null" if count is None else str(count)


def _one_to_one(values: Sequence[Any], backbones: Sequence[Any]) -> bool:
    """Whether each value goes with one backbone and each backbone with one value (every job known)."""
    pairs = set(zip(values, backbones))
    if any(v is None or b is None for v, b in pairs):
        return False
    return len(pairs) == len({v for v, _ in pairs}) == len({b for _, b in pairs})


def aggregate_seeds(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per config (data, training-set size, backbone, lr, wd, variant): over its completed
    seeds, the mean and std of each metric, `n_seeds`, `n_completed` and `statuses` (e.g.
    '2 completed, 1 failed')."""
    metrics = [m for m in (metrics or METRIC_COLUMNS) if m in table.columns]
    # max_train_samples: absent from a table read back from an older summary.csv
    keys = [k for k in ("variant", "data", "max_train_samples", "backbone", "lr", "weight_decay") if k in table]
    rows = []
    for group_key, group in table.groupby(keys, dropna=False, sort=False):
        ok = group[group["status"] == OK]
        row = dict(zip(keys, group_key))
        row["n_seeds"] = len(group)
        row["n_completed"] = len(ok)
        row["statuses"] = tally(group["status"])
        for metric in metrics:
            values = ok[metric].dropna()
            row[f"{metric} mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


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
    lines = [
        f"# {title}",
        "",
        f"{len(table)} jobs: {tally(table['status'])}.",
        "",
        "## Jobs",
        "",
        to_markdown(_drop_empty(table)),
        "",
    ]
    by_config = aggregate_seeds(table)
    if len(by_config) and (by_config["n_seeds"] > 1).any():
        by_config.to_csv(out / "summary_by_config.csv", index=False)
        written.append(out / "summary_by_config.csv")
        lines += [
            "## Over seeds (mean ± std of completed runs)",
            "",
            to_markdown(_drop_empty(_mean_pm_std(by_config))),
            "",
        ]
    (out / "summary.md").write_text("\n".join(lines))
    written.insert(1, out / "summary.md")
    return written


def _drop_empty(table: pd.DataFrame) -> pd.DataFrame:
    """Without the columns no job has a value in (summary.csv keeps them: a stable schema)."""
    keep = [
        c
        for c in table.columns
        if c in ("job", "status", "backbone", "lr", "weight_decay", "seed")
        or table[c].map(lambda v: _cell(v) != "").any()
    ]
    return table[keep]


def _mean_pm_std(by_config: pd.DataFrame) -> pd.DataFrame:
    config = ["variant", "data", "max_train_samples", "backbone", "lr", "weight_decay", "n_seeds", "statuses"]
    shown = by_config[[c for c in config if c in by_config]].copy()
    for column in by_config.columns:
        if column.endswith(" mean"):
            metric = column[: -len(" mean")]
            shown[metric] = [_pm(m, s) for m, s in zip(by_config[column], by_config[f"{metric} std"])]
    return shown


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"
