"""`ncfine-plot RUN_DIR`: a run's curves and feature geometry as PNGs in RUN_DIR/plots/.

    ncfine-plot logs/train/runs/default            # nc_curves.png, recovery_curves.png (+ pca_test.png)

- `nc_curves.png`: NC1-NC4 (Papyan, Han & Donoho 2020) vs epoch, train solid and test dashed,
  log scale; the NC1 panel also shows NC1 of the fine classes (dotted), which coarse training
  does not collapse as far (Yang, Steinhardt & Hu 2023).
- `recovery_curves.png`: fine-class recovery from the coarse-trained features vs epoch (k-means
  per superclass / global, linear probe, k-NN), with the coarse val accuracy for reference and the
  per-superclass k-means of the run's baselines (pixels, untrained network) as horizontal lines.
- `depth_curves.png`: the layer-wise metrics (`layer/<name>/...`, from `ncfine-analyze` or the
  `layerwise` callback) against depth; `ncfine-plot --compare DIR...` overlays several runs.
- `discover_<superclass>.png` (`plot_discovery`, for `ncfine-discover`): the images nearest each
  discovered sub-cluster's centre, one row per cluster, and the superclass's PCA coloured by cluster.
- `pca_<split>.png`: for each superclass, the 2-D PCA of its features coloured by fine class.
  Written at the end of training by `ncfine.callbacks.plots.PlotsCallback`; `ncfine-plot`
  redraws it when the run saved its features (`features_<split>.pt`).

Every function takes data, not paths, where it can (`plot_pca(h, coarse, fine)` takes tensors),
and uses matplotlib's object API with the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# NC2 has no single key: its one-number summary is nc2_etf_error, the distance of the class-mean
# Gram matrix to a simplex ETF (equinorm and equiangle together).
NC_METRICS = ("nc1", "nc2_etf_error", "nc3", "nc4")
NC_TITLES = {"nc2_etf_error": "NC2 (ETF error)"}
SPLIT_STYLES = {"train": "-", "test": "--"}
SPLIT_COLORS = {"train": "C0", "test": "C1"}
RECOVERY_ACC = (
    ("fine/{split}/kmeans_per_coarse_acc", "k-means per superclass"),
    ("fine/{split}/kmeans_global_acc", "k-means global"),
)
RECOVERY_SCORES = (
    ("fine/{split}/kmeans_per_coarse_nmi", "NMI per superclass"),
    ("fine/{split}/kmeans_global_nmi", "NMI global"),
    ("fine/{split}/kmeans_per_coarse_ari", "ARI per superclass"),
    ("fine/{split}/kmeans_global_ari", "ARI global"),
)
REFERENCE = (
    ("fine/probe_acc", "linear probe (fine)", "-."),
    ("fine/knn_acc", "k-NN (fine)", ":"),
    ("val/acc", "coarse val acc", "-"),
    ("val/fine_acc_upper", "fine val acc (fine training)", "--"),
)


def _figure(nrows: int, ncols: int, width: float = 4.0, height: float = 3.2):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Figure, path: str | Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.05)  # legends below the axes included
    return path


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The run's metrics.csv (one row per epoch, `epoch` first)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: RUN_DIR must be an ncfine run dir (it holds metrics.csv)")
    return pd.read_csv(path)


def _series(metrics: pd.DataFrame, key: str) -> pd.Series | None:
    if key not in metrics.columns:
        return None
    values = pd.to_numeric(metrics[key], errors="coerce")
    return values if values.notna().any() else None


def _epoch_axis(ax) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_if_positive(ax, columns: list[pd.Series]) -> None:
    """Log y scale; where a curve reaches exactly 0 (NC4 on train once every sample is classified
    like its nearest class mean), symlog, linear only below the smallest positive value, so the
    zeros stay on the plot and the rest keeps its log scale. Linear if nothing is positive."""
    values = pd.concat(columns).dropna() if columns else pd.Series(dtype=float)
    positive = values[values > 0]
    if not len(positive):
        return
    if len(positive) == len(values):
        ax.set_yscale("log")
    elif (values >= 0).all():
        ax.set_yscale("symlog", linthresh=float(positive.min()), linscale=1.0)


def plot_nc_curves(metrics: pd.DataFrame, path: str | Path | None = None, title: str | None = None):
    """NC1-NC4 vs epoch, train (solid) and test (dashed); fine-class NC1 dotted. None if no NC columns."""
    if not any(_series(metrics, f"nc/{s}/{m}") is not None for s in SPLIT_STYLES for m in NC_METRICS):
        return None
    fig, axes = _figure(1, len(NC_METRICS))
    epoch = metrics["epoch"]
    for ax, name in zip(axes[0], NC_METRICS):
        drawn = []
        for split, style in SPLIT_STYLES.items():
            for key, label, line in (
                (f"nc/{split}/{name}", split, style),
                (f"nc/{split}/fine/{name}", f"{split} (fine classes)", ":"),
            ):
                if name != "nc1" and "/fine/" in key:
                    continue  # the fine classes have no classifier, so only their NC1 is comparable
                values = _series(metrics, key)
                if values is not None:
                    ax.plot(epoch, values, line, marker=".", color=SPLIT_COLORS[split], label=label)
                    drawn.append(values)
        _log_if_positive(ax, drawn)
        ax.set_title(NC_TITLES.get(name, name.upper()))
        _epoch_axis(ax)
        if drawn:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def plot_recovery_curves(metrics: pd.DataFrame, path: str | Path | None = None, title: str | None = None):
    """Fine-class recovery accuracy (and NMI/ARI) vs epoch. None if the run logged no recovery metrics."""
    splits = [
        s
        for s in SPLIT_STYLES
        if any(_series(metrics, k.format(split=s)) is not None for k, _ in RECOVERY_ACC + RECOVERY_SCORES)
    ]
    references = [(k, lbl, st) for k, lbl, st in REFERENCE if _series(metrics, k) is not None]
    if not splits and not any(k.startswith("fine/") for k, _, _ in references):
        return None
    fig, axes = _figure(1, 2, width=5.0)
    epoch = metrics["epoch"]
    acc_ax, score_ax = axes[0]
    for split in splits:
        for key, label in RECOVERY_ACC:
            values = _series(metrics, key.format(split=split))
            if values is not None:
                acc_ax.plot(epoch, values, SPLIT_STYLES[split], marker=".", label=f"{label} ({split})")
        for key, label in RECOVERY_SCORES:
            values = _series(metrics, key.format(split=split))
            if values is not None:
                score_ax.plot(epoch, values, SPLIT_STYLES[split], marker=".", label=f"{label} ({split})")
    for key, label, style in references:
        acc_ax.plot(epoch, _series(metrics, key), style, color="grey" if key.startswith("val/") else None, label=label)
    # What the per-superclass recovery is read against: the same k-means of the pixels and of the
    # untrained network (constants of the run, on every metrics.csv row).
    for split in splits:
        for name, label, line in (("input", "pixels", (0, (4, 2))), ("init", "untrained network", (0, (1, 2)))):
            values = _series(metrics, f"baseline/{name}/{split}/kmeans_per_coarse_acc")
            if values is not None and values.notna().any():
                level = float(values.dropna().iloc[-1])
                acc_ax.axhline(
                    level, linestyle=line, linewidth=1, color=SPLIT_COLORS[split], label=f"{label} ({split})"
                )
    acc_ax.set_title("fine-class recovery: accuracy")
    score_ax.set_title("fine-class recovery: NMI / ARI")
    for ax in (acc_ax, score_ax):
        _epoch_axis(ax)
        if ax.get_legend_handles_labels()[0]:
            # Below the axes: inside, five or more entries cover the curves of a short run.
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


# (panel title, metric under layer/<layer>/, log scale); NC1 panels draw train solid, test dashed.
DEPTH_PANELS = (
    ("NC1 (coarse classes)", "{split}/nc1", True),
    ("NC1 (fine classes)", "{split}/fine/nc1", True),
    ("k-means per superclass: acc", "test/kmeans_per_coarse_acc", False),
    ("k-means global: acc", "test/kmeans_global_acc", False),
    ("linear probe (fine): acc", "probe_acc", False),
)


def layer_order(metrics: dict[str, float]) -> list[str]:
    """Layer names with `layer/<name>/depth` keys, shallowest first."""
    depths = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "layer" and parts[2] == "depth" and _finite(value):
            depths[parts[1]] = float(value)
    return sorted(depths, key=depths.get)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def plot_depth_curves(
    runs: Sequence[tuple[str, dict[str, float]]], path: str | Path | None = None, title: str | None = None
):
    """Each per-layer metric against depth, one line per run: [(label, metrics with layer/... keys)].

    Runs with the same layers share an axis labelled by layer name; runs with different layers
    (ResNet vs VGG) are drawn against relative depth (0 = first analysed layer, 1 = last, the
    penultimate by default). None if no run has layer keys.
    """
    runs = [(label, metrics, layer_order(metrics)) for label, metrics in runs]
    runs = [run for run in runs if run[2]]
    if not runs:
        return None
    same = all(run[2] == runs[0][2] for run in runs)
    fig, axes = _figure(1, len(DEPTH_PANELS), width=3.6, height=3.4)
    for i, (label, metrics, layers) in enumerate(runs):
        x = list(range(len(layers))) if same else [d / max(1, len(layers) - 1) for d in range(len(layers))]
        color = f"C{i % 10}"
        for ax, (_, key, _) in zip(axes[0], DEPTH_PANELS):
            splits = ("train", "test") if "{split}" in key else (None,)
            for split in splits:
                values = [metrics.get(f"layer/{layer}/{key.format(split=split)}") for layer in layers]
                if not any(_finite(v) for v in values):
                    continue
                y = [float(v) if _finite(v) else math.nan for v in values]
                style = "--" if split == "test" else "-"
                text = label if split in (None, "train") else None
                ax.plot(x, y, style, marker="o", markersize=3, color=color, label=text)
    for ax, (name, key, log_scale) in zip(axes[0], DEPTH_PANELS):
        lines = [pd.Series(line.get_ydata()) for line in ax.get_lines()]
        if log_scale:
            _log_if_positive(ax, lines)
        ax.set_title(name + (" (train -, test --)" if "{split}" in key else ""), fontsize="medium")
        if same:
            ax.set_xticks(range(len(runs[0][2])), runs[0][2], rotation=60, ha="right", fontsize="x-small")
            ax.set_xlabel("layer (input side -> penultimate)")
        else:
            ax.set_xlabel("relative depth (0: first layer, 1: last)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def read_final_metrics(run_dir: str | Path) -> dict[str, float]:
    """A run's final metrics: results.json's, else the last row of metrics.csv with layer keys."""
    import json

    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / "results.json").read_text()).get("metrics") or {}
    except (OSError, ValueError):
        metrics = {}
    if layer_order(metrics):
        return metrics
    table = read_metrics(run_dir)
    depth = [c for c in table.columns if c.startswith("layer/") and c.endswith("/depth")]
    rows = table.dropna(subset=depth, how="all") if depth else table.iloc[0:0]
    if not len(rows):
        return metrics
    row = rows.iloc[-1]
    return {k: float(v) for k, v in row.items() if k != "epoch" and _finite(v)}


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project rows of `x` (N, D) on their top-2 principal components, in float64.

    Returns (N, 2) coordinates and the fraction of variance each component explains. Centred
    first (two-pass), then the eigendecomposition of the smaller Gram matrix: X Xᵀ (N x N) when
    N <= D, giving coordinates U·sqrt(λ), else Xᵀ X (D x D), giving X·V.
    """
    x = x.detach().to("cpu", torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    coords = torch.zeros(n, 2, dtype=torch.float64)
    explained = torch.zeros(2, dtype=torch.float64)
    if n < 2 or d < 1:
        return coords, explained
    gram = x @ x.T if n <= d else x.T @ x
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)  # ascending
    k = min(2, eigenvalues.numel())
    top = eigenvalues.flip(0)[:k].clamp_min(0.0)
    vectors = eigenvectors.flip(1)[:, :k]
    coords[:, :k] = vectors * top.sqrt() if n <= d else x @ vectors
    explained[:k] = top / eigenvalues.clamp_min(0.0).sum().clamp_min(torch.finfo(torch.float64).tiny)
    return coords, explained


