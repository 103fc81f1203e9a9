"""The table printed at the end of a run."""

from __future__ import annotations

from typing import Any

GROUPS = ("train/", "val/", "nc/", "fine/")


def format_summary(results: dict[str, Any]) -> str:
    metrics = results.get("metrics", {})
    cfg = results.get("config", {})
    lines = [
        f"ncfine run: {results.get('status')} after {results.get('epochs_completed')} epochs "
        f"in {results.get('wall_time_s') or 0:.1f} s  ({cfg.get('backbone')} on {cfg.get('data')}, "
        f"lr={cfg.get('lr')}, wd={cfg.get('weight_decay')}, seed={cfg.get('seed')})",
    ]
    if results.get("error"):
        lines.append(f"error: {results['error']}")
    width = max((len(k) for k in metrics), default=10)
    for group in GROUPS:
        keys = sorted(k for k in metrics if k.startswith(group))
        if not keys:
            continue
        lines.append("-" * (width + 14))
        lines.extend(f"{k:<{width}}  {metrics[k]:>10.4f}" for k in keys)
    lines.append(f"run dir: {results.get('run_dir')}")
    return "\n".join(lines)


def print_summary(results: dict[str, Any]) -> None:
    print(format_summary(results))
