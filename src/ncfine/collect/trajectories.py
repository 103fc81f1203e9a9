"""The runs' metrics.csv -> one figure per backbone: per-superclass recovery against train NC1 over
training (`trajectory_<backbone>.png`; `trajectory_<backbone>_<N>img.png` per training-set size
where the runs of a backbone trained on different numbers of images).

The paper's claim is about the terminal phase: as the training features collapse (NC1 -> 0), does
k-means inside each superclass still find the fine classes, and in which family does it stop?
Each analysed epoch of a run (a row of its metrics.csv with `nc/train/nc1` and a per-superclass
recovery) is one point at (train NC1, recovery), train and test recovery in two colours and
markers, one line per seed in epoch order, the last analysed epoch a star. The x axis is log scale
and reversed, so training runs left to right. Where the runs of a backbone differ in learning rate
or weight decay (an lr x wd grid), each (lr, wd) cell gets its own colour and its legend entry
names it; the split is then told by marker and line style.

A recovery means something only beside what needs no training (ncfine.analysis.baselines), so
each line starts at the run's untrained network, measured before its first step (results.json's
`baseline/init/train/nc1` and `baseline/init/<split>/kmeans_per_coarse_acc`, an X joined to the
first analysed epoch), and the inputs' recovery of each split (`baseline/input/<split>/...`, the
mean over the figure's runs) is a dashed horizontal line: a run keeps the fine classes where its
line stays above both. Runs made before the baselines were measured are drawn without them.

Runs trained on the fine labels (identity hierarchy: no hidden classes, so no recovery) are left
out, as is a run without metrics.csv or without the columns; each with a one-line note.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ncfine.collect.schema import INIT_BASELINE, INPUT_BASELINE, OK, baseline_key, file_stem, image_count, is_number

NC1 = "nc/train/nc1"
RECOVERY = {"train": "fine/train/kmeans_per_coarse_acc", "test": "fine/test/kmeans_per_coarse_acc"}
SPLIT_STYLE = {"train": {"color": "C0", "marker": "o"}, "test": {"color": "C1", "marker": "s"}}
SEED_LINES = ("-", "--", ":", "-.")
# With several (lr, wd) cells in one figure the colour is the cell's and the split has a line style.
SPLIT_LINES = {"train": "-", "test": ":"}
# ... and the inputs' lines are grey, since the split colours are cells' colours there.
GRID_INPUT_COLOURS = {"train": "dimgrey", "test": "black"}
INIT_MARKER = "X"
INIT_LABEL = "untrained network (before step 1)"


def trajectory_points(metrics: pd.DataFrame) -> pd.DataFrame:
    """The analysed epochs of one run: columns epoch, nc1, train, test (a split's recovery NaN where
    it was not logged), the rows with a train NC1 and at least one recovery, in epoch order."""
    frame = pd.DataFrame({"epoch": pd.to_numeric(metrics["epoch"], errors="coerce")})
    frame["nc1"] = pd.to_numeric(metrics[NC1], errors="coerce") if NC1 in metrics.columns else math.nan
    for split, key in RECOVERY.items():
        frame[split] = pd.to_numeric(metrics[key], errors="coerce") if key in metrics.columns else math.nan
    keep = frame["nc1"].notna() & frame[list(RECOVERY)].notna().any(axis=1)
    return frame[keep].sort_values("epoch").reset_index(drop=True)


def init_point(metrics: Mapping[str, Any]) -> dict[str, float] | None:
    """The untrained network's point from a run's final metrics (results.json): nc1, and train and
    test recovery (NaN for a split without its baseline key); None without `baseline/init/train/nc1`
    or without any split's recovery (a run made before the baselines were measured)."""
    nc1 = metrics.get(baseline_key(NC1, INIT_BASELINE))
    recovery = {split: metrics.get(baseline_key(key, INIT_BASELINE)) for split, key in RECOVERY.items()}
    if not _finite(nc1) or not any(_finite(value) for value in recovery.values()):
        return None
    return {"nc1": float(nc1), **{split: float(v) if _finite(v) else math.nan for split, v in recovery.items()}}


def input_levels(trajectories: Sequence[dict[str, Any]]) -> dict[str, float]:
    """{split: the inputs' recovery, mean over the trajectories that have it}, for each split that
    some trajectory draws and some run measured the inputs of."""
    levels = {}
    for split in RECOVERY:
        if not any(t["points"][split].notna().any() for t in trajectories):
            continue
        values = [t["inputs"][split] for t in trajectories if split in t.get("inputs", {})]
        if values:
            levels[split] = sum(values) / len(values)
    return levels


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
        "size": config.get("max_train_samples"),
        "points": points,
        "init": init_point(run.get("metrics") or {}),
        "inputs": _inputs(run.get("metrics") or {}),
    }
    note = f"{job}: no {' / '.join(absent)} column: drawn without it" if absent else None
    return trajectory, note


