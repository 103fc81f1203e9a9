"""The sweep table -> fine-class recovery against the number of training images
(`datasize_<metric>.png`), where the runs of a collection trained on different numbers of images.

Whether a network keeps the fine classes may depend on how much data it fits: a few hundred images
are memorised, a few thousand generalise (experiment=cifar10_cpu_gen and its 500-image arm). Each
(backbone, lr, weight decay) is one line over the sizes, at each size the mean over its completed
seeds of the metric at the last epoch with a bar from the lowest to the highest seed. The same
measurement of the inputs (dashed) and of the untrained network (dotted), each the mean over the
runs of a size, are the levels a run must beat to keep the fine classes
(ncfine.analysis.baselines).

Only completed runs with a known size count (`max_train_samples`; a run on the whole split does not
record how many images that is); runs on the fine labels (identity hierarchy: nothing hidden to
recover) are left out. With fewer than two sizes there is no figure and no note.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ncfine.collect.schema import (
    INIT_BASELINE,
    INPUT_BASELINE,
    OK,
    SIZE_OVERRIDE,
    baseline_key,
    file_stem,
    image_count,
    is_number,
)

DATASIZE_METRICS = ("fine/test/kmeans_per_coarse_acc", "fine/train/kmeans_per_coarse_acc")
LINE_KEYS = ["backbone", "lr", "weight_decay", "arm"]


def datasize_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the sweep table a data-size figure draws: completed, not on the fine labels, with
    a known size; plus `size` (int) and `arm` (the variant less the size, which the x axis shows)."""
    ok = _recovering(table)
    sizes = ok["max_train_samples"] if "max_train_samples" in ok.columns else pd.Series(None, index=ok.index)
    sizes = sizes.map(image_count, na_action="ignore").astype("Int64")
    known = sizes.notna()
    return ok[known].assign(size=sizes[known].astype(int), arm=ok.loc[known, "variant"].map(_without_size))


def _recovering(table: pd.DataFrame) -> pd.DataFrame:
    """The completed runs that have hidden fine classes to recover (not on the fine labels)."""
    ok = table[table["status"] == OK]
    return ok[ok["hierarchy"].astype(str) != "identity"] if "hierarchy" in ok.columns else ok


def _without_size(variant: str) -> str:
    """A variant without its `data.max_train_samples=...` item: the arms of the sizes are one line."""
    return ",".join(part for part in str(variant).split(",") if part.lstrip("+~").split("=")[0] != SIZE_OVERRIDE)


def datasize_lines(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (backbone, lr, weight_decay, arm) and size, over the runs with a value of `metric`:
    `mean`, `low`, `high` (the range over seeds) and `n`; sizes ascending. `runs`: `datasize_runs`."""
    found = runs[runs[metric].notna()] if metric in runs.columns else runs.iloc[0:0]
    columns = [*LINE_KEYS, "size", "mean", "low", "high", "n"]
    if found.empty:
        return pd.DataFrame(columns=columns)
    stats = found.groupby([*LINE_KEYS, "size"], dropna=False, sort=False)[metric].agg(["mean", "min", "max", "count"])
    stats = stats.rename(columns={"min": "low", "max": "high", "count": "n"}).reset_index()
    return stats.sort_values([*LINE_KEYS, "size"], key=_sort_key).reset_index(drop=True)[columns]


def datasize_baselines(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per size: the mean over its runs of `metric` measured on the inputs (`input`) and on the
    untrained network (`init`); NaN where no run has it (runs made before the baselines)."""
    frame = pd.DataFrame({"size": sorted(runs["size"].unique())})
    for baseline in (INPUT_BASELINE, INIT_BASELINE):
        key = baseline_key(metric, baseline)
        means = runs.groupby("size")[key].mean() if key in runs.columns else pd.Series(dtype=float)
        frame[baseline] = frame["size"].map(means).astype(float)
    return frame


def _sort_key(column: pd.Series) -> pd.Series:
    return column if pd.api.types.is_numeric_dtype(column) else column.astype(str)


def plot_datasize(lines: pd.DataFrame, baselines: pd.DataFrame, metric: str, path: str | os.PathLike | None = None):
    """One axes: `datasize_lines` as mean lines with min-max bars, `datasize_baselines` in grey."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = list(lines.groupby(LINE_KEYS, dropna=False, sort=False))
    # the arm is named only where it tells apart lines of one backbone
    arms = lines.groupby("backbone", dropna=False)["arm"].nunique().to_dict()
    line_labels = [
        f"{backbone}, lr {_g(lr)}, wd {_g(wd)}" + (f" ({arm})" if arms.get(backbone, 1) > 1 else "")
        for backbone, lr, wd, arm in (key for key, _ in groups)
    ]
    # Two legend columns fit the figure's width only while the labels are short (an arm's name is not).
    columns = 2 if max(map(len, line_labels), default=0) <= 40 else 1
    legend_rows = math.ceil((len(groups) + 2) / columns)
    fig = Figure(figsize=(6.4, 4.2 + 0.22 * legend_rows), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, ((_, line), label) in enumerate(zip(groups, line_labels)):
        error = [line["mean"] - line["low"], line["high"] - line["mean"]]
        ax.errorbar(line["size"], line["mean"], yerr=error, marker="o", capsize=3, color=f"C{i % 10}", label=label)
    levels = []
    for baseline, style, label in (
        (INPUT_BASELINE, "--", "inputs (pixels)"),
        (INIT_BASELINE, ":", "untrained network (before step 1)"),
    ):
        known = baselines[baselines[baseline].notna()]
        if len(known):
            levels += ax.plot(
                known["size"], known[baseline], style, marker="s", markersize=4, color="grey", label=label
            )
    sizes = sorted(set(lines["size"]) | set(baselines["size"]))
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel(f"{metric} (last epoch)")
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: handles[i] in levels)  # the runs first, then the levels
    # Below the axes, as the trajectories': inside, the legend covers the lines it names.
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="outside lower center",
        ncol=columns,
        fontsize="small",
    )
    ax.set_title(f"{metric}: mean and range over seeds, by training-set size", fontsize="medium")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _g(value: Any) -> str:
    return f"{value:g}" if is_number(value) else str(value)


def datasize_name(metric: str) -> str:
    return f"datasize_{file_stem(metric)}.png"


def write_datasize(
    table: pd.DataFrame, out_dir: str | os.PathLike, metrics: Sequence[str] = DATASIZE_METRICS
) -> tuple[list[Path], list[str]]:
    """`datasize_<metric>.png` for each of `metrics` a completed run logged, when the runs that
    `datasize_runs` keeps span at least two sizes; else nothing (and no note). Returns (files,
    notes): a note for a metric no such run logged and one for completed runs of unknown size."""
    runs = datasize_runs(table)
    if runs["size"].nunique() < 2:
        return [], []
    notes = []
    unsized = len(_recovering(table)) - len(runs)
    if unsized:
        runs_word = "run" if unsized == 1 else "runs"
        notes.append(
            f"datasize: {unsized} completed {runs_word} with no max_train_samples (the whole split, or "
            "not recorded): not on the data-size axis"
        )
    out = Path(out_dir)
    written = []
    for metric in metrics:
        lines = datasize_lines(runs, metric)
        if lines.empty:
            notes.append(f"no datasize figure of {metric}: no completed run of a known size logged it")
            continue
        out.mkdir(parents=True, exist_ok=True)
        path = out / datasize_name(metric)
        plot_datasize(lines, datasize_baselines(runs, metric), metric, path)
        written.append(path)
    return written, notes
