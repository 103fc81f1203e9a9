"""The sweep table -> lr x wd heatmaps per backbone (seeds as mean +- std, grey cells say why
they are empty; NC metrics on a log colour scale)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncfine.collect.schema import HEATMAP_METRICS, OK, file_stem, tally


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


def write_heatmaps(table: pd.DataFrame, out_dir: str | os.PathLike, metrics: Sequence[str] | None = None) -> list[Path]:
    """`heatmap_<metric>_<backbone>[_<variant>].png` for each metric, backbone and variant;
    `metrics` None: `default_heatmap_metrics(table)`."""
    if metrics is None:
        metrics = default_heatmap_metrics(table)[0]
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
