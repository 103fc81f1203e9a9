"""`ncfine-collect`: load -> table -> summary files + heatmaps + trajectories + data-size figures;
`--reproduction TARBALL`: the GPU reproduction's tables (ncfine.collect.reproduction)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncfine.collect.datasize import write_datasize
from ncfine.collect.heatmaps import default_heatmap_metrics, heatmap_groups, write_heatmaps
from ncfine.collect.loading import load_runs
from ncfine.collect.schema import HEATMAP_METRICS, CollectError, tally
from ncfine.collect.tables import run_variants, summarize, write_summary
from ncfine.collect.trajectories import write_trajectories
from ncfine.collect.wandb_runs import load_wandb_runs


def collect(
    sweep_dir: str | None = None,
    out_dir: str | None = None,
    wandb_path: str | None = None,
    group: str | None = None,
    heatmap_metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """load -> summarize -> write; returns {table, files, notes}. `heatmap_metrics` None: the
    defaults that the completed jobs logged (`default_heatmap_metrics`). Trajectory figures come
    from each run's metrics.csv, so from a sweep dir only, not from W&B. Where the completed runs
    (not on the fine labels) trained on at least two numbers of images, `datasize_<metric>.png`
    shows the final per-superclass recovery (train and test) against that number, with the inputs'
    and the untrained network's (`ncfine.collect.datasize`)."""
    if wandb_path:
        runs = load_wandb_runs(wandb_path, group)
        source = f"W&B {wandb_path}" + (f" group {group}" if group else "")
        out = Path(out_dir or Path.cwd() / f"wandb_{group or wandb_path.replace('/', '_')}")
    else:
        if not sweep_dir:
            raise CollectError("give a SWEEP_DIR, or --wandb ENTITY/PROJECT --group GROUP")
        runs = load_runs(sweep_dir)
        source = str(sweep_dir)
        out = Path(out_dir or sweep_dir)
    if not runs:
        raise CollectError(f"no ncfine runs found in {source} (looked for job dirs with results.json or .hydra/)")
    table = summarize(runs)
    notes: list[str] = []
    if heatmap_metrics is None:
        heatmap_metrics, notes = default_heatmap_metrics(table)
    groups, group_notes = heatmap_groups(table)
    files = write_summary(table, out, title=f"ncfine sweep: {source}")
    files += write_heatmaps(table, out, heatmap_metrics, groups)
    notes += group_notes
    datasize, datasize_notes = write_datasize(table, out)
    files += datasize
    notes += datasize_notes
    if wandb_path:
        notes.append("no trajectory figures from W&B: they read each run's metrics.csv (collect the sweep dir)")
    else:
        trajectories, trajectory_notes = write_trajectories(runs, out, run_variants(runs))
        files += trajectories
        notes += trajectory_notes
    return {"table": table, "files": files, "notes": notes}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ncfine-collect", description="Summarize a sweep: summary.csv, summary.md and lr x wd heatmaps."
    )
    parser.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR", help="the sweep dir (searched recursively)")
    parser.add_argument("--out", default=None, help="output dir (default: SWEEP_DIR)")
    parser.add_argument("--wandb", default=None, metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", default=None, help="the W&B group (the sweep_name) with --wandb")
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        metavar="KEY",
        help=f"heatmap metric (repeatable; default: those of {', '.join(HEATMAP_METRICS)} the completed jobs logged)",
    )
    parser.add_argument(
        "--reproduction",
        default=None,
        metavar="TARBALL",
        help="instead: the tarball of benchmarks/gpu_reproduce.sh -> reproduction.md (in --out, "
        "default TARBALL's folder/reproduction)",
    )
    parser.add_argument(
        "--results",
        default=None,
        metavar="MD",
        help="with --reproduction: also fill the marked block of this file (docs/RESULTS.md)",
    )
    parser.add_argument(
        "--figures", default=None, metavar="DIR", help="with --reproduction: copy the runs' plots here (docs/figures)"
    )
    args = parser.parse_args(argv)
    if args.reproduction:
        _reproduction_main(args)
        return
    if args.results or args.figures:
        parser.error("--results and --figures go with --reproduction TARBALL")
    try:
        result = collect(args.sweep_dir, args.out, args.wandb, args.group, args.metric)
    except CollectError as exc:
        print(f"ncfine-collect: error: {exc}", file=sys.stderr)
        sys.exit(2)
    table = result["table"]
    print(f"ncfine-collect: {len(table)} jobs ({tally(table['status'])})")
    for note in result["notes"]:
        print(f"ncfine-collect: note: {note}", file=sys.stderr)
    for path in result["files"]:
        print(path)


def _reproduction_main(args: argparse.Namespace) -> None:
    from ncfine.collect.reproduction import reproduction

    if args.sweep_dir or args.wandb:
        print("ncfine-collect: error: --reproduction TARBALL takes no SWEEP_DIR or --wandb", file=sys.stderr)
        sys.exit(2)
    try:
        result = reproduction(args.reproduction, args.out, args.results, args.figures)
    except CollectError as exc:
        print(f"ncfine-collect: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"ncfine-collect: {len(result['runs'])} reproduction runs ({tally(r['status'] for r in result['runs'])})")
    for path in result["files"]:
        print(path)
