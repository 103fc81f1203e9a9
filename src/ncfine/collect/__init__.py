"""`ncfine-collect SWEEP_DIR`: one table of a sweep's jobs, lr x wd heatmaps per backbone, the
training trajectory of each backbone in the (train NC1, fine recovery) plane, and fine recovery
against the number of training images where that varies.

    ncfine-collect logs/paper_grid/multirun/paper_grid             # writes into the sweep dir
    ncfine-collect SWEEP_DIR --out reports/grid
    ncfine-collect --wandb ENTITY/PROJECT --group paper_grid --out reports/grid

Writes `summary.csv` and `summary.md` (one row per job: data, hierarchy, training images
`max_train_samples`, backbone, lr, wd, seed, status, coarse test and train accuracy `val/acc`,
`train/acc`, NC1-NC4 on train and test, fine-class recovery of the train and test features, probe
and k-NN accuracy, each recovery and the probe beside the same measurement of the inputs and of the
untrained network (`baseline/{input,init}/...`, empty for runs made before those were measured),
epochs, wall time, error), `heatmap_<metric>_<backbone>.png` (lr x wd, seeds as mean +- std; a
recovery's title names its baselines) for `fine/{train,test}/kmeans_per_coarse_acc`,
`nc/train/nc1` (log colour scale) and `val/acc` (each when the completed jobs logged it),
`trajectory_<backbone>.png` (per-superclass recovery, train and test, against train NC1 at every
analysed epoch, one line per seed from its untrained network, the inputs' recovery as dashed
levels; from the runs' metrics.csv; `trajectory_<backbone>_<N>img.png` per training-set size where
a backbone's runs differ in it), and `datasize_<metric>.png` when the completed runs trained on at
least two numbers of images (per-superclass recovery, train and test, at the last epoch against
the number of training images, one line per backbone, lr and wd with the range over seeds, and the
inputs' and the untrained network's levels). With several seeds per config,
`summary_by_config.csv` and a second table in summary.md give mean +- std over seeds. Runs of
different training-set sizes are never averaged together: a size that no override names joins the
`variant` where it tells runs apart.

Every job shows up: a job whose results.json says failed/diverged/running keeps that status, and
a job dir with no results.json (Hydra made it, the job died before writing) is `missing`, and so
is a job that SWEEP_DIR/multirun.yaml (the sweep's last command) asked for but that has no dir yet
(queued, or never started); in a heatmap such cells are grey and say why. Nothing is dropped silently.

The steps are plain functions for notebooks:
    runs = load_runs(sweep_dir); table = summarize(runs); write_heatmaps(table, out_dir)
    write_trajectories(runs, out_dir); write_datasize(table, out_dir)

Modules: `schema` (columns, statuses), `loading` (run dirs), `wandb_runs` (W&B), `tables`
(summary table and files), `heatmaps`, `trajectories` (NC1 against recovery over training),
`datasize` (recovery against the number of training images), `reproduction` (the GPU
reproduction's tarball -> the RESULTS.md tables: `ncfine-collect --reproduction TARBALL`), `cli`
(`ncfine-collect`).
"""

from ncfine.collect.cli import collect, main
from ncfine.collect.datasize import (
    DATASIZE_METRICS,
    datasize_baselines,
    datasize_lines,
    datasize_runs,
    plot_datasize,
    write_datasize,
)
from ncfine.collect.heatmaps import (
    baseline_note,
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
from ncfine.collect.trajectories import (
    init_point,
    input_levels,
    load_trajectory,
    plot_trajectories,
    trajectory_points,
    write_trajectories,
)
from ncfine.collect.wandb_runs import WANDB_STATES, load_wandb_runs, run_from_wandb

__all__ = [
    "CONFIG_COLUMNS",
    "DATASIZE_METRICS",
    "DEFAULT_SUBDIR",
    "GRID_OVERRIDES",
    "HEATMAP_METRICS",
    "METRIC_COLUMNS",
    "OK",
    "WANDB_STATES",
    "CollectError",
    "aggregate_seeds",
    "baseline_note",
    "collect",
    "datasize_baselines",
    "datasize_lines",
    "datasize_runs",
    "default_heatmap_metrics",
    "expected_jobs",
    "find_job_dirs",
    "heatmap_grid",
    "heatmap_groups",
    "heatmap_name",
    "init_point",
    "input_levels",
    "load_run",
    "load_runs",
    "load_trajectory",
    "load_wandb_runs",
    "main",
    "plot_datasize",
    "plot_heatmap",
    "plot_trajectories",
    "run_from_wandb",
    "run_variants",
    "summarize",
    "to_markdown",
    "trajectory_points",
    "write_datasize",
    "write_heatmaps",
    "write_summary",
    "write_trajectories",
]
