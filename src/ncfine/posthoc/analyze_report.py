"""report.md of an `ncfine-analyze` run dir: what was analysed, the summary table of the
penultimate features (the table `ncfine-train` prints), the per-layer table and the figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncfine.utils.atomic import atomic_write_text

# (column header, metric name under layer/<layer>/)
LAYER_COLUMNS = (
    ("dim", "dim"),
    ("NC1 train", "train/nc1"),
    ("NC1 test", "test/nc1"),
    ("fine NC1 train", "train/fine/nc1"),
    ("fine NC1 test", "test/fine/nc1"),
    ("k-means per superclass acc", "test/kmeans_per_coarse_acc"),
    ("k-means per superclass NMI", "test/kmeans_per_coarse_nmi"),
    ("k-means global acc", "test/kmeans_global_acc"),
    ("linear probe acc", "probe_acc"),
    ("k-NN acc", "knn_acc"),
)


def layer_names(metrics: dict[str, float]) -> list[str]:
    """The layers with `layer/<name>/depth` keys, shallowest first."""
    depths = {
        key.split("/")[1]: value
        for key, value in metrics.items()
        if key.startswith("layer/") and key.endswith("/depth") and key.count("/") == 2
    }
    return sorted(depths, key=lambda name: depths[name])


def layer_table(metrics: dict[str, float], columns: Sequence[tuple[str, str]] = LAYER_COLUMNS) -> str:
    """Markdown table: one row per layer in depth order, the columns that have a value."""
    layers = layer_names(metrics)
    shown = [(title, key) for title, key in columns if any(f"layer/{n}/{key}" in metrics for n in layers)]
    lines = [
        "| depth | layer | " + " | ".join(t for t, _ in shown) + " |",
        "| ---: | --- | " + " | ".join("---:" for _ in shown) + " |",
    ]
    for depth, name in enumerate(layers):
        cells = [_cell(metrics.get(f"layer/{name}/{key}"), key) for _, key in shown]
        lines.append(f"| {depth} | `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key == "dim":
        return str(int(value))
    return f"{value:.4g}" if "nc1" in key else f"{value:.4f}"


def write_report(path: str | Path, results: dict[str, Any], figures: Sequence[str] = ()) -> None:
    from ncfine.results.report import format_summary

    analysis = results.get("analysis", {})
    metrics = results.get("metrics", {})
    samples = ", ".join(f"{split} {n}" for split, n in (analysis.get("num_samples") or {}).items())
    lines = [
        f"# ncfine-analyze: {results.get('config', {}).get('backbone')} on {results.get('config', {}).get('data')}",
        "",
        f"- model: {analysis.get('source')}",
        f"- samples: {samples}; layer outputs pooled by `{analysis.get('pool')}`",
        f"- classifier: {analysis.get('head')}",
        *[f"- {note}" for note in analysis.get("notes") or []],
        f"- status: {results.get('status')}, {results.get('wall_time_s')} s; "
        f"torch {results.get('versions', {}).get('torch')}, timm {results.get('versions', {}).get('timm')}, "
        f"device {results.get('versions', {}).get('device')}",
        "",
        "## Penultimate features (the keys `ncfine-train` logs)",
        "",
        "```",
        format_summary(results),
        "```",
        "",
        "## Layer by layer",
        "",
        "Keys `layer/<layer>/<split>/<metric>` in results.json. NC1 = Tr(Sw Sb+)/C (lower: more collapsed); "
        "fine NC1 against the fine labels; k-means recovery of the fine classes inside each superclass "
        "(chance about 1 / fine classes per superclass) and over all samples; linear probe and k-NN of the "
        "fine labels, train -> test.",
        "",
        layer_table(metrics),
        "",
    ]
    for figure in figures:
        lines += [f"![{Path(figure).stem}]({figure})", ""]
    atomic_write_text(path, "\n".join(lines))
