"""`ncfine-collect SWEEP_DIR`: one table of a sweep's jobs, lr x wd heatmaps per backbone, and the
training trajectory of each backbone in the (train NC1, fine recovery) plane.

    ncfine-collect logs/paper_grid/multirun/paper_grid             # writes into the sweep dir
    ncfine-collect SWEEP_DIR --out reports/grid
    ncfine-collect --wandb ENTITY/PROJECT --group paper_grid --out reports/grid

Writes `summary.csv` and `summary.md` (one row per job: backbone, lr, wd, seed, status, coarse
test and train accuracy `val/acc`, `train/acc`, NC1-NC4 on train and test, fine-class recovery of
the train and test features, probe and k-NN accuracy, epochs, wall time, error),
`heatmap_<metric>_<backbone>.png` (lr x wd, seeds as mean +- std) for
`fine/{train,test}/kmeans_per_coarse_acc`, `nc/train/nc1` (log colour scale) and `val/acc` (each
when the completed jobs logged it), and `trajectory_<backbone>.png` (per-superclass recovery, train
and test, against train NC1 at every analysed epoch, one line per seed; from the runs' metrics.csv).
With several seeds per config, `summary_by_config.csv` and a second table in summary.md give
mean +- std over seeds.

Every job shows up: a job whose results.json says failed/diverged/running keeps that status, and
a job dir with no results.json (Hydra made it, the job died before writing) is `missing`, and so
is a job that SWEEP_DIR/multirun.yaml (the sweep's last command) asked for but that has no dir yet
(queued, or never started); in a heatmap such cells are grey and say why. Nothing is dropped silently.

The steps are plain functions for notebooks:
    runs = load_runs(sweep_dir); table = summarize(runs); write_heatmaps(table, out_dir)
    write_trajectories(runs, out_dir)

Modules: `schema` (columns, statuses), `loading` (run dirs), `wandb_runs` (W&B), `tables`
(summary table and files), `heatmaps`, `trajectories` (NC1 against recovery over training),
`reproduction` (the GPU reproduction's tarball -> the RESULTS.md tables: `ncfine-collect
--reproduction TARBALL`), `cli` (`ncfine-collect`).
"""

from ncfine.collect.cli import collect, main
from ncfine.collect.heatmaps import (
    default_heatmap_metrics,
    heatmap_grid,
    heatmap_groups,
    heatmap_name,
    plot_heatmap,
    write_heatmaps,
)
from ncfine.collect.loading import DEFAULT_SUBDIR, expected_jobs, find_job_dirs, load_run, load_runs
from ncfine.collect.schema import (
    CONFIG_COLUMNS,
    GRID_OVERRIDES,
    HEATMAP_METRICS,
    METRIC_COLUMNS,
    OK,
    CollectError,
)
from ncfine.collect.tables import aggregate_seeds, run_variants, summarize, to_markdown, write_summary
from ncfine.collect.trajectories import load_trajectory, plot_trajectories, trajectory_points, write_trajectories
from ncfine.collect.wandb_runs import WANDB_STATES, load_wandb_runs, run_from_wandb

__all__ = [
    "CONFIG_COLUMNS",
    "DEFAULT_SUBDIR",
    "GRID_OVERRIDES",
    "HEATMAP_METRICS",
    "METRIC_COLUMNS",
    "OK",
    "WANDB_STATES",
    "CollectError",
    "aggregate_seeds",
    "collect",
    "default_heatmap_metrics",
    "expected_jobs",
    "find_job_dirs",
    "heatmap_grid",
    "heatmap_groups",
    "heatmap_name",
    "load_run",
    "load_runs",
    "load_trajectory",
    "load_wandb_runs",
    "main",
    "plot_heatmap",
    "plot_trajectories",
    "run_from_wandb",
    "run_variants",
    "summarize",
    "to_markdown",
    "trajectory_points",
    "write_heatmaps",
    "write_summary",
    "write_trajectories",
]
