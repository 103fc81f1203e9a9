"""The runs' metrics.csv -> one figure per backbone: per-superclass recovery against train NC1 over
training (`trajectory_<backbone>.png`).

The paper's claim is about the terminal phase: as the training features collapse (NC1 -> 0), does
k-means inside each superclass still find the fine classes, and in which family does it stop?
Each analysed epoch of a run (a row of its metrics.csv with `nc/train/nc1` and a per-superclass
recovery) is one point at (train NC1, recovery), train and test recovery in two colours and
markers, one line per seed in epoch order, the last analysed epoch a star. The x axis is log scale
and reversed, so training runs left to right. Where the runs of a backbone differ in learning rate
or weight decay (an lr x wd grid), each (lr, wd) cell gets its own colour and its legend entry
names it; the split is then told by marker and line style.

Runs trained on the fine labels (identity hierarchy: no hidden classes, so no recovery) are left
out, as is a run without metrics.csv or without the columns; each with a one-line note.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ncfine.collect.schema import OK, file_stem, is_number

NC1 = "nc/train/nc1"
RECOVERY = {"train": "fine/train/kmeans_per_coarse_acc", "test": "fine/test/kmeans_per_coarse_acc"}
SPLIT_STYLE = {"train": {"color": "C0", "marker": "o"}, "test": {"color": "C1", "marker": "s"}}
SEED_LINES = ("-", "--", ":", "-.")
# With several (lr, wd) cells in one figure the colour is the cell's and the split has a line style.
SPLIT_LINES = {"train": "-", "test": ":"}


def trajectory_points(metrics: pd.DataFrame) -> pd.DataFrame:
    """The analysed epochs of one run: columns epoch, nc1, train, test (a split's recovery NaN where
    it was not logged), the rows with a train NC1 and at least one recovery, in epoch order."""
    frame = pd.DataFrame({"epoch": pd.to_numeric(metrics["epoch"], errors="coerce")})
    frame["nc1"] = pd.to_numeric(metrics[NC1], errors="coerce") if NC1 in metrics.columns else math.nan
    for split, key in RECOVERY.items():
        frame[split] = pd.to_numeric(metrics[key], errors="coerce") if key in metrics.columns else math.nan
    keep = frame["nc1"].notna() & frame[list(RECOVERY)].notna().any(axis=1)
    return frame[keep].sort_values("epoch").reset_index(drop=True)


def load_trajectory(run: dict[str, Any], variant: str = "") -> tuple[dict[str, Any] | None, str | None]:
    """(trajectory, None) for a run with points to draw, else (None, why not); a trajectory that
    lacks one split's recovery comes with a note saying so."""
    config = run.get("config") or {}
    job = run.get("job") or run.get("run_dir")
    if str(config.get("hierarchy")) == "identity":
        return None, f"{job}: trained on the fine labels (identity hierarchy, no hidden classes): left out"
    path = Path(str(run.get("run_dir") or "")) / "metrics.csv"
    try:
        metrics = pd.read_csv(path)
    except FileNotFoundError:
        return None, f"{job}: no metrics.csv ({run.get('status')}): left out"
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        return None, f"{job}: metrics.csv unreadable ({type(exc).__name__}): left out"
    if "epoch" not in metrics.columns:
        return None, f"{job}: metrics.csv has no epoch column: left out"
    absent = [key for key in (NC1, *RECOVERY.values()) if key not in metrics.columns]
    if NC1 in absent or all(key in absent for key in RECOVERY.values()):
        return None, f"{job}: metrics.csv has no {' / '.join(absent)} column: left out"
    points = trajectory_points(metrics)
    if points.empty:
        return None, f"{job}: no analysed epoch with {NC1} and a per-superclass recovery: left out"
    trajectory = {
        "job": job,
        "backbone": config.get("backbone"),
        "seed": config.get("seed"),
        "cell": (config.get("lr"), config.get("weight_decay")),
        "variant": variant,
        "status": run.get("status"),
        "points": points,
    }
    note = f"{job}: no {' / '.join(absent)} column: drawn without it" if absent else None
    return trajectory, note