def plot_pca(
    h: torch.Tensor,
    coarse: torch.Tensor,
    fine: torch.Tensor,
    path: str | Path | None = None,
    title: str | None = None,
    max_per_coarse: int | None = 500,
    seed: int = 0,
    coarse_names: Sequence[str] | None = None,
    fine_names: Sequence[str] | None = None,
):
    """One panel per superclass: 2-D PCA of that superclass's features, coloured by fine class.

    If the features of a superclass still separate by fine class here, coarse training did not
    collapse them (Yang, Steinhardt & Hu 2023, Fig. 1). At most `max_per_coarse` points per panel
    (a fixed random subset, for legible plots). With `coarse_names` / `fine_names` (indexed by
    class id, e.g. the run's LabelHierarchy) panels and legends name the classes, else show ids.
    """
    if h.ndim != 2 or coarse.shape[0] != h.shape[0] or fine.shape[0] != h.shape[0]:
        raise ValueError(
            f"plot_pca needs h (N, D) with N coarse and N fine labels, got h {tuple(h.shape)}, "
            f"coarse {tuple(coarse.shape)}, fine {tuple(fine.shape)}"
        )
    coarse, fine = coarse.detach().cpu().long(), fine.detach().cpu().long()
    classes = torch.unique(coarse).tolist()
    ncols = min(5, max(1, len(classes)))
    nrows = math.ceil(len(classes) / ncols)
    fig, axes = _figure(nrows, ncols, width=3.2, height=3.0)
    generator = torch.Generator().manual_seed(seed)
    for ax in axes.flat[len(classes) :]:
        ax.set_visible(False)
    for ax, c in zip(axes.flat, classes):
        rows = torch.nonzero(coarse == c).squeeze(1)
        if max_per_coarse is not None and rows.numel() > max_per_coarse:
            rows = rows[torch.randperm(rows.numel(), generator=generator)[:max_per_coarse]].sort().values
        coords, explained = pca_2d(h.detach()[rows.to(h.device)])
        _scatter_by_label(ax, coords, explained, fine[rows], lambda f: _class_name(fine_names, f, "fine"))
        ax.set_title(_class_name(coarse_names, c, "superclass"), fontsize="medium")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def plot_discovery(
    superclass: dict,
    h: torch.Tensor,
    clusters: torch.Tensor,
    images: torch.Tensor | None = None,
    nearest: dict[int, Sequence[int]] | None = None,
    fine: torch.Tensor | None = None,
    fine_names: Sequence[str] | None = None,
    path: str | Path | None = None,
    title: str | None = None,
):
    """What `ncfine-discover` found inside one superclass, as a person checks it.

    Left (with `images`): one row per discovered cluster, the images nearest its centroid (uint8
    (N, C, H, W) as the dataset stores them, so they look as the user knows them; `nearest[j]`
    are row positions into `images`), the row labelled with the cluster's size, the model's
    accuracy on it and, with fine labels, its largest fine class. Right: the 2-D PCA of the
    superclass's features `h` (N, D) coloured by `clusters` (N,), and beside it by fine class when
    `fine` is given. `superclass` is one entry of `discover_subclasses(...)["superclasses"]`.
    """
    clusters = clusters.detach().cpu().long()
    entries = superclass["clusters"]
    show_images = images is not None and nearest is not None
    panels = 1 + (fine is not None)
    per_row = max((len(v) for v in (nearest or {}).values()), default=0)
    width = (1.1 * per_row + 2.2 if show_images else 0) + 3.6 * panels
    fig = Figure(figsize=(max(width, 4.0), max(3.4, 0.95 * len(entries) + 1.2)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        1,
        (1 if show_images else 0) + panels,
        width_ratios=[*([1.1 * per_row + 2.2] if show_images else []), *([3.6] * panels)],
    )
    col = 0
    if show_images:
        sub = grid[0, 0].subgridspec(len(entries), max(per_row, 1), wspace=0.05, hspace=0.15)
        for r, entry in enumerate(entries):
            rows = list(nearest.get(entry["cluster"], []))
            for j in range(max(per_row, 1)):
                ax = fig.add_subplot(sub[r, j])
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if j < len(rows):
                    image = images[rows[j]].detach().cpu()
                    picture = image.permute(1, 2, 0).numpy()
                    ax.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=255)
                if j == 0:
                    ax.set_ylabel(
                        _cluster_label(entry, fine_names), fontsize="x-small", rotation=0, ha="right", va="center"
                    )
        col = 1
    coords, explained = pca_2d(h.detach())
    colourings = [("discovered clusters", clusters, lambda j: f"cluster {j + 1}")]
    if fine is not None:
        fine = fine.detach().cpu().long()
        colourings.append(("fine classes (not used to find them)", fine, lambda f: _class_name(fine_names, f, "fine")))
    for offset, (name, labels, label_of) in enumerate(colourings):
        ax = fig.add_subplot(grid[0, col + offset])
        _scatter_by_label(ax, coords, explained, labels, label_of)
        ax.set_title(name, fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    _save(fig, path)
    return fig


def _scatter_by_label(ax, coords: torch.Tensor, explained: torch.Tensor, labels: torch.Tensor, label_of) -> None:
    """A 2-D PCA panel (`pca_2d`'s coordinates and explained variance): one colour per label id,
    named by `label_of(id)`."""
    for i, value in enumerate(torch.unique(labels).tolist()):
        mask = labels == value
        ax.scatter(
            coords[mask, 0].numpy(), coords[mask, 1].numpy(), s=6, alpha=0.7, color=f"C{i % 10}", label=label_of(value)
        )
    ax.set_xlabel(f"PC1 ({100 * float(explained[0]):.0f}% var)", fontsize="small")
    ax.set_ylabel(f"PC2 ({100 * float(explained[1]):.0f}% var)", fontsize="small")
    ax.tick_params(labelsize="x-small")
    ax.legend(fontsize="x-small", markerscale=2)


def _cluster_label(entry: dict, fine_names: Sequence[str] | None) -> str:
    """'cluster 1\n212 images\nacc 61%\n80% dog' for a montage row."""
    lines = [f"cluster {entry['cluster'] + 1}", f"{entry['size']} images"]
    if entry.get("accuracy") is not None:
        lines.append(f"acc {100 * entry['accuracy']:.0f}%")
    counts = entry.get("fine_counts")
    if counts:
        top, count = max(counts.items(), key=lambda item: item[1])
        lines.append(f"{100 * count / entry['size']:.0f}% {_class_name(fine_names, int(top), 'fine')}")
    return "\n".join(lines)


def _class_name(names: Sequence[str] | None, class_id: int, kind: str) -> str:
    if names is not None and 0 <= class_id < len(names):
        return str(names[class_id])
    return f"{kind} {class_id}"


def short_name(run_dir: str | Path, width: int = 90) -> str:
    """A run dir's name (its overrides) cut to fit a figure title."""
    name = Path(run_dir).name
    return name if len(name) <= width else name[: width - 3] + "..."


def render_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write every plot the run's files allow into `out_dir` (default RUN_DIR/plots); return the paths."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "plots"
    metrics = read_metrics(run_dir)
    written = []
    name = short_name(run_dir)
    if plot_nc_curves(metrics, out_dir / "nc_curves.png", title=name) is not None:
        written.append(out_dir / "nc_curves.png")
    if plot_recovery_curves(metrics, out_dir / "recovery_curves.png", title=name) is not None:
        written.append(out_dir / "recovery_curves.png")
    if plot_depth_curves([(name, read_final_metrics(run_dir))], out_dir / "depth_curves.png", title=name) is not None:
        written.append(out_dir / "depth_curves.png")
    for features in sorted(run_dir.glob("features_*.pt")):
        split = features.stem.split("_", 1)[1]
        saved = torch.load(features, map_location="cpu", weights_only=True)
        plot_pca(
            saved["h"],
            saved["coarse"],
            saved["fine"],
            out_dir / f"pca_{split}.png",
            title=f"{name}: {split}",
            coarse_names=saved.get("coarse_names"),
            fine_names=saved.get("fine_names"),
        )
        written.append(out_dir / f"pca_{split}.png")
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ncfine-plot", description="Plot an ncfine run's curves into RUN_DIR/plots/.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dir(s) holding metrics.csv")
    parser.add_argument(
        "--out", default=None, help="output dir (default: RUN_DIR/plots; with several runs, OUT/<run dir name>)"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="overlay the runs' depth curves (layer-wise metrics) in one OUT/depth_curves.png "
        "(default OUT: the current directory)",
    )
    args = parser.parse_args(argv)
    if args.compare:
        compare_runs(args.run_dirs, args.out)
        return
    for run_dir in args.run_dirs:
        out = Path(args.out) if args.out is not None else None
        if out is not None and len(args.run_dirs) > 1:
            out = out / Path(run_dir).name  # one folder per run: the file names are the same for every run
        try:
            written = render_run(run_dir, out)
        except (FileNotFoundError, ValueError, pd.errors.ParserError) as exc:
            print(f"ncfine-plot: error: {exc}", file=sys.stderr)
            sys.exit(2)
        existing = sorted((out if out is not None else Path(run_dir) / "plots").glob("pca_*.png"))
        for path in sorted(set(written) | set(existing)):
            print(path)
        if not written:
            print(f"ncfine-plot: {run_dir}: metrics.csv has no NC or recovery columns yet", file=sys.stderr)


def compare_runs(run_dirs: Sequence[str], out: str | None = None) -> Path:
    """`ncfine-plot --compare DIR...`: one depth_curves.png with a line per run."""
    runs = []
    for run_dir in run_dirs:
        try:
            runs.append((short_name(run_dir, 40), read_final_metrics(run_dir)))
        except (FileNotFoundError, ValueError, pd.errors.ParserError) as exc:
            print(f"ncfine-plot: error: {exc}", file=sys.stderr)
            sys.exit(2)
    missing = [d for d, (_, metrics) in zip(run_dirs, runs) if not layer_order(metrics)]
    if missing:
        print(
            f"ncfine-plot: error: {missing[0]} has no layer-wise metrics (layer/<name>/... keys): analyse it with "
            "ncfine-analyze or train with callbacks=layerwise",
            file=sys.stderr,
        )
        sys.exit(2)
    path = Path(out or ".") / "depth_curves.png"
    plot_depth_curves(runs, path)
    print(path)
    return path


if __name__ == "__main__":
    main()
