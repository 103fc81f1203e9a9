"""The table printed at the end of a run: the headline metrics, train and test side by side.

Every metric is in RUN_DIR/results.json (final values) and RUN_DIR/metrics.csv (per epoch).
"""

from __future__ import annotations

from typing import Any

# (row label, key of the train column, key of the test column); {s} is the split.
ROWS = (
    ("coarse accuracy (train/acc, val/acc)", "train/acc", "val/acc"),
    ("fine accuracy, fine-trained (upper bound)", None, "val/fine_acc_upper"),
    ("nc/{s}/nc1            Tr(Sw Sb+)/C", "nc/train/nc1", "nc/test/nc1"),
    ("nc/{s}/nc2_etf_error  means vs simplex ETF", "nc/train/nc2_etf_error", "nc/test/nc2_etf_error"),
    ("nc/{s}/nc3            classifier vs means", "nc/train/nc3", "nc/test/nc3"),
    ("nc/{s}/nc4            != nearest class mean", "nc/train/nc4", "nc/test/nc4"),
    ("nc/{s}/fine/nc1       NC1 of the fine classes", "nc/train/fine/nc1", "nc/test/fine/nc1"),
    ("fine/{s}/kmeans_per_coarse_acc", "fine/train/kmeans_per_coarse_acc", "fine/test/kmeans_per_coarse_acc"),
    ("fine/{s}/kmeans_global_acc", "fine/train/kmeans_global_acc", "fine/test/kmeans_global_acc"),
    ("fine/{s}/reconstructed_acc  head + k-means", "fine/train/reconstructed_acc", "fine/test/reconstructed_acc"),
    ("fine/probe_acc        linear probe, train -> test", None, "fine/probe_acc"),
    ("fine/knn_acc          k-NN, test vs train", None, "fine/knn_acc"),
)
# Under each recovery row, the same measurement of the run's baselines (ncfine.analysis.baselines).
BASELINE_ROWS = (("  baseline: inputs", "input"), ("  baseline: untrained network", "init"))


def format_summary(results: dict[str, Any]) -> str:
    metrics = results.get("metrics", {}) or {}
    cfg = results.get("config", {}) or {}
    lines = [
        f"ncfine run: {results.get('status')} after {results.get('epochs_completed')} epochs "
        f"in {results.get('wall_time_s') or 0:.1f} s  ({cfg.get('backbone')} on {cfg.get('data')}, "
        f"lr={cfg.get('lr')}, wd={cfg.get('weight_decay')}, seed={cfg.get('seed')})",
    ]
    if results.get("error"):
        lines.append(f"error: {results['error']}")
    rows = []
    for label, train, test in ROWS:
        if metrics.get(train) is None and metrics.get(test) is None:
            continue
        rows.append((label, metrics.get(train), metrics.get(test)))
        if str(test).startswith("fine/"):
            for baseline_label, name in BASELINE_ROWS:
                values = [metrics.get(_baseline(name, key)) for key in (train, test)]
                if any(v is not None for v in values):
                    rows.append((baseline_label, *values))
    if rows:
        width = max(len(label) for label, _, _ in rows)
        lines.append(f"{'metric':<{width}}  {'train':>8}  {'test':>8}")
        lines.append("-" * (width + 20))
        lines.extend(f"{label:<{width}}  {_cell(train)}  {_cell(test)}" for label, train, test in rows)
    lines.append(
        f"run dir: {results.get('run_dir')}  (all {len(metrics)} metrics: results.json, per epoch: metrics.csv)"
    )
    return "\n".join(lines)


def _baseline(name: str, key: str | None) -> str | None:
    """`fine/test/kmeans_per_coarse_acc` -> `baseline/<name>/test/kmeans_per_coarse_acc` (None stays None)."""
    return None if key is None else f"baseline/{name}/{key.partition('/')[2]}"


def _cell(value: float | None) -> str:
    return f"{'-':>8}" if value is None else f"{value:>8.4f}"


def print_summary(results: dict[str, Any]) -> None:
    print(format_summary(results))