def _x_scale(ax, values: pd.Series) -> None:
    """Log x; symlog (linear below the smallest positive NC1) where a run reaches exactly 0."""
    positive = values[values > 0]
    if len(positive) == len(values) and len(values):
        ax.set_xscale("log")
    elif len(positive) and (values >= 0).all():
        ax.set_xscale("symlog", linthresh=float(positive.min()))


def plot_trajectories(
    trajectories: Sequence[dict[str, Any]], title: str | None = None, path: str | os.PathLike | None = None
):
    """One axes: recovery (train and test) against train NC1, one line per run (seed) and split."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    cells = sorted({t.get("cell") for t in trajectories}, key=str)
    by_cell = len(cells) > 1
    columns = 3 if by_cell else 2
    legend_rows = math.ceil((2 * len(trajectories) + 1) / columns)  # two splits a run, and the star
    fig = Figure(figsize=(8.0 if by_cell else 6.4, 4.2 + 0.2 * legend_rows), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    several_variants = len({t["variant"] for t in trajectories}) > 1
    for i, trajectory in enumerate(trajectories):
        points = trajectory["points"]
        who = f"seed {trajectory['seed']}"
        if by_cell:
            lr, wd = trajectory["cell"]
            who = f"lr {lr:g}, wd {wd:g}, {who}" if is_number(lr) and is_number(wd) else f"lr {lr}, wd {wd}, {who}"
        if several_variants and trajectory["variant"]:
            who = f"{trajectory['variant']}, {who}"
        if trajectory["status"] != OK:
            who += f" ({trajectory['status']})"
        for split, style in SPLIT_STYLE.items():
            drawn = points[points[split].notna()]
            if drawn.empty:
                continue
            if by_cell:
                line = SPLIT_LINES[split]
                style = {**style, "color": f"C{cells.index(trajectory.get('cell')) % 10}"}
            else:
                line = SEED_LINES[i % len(SEED_LINES)]
            ax.plot(drawn["nc1"], drawn[split], line, markersize=4, label=f"{split}, {who}", **style)
            last = drawn.iloc[-1]
            ax.plot(last["nc1"], last[split], "*", markersize=14, markeredgecolor="black", color=style["color"])
    _x_scale(ax, pd.concat([t["points"]["nc1"] for t in trajectories]))
    ax.invert_xaxis()  # NC1 falls as training goes on: later epochs to the right
    ax.set_xlabel(f"{NC1} (log scale, reversed: more collapsed to the right)")
    ax.set_ylabel("k-means per superclass: accuracy")
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="", marker="*", markersize=12, color="grey", markeredgecolor="black"))
    labels.append("last analysed epoch")
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def write_trajectories(
    runs: Sequence[dict[str, Any]], out_dir: str | os.PathLike, variants: Sequence[str] | None = None
) -> tuple[list[Path], list[str]]:
    """`trajectory_<backbone>.png` per backbone with at least one run to draw; returns (files,
    notes), a note for every run left out or drawn without a split. `variants` (per run, as the
    sweep table's `variant` column) tell apart several arms of one backbone in the legend."""
    by_backbone: dict[Any, list[dict[str, Any]]] = {}
    notes = []
    for run, variant in zip(runs, variants if variants is not None else [""] * len(runs)):
        trajectory, note = load_trajectory(run, variant)
        if note:
            notes.append(f"trajectory: {note}")
        if trajectory is not None:
            by_backbone.setdefault(trajectory["backbone"], []).append(trajectory)
    out = Path(out_dir)
    written = []
    for backbone, trajectories in sorted(by_backbone.items(), key=lambda item: str(item[0])):
        trajectories.sort(key=lambda t: (str(t["variant"]), str(t["seed"]), str(t["job"])))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"trajectory_{file_stem(backbone)}.png"
        plot_trajectories(trajectories, f"{backbone}: fine-class recovery as the training features collapse", path)
        written.append(path)
    return written, notes
