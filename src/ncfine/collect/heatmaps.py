"""The sweep table -> lr x wd heatmaps per backbone (seeds as mean +- std, grey cells say why
they are empty; NC metrics on a log colour scale). A recovery heatmap names, under its title, the
same measurement of the inputs and of the untrained network (ncfine.analysis.baselines) where the
table has them: a cell keeps the fine classes only above both."""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncfine.collect.schema import HEATMAP_METRICS, INIT_BASELINE, INPUT_BASELINE, OK, baseline_key, file_stem, tally

# The recovery metrics that have baselines: k-means accuracy per superclass or globally, the probe.
RECOVERY_METRIC = re.compile(r"fine/[^/]+/kmeans_[^/]+_acc|fine/probe_acc")
BASELINE_NAMES = {INPUT_BASELINE: "inputs", INIT_BASELINE: "untrained network"}


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
                    text += f"\n({tally(not_ok['status'])})"
                labels[i][j] = text
            elif (cell["status"] == OK).any():
                labels[i][j] = "no value"  # completed, but this metric was not logged
            elif cell["status"].nunique() == 1:
                labels[i][j] = str(cell["status"].iloc[0]) + (f" x{len(cell)}" if len(cell) > 1 else "")
            else:
                labels[i][j] = tally(cell["status"]).replace(", ", "\n")
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
    norm = (
        LogNorm(finite.min(), finite.max())
        if log_scale and finite.min() < finite.max()
        else Normalize(finite.min(), finite.max())
        if len(finite)
        else Normalize(0, 1)
    )
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
            ax.text(
                j,
                i,
                grid["labels"][i][j],
                ha="center",
                va="center",
                fontsize="small",
                color="white" if dark else "black",
            )
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def baseline_note(table: pd.DataFrame, metric: str, backbone: Any, variant: str = "") -> str | None:
    """`inputs 0.62, untrained network 0.64-0.68 (range over the cells' runs)`: the baselines of a
    recovery `metric` over the runs of one heatmap (any status: they are measured before the first
    step), for its title; None for another metric or where the table has no baseline values (runs
    made before the baselines were measured, or a metric without baseline columns)."""
    if not RECOVERY_METRIC.fullmatch(metric):
        return None
    mine = table[(table["backbone"] == backbone) & (table["variant"] == variant)]
    parts, ranged = [], False
    for baseline, name in BASELINE_NAMES.items():
        key = baseline_key(metric, baseline)
        values = mine[key].dropna() if key in mine.columns else pd.Series(dtype=float)
        if values.empty:
            continue
        low, high = f"{values.min():.2f}", f"{values.max():.2f}"
        ranged |= low != high
        parts.append(f"{name} {low}" if low == high else f"{name} {low}-{high}")
    if not parts:
        return None
    return ", ".join(parts) + (" (range over the cells' runs)" if ranged else "")


def heatmap_name(metric: str, backbone: Any, variant: str = "") -> str:
    return f"heatmap_{file_stem(metric, backbone, variant)}.png"


def default_heatmap_metrics(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(metrics to draw, notes): `HEATMAP_METRICS` less those that no completed job logged (e.g.
    the train split's recovery in a sweep that analysed the test split only), each left out with a
    one-line note. With no completed job at all, all of them: their grey cells say why."""
    completed = table[table["status"] == OK]
    if completed.empty:
        return list(HEATMAP_METRICS), []
    drawn, notes = [], []
    for metric in HEATMAP_METRICS:
        if metric in completed.columns and completed[metric].notna().any():
            drawn.append(metric)
        else:
            notes.append(f"no heatmap of {metric}: no completed job logged it")
    return drawn, notes


def heatmap_groups(table: pd.DataFrame) -> tuple[list[tuple[Any, str]], list[str]]:
    """(the (backbone, variant) pairs to draw, notes): those whose jobs span more than one lr x wd
    cell; a pair with one cell (an architecture sweep such as experiment=cifar10_cpu) is a row of
    the tables, not a heatmap, and gets a one-line note instead. No lr or wd known: nothing."""
    groups, notes = [], []
    if table["lr"].isna().all() or table["weight_decay"].isna().all():
        return groups, notes
    combos = table[["backbone", "variant"]].drop_duplicates().dropna(subset=["backbone"])
    for backbone, variant in combos.itertuples(index=False):
        jobs = table[(table["backbone"] == backbone) & (table["variant"] == variant)]
        cells = jobs[["lr", "weight_decay"]].drop_duplicates()
        if len(cells) > 1:
            groups.append((backbone, variant))
        else:
            who = f"{backbone}" + (f" ({variant})" if variant else "")
            lr, wd = cells.iloc[0] if len(cells) else (math.nan, math.nan)
            notes.append(f"no heatmaps of {who}: one lr x wd cell (lr {lr}, wd {wd}); summary.md has its values")
    return groups, notes


def write_heatmaps(
    table: pd.DataFrame,
    out_dir: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    groups: Sequence[tuple[Any, str]] | None = None,
) -> list[Path]:
    """`heatmap_<metric>_<backbone>[_<variant>].png` for each metric and each (backbone, variant) of
    `groups`; `metrics` None: `default_heatmap_metrics(table)`; `groups` None: `heatmap_groups(table)`
    (those that span more than one lr x wd cell). A recovery metric's title says its baselines
    (`baseline_note`)."""
    if metrics is None:
        metrics = default_heatmap_metrics(table)[0]
    if groups is None:
        groups = heatmap_groups(table)[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in metrics:
        if metric not in table.columns:
            table = table.assign(**{metric: math.nan})
        for backbone, variant in groups:
            grid = heatmap_grid(table, metric, backbone, variant)
            title = f"{metric}: {backbone}" + (f" ({variant})" if variant else "")
            note = baseline_note(table, metric, backbone, variant)
            if note:  # wrapped: the title of a 2 x 2 grid is about 55 characters wide
                title += "\n" + "\n".join(textwrap.wrap(f"baselines: {note}", 55))
            path = out / heatmap_name(metric, backbone, variant)
            plot_heatmap(grid, metric, title, path)
            written.append(path)
    return written