def _inputs(metrics: Mapping[str, Any]) -> dict[str, float]:
    found = {split: metrics.get(baseline_key(key, INPUT_BASELINE)) for split, key in RECOVERY.items()}
    return {split: float(value) for split, value in found.items() if _finite(value)}


def _finite(value: Any) -> bool:
    """A number that can be drawn (results.json may hold NaN for a value that could not be computed)."""
    return is_number(value) and math.isfinite(value)


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
    """One axes: recovery (train and test) against train NC1, one line per run (seed) and split,
    from its untrained network where known, and the inputs' recovery per split."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    cells = sorted({t.get("cell") for t in trajectories}, key=str)
    by_cell = len(cells) > 1
    columns = 3 if by_cell else 2
    inputs = input_levels(trajectories)
    has_init = any(t.get("init") is not None for t in trajectories)
    # two splits a run, the star, the inputs' lines and the untrained network
    legend_rows = math.ceil((2 * len(trajectories) + 1 + len(inputs) + has_init) / columns)
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
            init = trajectory.get("init")
            if init is not None and not math.isnan(init[split]):
                first = drawn.iloc[0]
                ax.plot([init["nc1"], first["nc1"]], [init[split], first[split]], line, color=style["color"])
                ax.plot(
                    init["nc1"], init[split], INIT_MARKER, markersize=9, markeredgecolor="black", color=style["color"]
                )
    for split, level in inputs.items():
        colour = GRID_INPUT_COLOURS[split] if by_cell else SPLIT_STYLE[split]["color"]
        ax.axhline(level, linestyle="--", linewidth=1.2, color=colour, label=f"inputs (pixels), {split}")
    inits = [t["init"]["nc1"] for t in trajectories if t.get("init") is not None]
    _x_scale(ax, pd.concat([*(t["points"]["nc1"] for t in trajectories), pd.Series(inits, dtype=float)]))
    ax.invert_xaxis()  # NC1 falls as training goes on: later epochs to the right
    ax.set_xlabel(f"{NC1} (log scale, reversed: more collapsed to the right)")
    ax.set_ylabel("k-means per superclass: accuracy")
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="", marker="*", markersize=12, color="grey", markeredgecolor="black"))
    labels.append("last analysed epoch")
    if has_init:
        handles.append(
            Line2D([], [], linestyle="", marker=INIT_MARKER, markersize=9, color="grey", markeredgecolor="black")
        )
        labels.append(INIT_LABEL)
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def write_trajectories(
    runs: Sequence[dict[str, Any]], out_dir: str | os.PathLike, variants: Sequence[str] | None = None
) -> tuple[list[Path], list[str]]:
    """`trajectory_<backbone>.png` per backbone with at least one run to draw, or
    `trajectory_<backbone>_<N>img.png` per training-set size N (`allimg`: the whole split) where
    the runs of a backbone differ in `max_train_samples`; returns (files, notes), a note for every
    run left out or drawn without a split. `variants` (per run, as the sweep table's `variant`
    column) tell apart several arms of one backbone in the legend."""
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
        by_size: dict[Any, list[dict[str, Any]]] = {}
        for trajectory in trajectories:
            by_size.setdefault(_size_name(trajectory["size"]), []).append(trajectory)
        for size, drawn in sorted(by_size.items(), key=lambda item: _size_order(item[1][0]["size"])):
            drawn.sort(key=lambda t: (str(t["variant"]), str(t["seed"]), str(t["job"])))
            out.mkdir(parents=True, exist_ok=True)
            several = len(by_size) > 1
            path = out / f"trajectory_{file_stem(backbone, f'{size}img' if several else '')}.png"
            title = f"{backbone}: fine-class recovery as the training features collapse"
            plot_trajectories(drawn, title + (f"\n{_size_words(drawn[0]['size'])}" if several else ""), path)
            written.append(path)
    return written, notes


def _size_name(size: Any) -> str:
    """A training-set size in a file name: `500`, or `all` for the whole split (or unrecorded)."""
    count = image_count(size)
    return "all" if count is None else str(count)


def _size_words(size: Any) -> str:
    count = image_count(size)
    return "all training images, or size unrecorded" if count is None else f"{count} training images"


def _size_order(size: Any) -> float:
    """Smallest first, the whole split last."""
    count = image_count(size)
    return math.inf if count is None else count
