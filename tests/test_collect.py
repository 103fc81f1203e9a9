"""ncfine-collect and ncfine-plot on run dirs written to disk (the files a sweep leaves behind)."""

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from conftest import run_cli
from ncfine.collect import (
    HEATMAP_METRICS,
    CollectError,
    aggregate_seeds,
    baseline_note,
    default_heatmap_metrics,
    heatmap_grid,
    load_runs,
    load_wandb_runs,
    plot_heatmap,
    run_from_wandb,
    run_variants,
    summarize,
    write_heatmaps,
    write_summary,
)
from ncfine.plot import pca_2d, plot_pca, render_run

BACKBONES = ("resnet18", "vgg16_bn")
LRS = (0.1, 0.01)
WDS = (5e-4, 5e-5)


def fake_job(root: Path, backbone, lr, wd, seed, status="completed", metrics=None, results=True, extra=(), config=None):
    """A job dir as Hydra + ncfine leave it: .hydra/{overrides,config,hydra}.yaml and results.json
    (whose config summary gets `config`'s keys too)."""
    overrides = [
        f"model.backbone={backbone}",
        f"optimizer.lr={lr}",
        f"optimizer.weight_decay={wd}",
        f"seed={seed}",
        *extra,
    ]
    job = root / ",".join(overrides)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / ".hydra" / "config.yaml").write_text(
        f"model:\n  backbone: {backbone}\noptimizer:\n  lr: {lr}\n  weight_decay: {wd}\nseed: {seed}\n"
    )
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      data: digits\n")
    (job / "checkpoints").mkdir()
    if results:
        payload = {
            "status": status,
            "error": None if status == "completed" else f"{status} on purpose",
            "epochs_completed": 2,
            "wall_time_s": 1.5,
            "metrics": metrics or {},
            "config": {
                "backbone": backbone,
                "lr": lr,
                "weight_decay": wd,
                "seed": seed,
                "data": "digits",
                **(config or {}),
            },
        }
        (job / "results.json").write_text(json.dumps(payload))
    return job


def metrics_for(backbone, lr, wd, seed):
    base = 0.5 + 0.1 * BACKBONES.index(backbone) + lr + 100 * wd
    return {
        "val/acc": 0.9,
        "train/acc": 0.95,
        "nc/train/nc1": base * 10,
        "nc/test/nc1": base * 20,
        "fine/train/kmeans_per_coarse_acc": base + 0.05 + 0.01 * seed,
        "fine/test/kmeans_per_coarse_acc": base + 0.01 * seed,
        "fine/probe_acc": 0.7,
    }


@pytest.fixture
def sweep(tmp_path):
    """2 backbones x 2 lr x 2 wd x 2 seeds; one failed, one diverged pair, one crashed (no results.json)."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / ".submitit" / "123_0").mkdir(parents=True)  # launcher files, not a job
    for backbone in BACKBONES:
        for lr in LRS:
            for wd in WDS:
                for seed in (0, 1):
                    status, results = "completed", True
                    if (backbone, lr, wd, seed) == ("resnet18", 0.01, 5e-4, 0):
                        status = "failed"
                    if (backbone, lr, wd) == ("vgg16_bn", 0.1, 5e-4):
                        status = "diverged"
                    if (backbone, lr, wd, seed) == ("resnet18", 0.1, 5e-5, 1):
                        results = False
                    metrics = metrics_for(backbone, lr, wd, seed) if status == "completed" else {}
                    fake_job(root, backbone, lr, wd, seed, status, metrics, results)
    return root


MULTIRUN_YAML = """\
hydra:
  sweep:
    dir: SWEEP
    subdir: ${ncfine.dirname:${hydra:job.override_dirname}}
  sweeper:
    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper
    max_batch_size: null
    params:
      model.backbone: resnet18,vgg16_bn
      optimizer.lr: 0.1,0.01
  overrides:
    hydra: [hydra.sweep.dir=SWEEP]
    task: [experiment=grid, optimizer.weight_decay=5e-4, seed=0]
  job:
    config:
      override_dirname: {kv_sep: '=', item_sep: ',', exclude_keys: [experiment]}
  runtime:
    choices: {data: digits}
model: {backbone: resnet18}
optimizer: {lr: 0.1, weight_decay: 0.0005}
seed: 0
"""


def test_jobs_not_started_yet_are_missing_rows_not_dropped(tmp_path):
    # A SLURM sweep collected mid-way: queued jobs have no dir yet; multirun.yaml says they exist.
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text(MULTIRUN_YAML.replace("SWEEP", str(root)))
    for backbone, lr in (("resnet18", 0.1), ("resnet18", 0.01), ("vgg16_bn", 0.1)):
        job = fake_job(root, backbone, lr, 5e-4, 0, metrics=metrics_for(backbone, lr, 5e-4, 0))
        with open(job / ".hydra" / "overrides.yaml", "a") as handle:
            handle.write("- experiment=grid\n")  # Hydra records it; the dir name leaves it out
    runs = load_runs(root)
    assert len(runs) == 4
    [queued] = [r for r in runs if r["status"] == "missing"]
    assert queued["job"] == "model.backbone=vgg16_bn,optimizer.lr=0.01,optimizer.weight_decay=0.0005,seed=0"
    assert queued["config"] == {
        "backbone": "vgg16_bn",
        "lr": 0.01,
        "weight_decay": 0.0005,
        "seed": 0,
        "data": "digits",
        "max_train_samples": None,  # multirun.yaml sets no size: the whole split
    }
    table = summarize(runs)
    assert list(table["variant"]) == [""] * 4
    assert heatmap_grid(table, "nc/train/nc1", "vgg16_bn")["labels"][1] == ["missing"]
    assert len(load_runs(root, expected=False)) == 3


def test_load_runs_lists_every_job_with_its_status(sweep):
    runs = load_runs(sweep)
    assert len(runs) == 16
    statuses = sorted(r["status"] for r in runs)
    assert statuses.count("completed") == 12 and statuses.count("failed") == 1
    assert statuses.count("diverged") == 2 and statuses.count("missing") == 1
    missing = next(r for r in runs if r["status"] == "missing")
    # The crashed job keeps its place in the grid: its config comes from Hydra's record.
    assert missing["config"]["backbone"] == "resnet18" and missing["config"]["lr"] == 0.1
    assert missing["config"]["data"] == "digits"
    assert not any(".submitit" in r["job"] for r in runs)


def test_summarize_one_row_per_job_and_seed_aggregation(sweep):
    table = summarize(load_runs(sweep))
    assert len(table) == 16
    for column in (
        "backbone",
        "lr",
        "weight_decay",
        "seed",
        "status",
        "val/acc",
        "train/acc",
        "nc/train/nc1",
        "nc/test/nc4",
        "fine/train/kmeans_per_coarse_acc",
        "fine/train/kmeans_global_acc",
        "fine/test/kmeans_per_coarse_acc",
        "fine/test/kmeans_global_acc",
        "fine/probe_acc",
        "epochs",
        "wall_time_s",
    ):
        assert column in table.columns, column
    failed = table[table["status"] == "failed"].iloc[0]
    assert math.isnan(failed["val/acc"]) and failed["error"] == "failed on purpose"

    by_config = aggregate_seeds(table)
    assert len(by_config) == 8 and (by_config["n_seeds"] == 2).all()
    cell = by_config[
        (by_config["backbone"] == "vgg16_bn") & (by_config["lr"] == 0.01) & (by_config["weight_decay"] == 5e-5)
    ].iloc[0]
    expected = [metrics_for("vgg16_bn", 0.01, 5e-5, s)["fine/test/kmeans_per_coarse_acc"] for s in (0, 1)]
    assert cell["fine/test/kmeans_per_coarse_acc mean"] == pytest.approx(sum(expected) / 2)
    assert cell["fine/test/kmeans_per_coarse_acc std"] == pytest.approx(pd.Series(expected).std())
    # a config with one failed seed averages the completed one only, and says so
    partial = by_config[
        (by_config["backbone"] == "resnet18") & (by_config["lr"] == 0.01) & (by_config["weight_decay"] == 5e-4)
    ].iloc[0]
    assert partial["n_completed"] == 1 and partial["statuses"] == "1 completed, 1 failed"


def test_heatmap_cells_name_failed_and_missing_jobs(sweep):
    table = summarize(load_runs(sweep))
    grid = heatmap_grid(table, "fine/test/kmeans_per_coarse_acc", "vgg16_bn")
    assert grid["lrs"] == [0.1, 0.01] and grid["wds"] == [5e-4, 5e-5]
    assert grid["labels"][0][0] == "diverged x2" and math.isnan(grid["mean"][0, 0])
    assert grid["mean"][1, 1] == pytest.approx(
        sum(metrics_for("vgg16_bn", 0.01, 5e-5, s)["fine/test/kmeans_per_coarse_acc"] for s in (0, 1)) / 2
    )
    resnet = heatmap_grid(table, "fine/test/kmeans_per_coarse_acc", "resnet18")
    assert "1 missing" in resnet["labels"][0][1]  # lr 0.1, wd 5e-5: one seed crashed
    assert "1 failed" in resnet["labels"][1][0]
    # a backbone that never reached a cell of the sweep's grid shows it as missing
    only_one = table[~((table["backbone"] == "resnet18") & (table["lr"] == 0.1))]
    assert heatmap_grid(only_one, "nc/train/nc1", "resnet18")["labels"][0] == ["missing", "missing"]


def test_cli_writes_summary_and_heatmaps(sweep, tmp_path):
    out = tmp_path / "report"
    proc = run_cli([str(sweep), "--out", str(out)], module="ncfine.collect")
    assert proc.returncode == 0, proc.stderr
    assert "16 jobs (12 completed, 2 diverged, 1 failed, 1 missing)" in proc.stdout
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and {r["status"] for r in rows} == {"completed", "failed", "diverged", "missing"}
    assert {float(r["fine/train/kmeans_per_coarse_acc"]) for r in rows if r["status"] == "completed"}
    markdown = (out / "summary.md").read_text()
    assert markdown.count("\n| ") >= 16 + 8 and "missing" in markdown and "±" in markdown
    assert "fine/train/kmeans_per_coarse_acc" in markdown.splitlines()[6]  # the jobs table's header
    pngs = sorted(p.name for p in out.glob("heatmap_*.png"))
    assert pngs == [
        f"heatmap_{metric}_{backbone}.png"
        for metric in (
            "fine_test_kmeans_per_coarse_acc",
            "fine_train_kmeans_per_coarse_acc",
            "nc_train_nc1",
            "train_acc",
            "val_acc",
        )
        for backbone in BACKBONES
    ]
    assert all((out / p).stat().st_size > 5000 for p in pngs)


def test_default_heatmaps_leave_out_what_no_completed_job_logged(sweep, tmp_path):
    table = summarize(load_runs(sweep)).assign(**{"fine/train/kmeans_per_coarse_acc": math.nan})
    metrics, notes = default_heatmap_metrics(table)
    assert metrics == ["fine/test/kmeans_per_coarse_acc", "nc/train/nc1", "train/acc", "val/acc"]
    assert notes == ["no heatmap of fine/train/kmeans_per_coarse_acc: no completed job logged it"]
    # Nothing completed: every default is drawn, its grey cells saying why.
    failed = table.assign(status="failed")
    assert default_heatmap_metrics(failed) == (list(HEATMAP_METRICS), [])
    # Asked for by name, a metric is drawn even without values (its cells say `no value`).
    [path] = write_heatmaps(table[table["backbone"] == "vgg16_bn"], tmp_path, ["fine/train/kmeans_per_coarse_acc"])
    assert path.name == "heatmap_fine_train_kmeans_per_coarse_acc_vgg16_bn.png"


def test_nc_heatmaps_use_a_log_colour_scale(sweep):
    from matplotlib.colors import LogNorm

    table = summarize(load_runs(sweep))
    for metric, log_scale in (("nc/train/nc1", True), ("fine/train/kmeans_per_coarse_acc", False), ("val/acc", False)):
        fig = plot_heatmap(heatmap_grid(table, metric, "resnet18"), metric, metric)
        assert isinstance(fig.axes[0].images[0].norm, LogNorm) is log_scale, metric


def test_an_arm_per_backbone_is_not_a_variant_but_an_arm_that_splits_one_is(tmp_path):
    # experiment=cifar10_cpu_grid style: the backbone comes from an arm of a config group (+cifar10_cpu=...).
    for arm, backbone in (("resnet18", "resnet18"), ("vgg16_bn", "vgg16_bn")):
        for lr in LRS:
            fake_job(tmp_path / "grid", backbone, lr, 5e-4, 0, metrics=metrics_for(backbone, lr, 5e-4, 0))
            # the arm, not model.backbone, is what the sweep's command line named
            job = (
                tmp_path / "grid" / f"model.backbone={backbone},optimizer.lr={lr},optimizer.weight_decay=0.0005,seed=0"
            )
            (job / ".hydra" / "overrides.yaml").write_text(f"- +grid_arm={arm}\n- optimizer.lr={lr}\n")
    table = summarize(load_runs(tmp_path / "grid"))
    assert list(table["variant"]) == [""] * 4
    written = write_heatmaps(table, tmp_path / "out", ["val/acc"])
    assert sorted(p.name for p in written) == ["heatmap_val_acc_resnet18.png", "heatmap_val_acc_vgg16_bn.png"]
    # experiment=cifar10_cpu style: resnet18 on coarse and on fine labels are two arms of one backbone.
    runs = [
        {"config": {"backbone": backbone}, "overrides": [f"+cifar10_cpu={arm}", "seed=0"], "status": "completed"}
        for arm, backbone in (("resnet18", "resnet18"), ("resnet18_fine", "resnet18"), ("vgg16_bn", "vgg16_bn"))
    ]
    assert run_variants(runs) == ["+cifar10_cpu=resnet18", "+cifar10_cpu=resnet18_fine", "+cifar10_cpu=vgg16_bn"]
    # experiment=cifar10_cpu_gen style: parts of one study (another experiment each) swept into one
    # dir; the experiment is not a variant, the weight decay the part sweeps places the job.
    runs = [
        {
            "config": {"backbone": "resnet18"},
            "overrides": [f"experiment={part}", "+cifar10_cpu=resnet18", f"optimizer.weight_decay={wd}", "seed=0"],
            "status": "completed",
        }
        for part, wd in (("cifar10_cpu_gen", 0.0005), ("cifar10_cpu_gen_wd5e-3", 0.005))
    ]
    assert run_variants(runs) == ["", ""]


def test_cli_empty_dir_is_one_line_error(tmp_path):
    proc = run_cli([str(tmp_path)], module="ncfine.collect")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no ncfine runs found" in proc.stderr


def test_variant_keeps_other_swept_keys_apart(tmp_path):
    for hierarchy in ("mod:5", "identity"):
        for lr in (0.1, 0.01):
            fake_job(
                tmp_path,
                "resnet18",
                lr,
                5e-4,
                0,
                metrics={"nc/train/nc1": 1.0},
                extra=[f"data.hierarchy={hierarchy}", "trainer.max_epochs=2"],
            )
    table = summarize(load_runs(tmp_path))
    assert sorted(table["variant"]) == ["data.hierarchy=identity"] * 2 + ["data.hierarchy=mod:5"] * 2
    assert len(write_heatmaps(table, tmp_path / "out", ["nc/train/nc1"])) == 2


def test_wandb_run_rows_map_config_summary_and_state():
    # The shape wandb.Api().runs() yields (public Run: name, url, state, config, summary);
    # the API call itself needs network and an account, so only the mapping is checked here.
    finished = SimpleNamespace(
        name="model.backbone=resnet18,optimizer.lr=0.1",
        url="https://wandb.ai/e/p/runs/abc",
        state="finished",
        config={
            "model": {"backbone": "resnet18"},
            "optimizer": {"lr": 0.1, "weight_decay": 5e-4},
            "data": {"max_train_samples": 500, "hierarchy": "mod:5"},
            "seed": 3,
        },
        summary={
            "nc/train/nc1": 0.25,
            "val/acc": 0.9,
            "_runtime": 12.0,
            "trainer/global_step": 40,
            "ncfine/status": "completed",
            "ncfine/epochs_completed": 2,
            "epoch": 1,
        },
    )
    row = run_from_wandb(finished)
    assert row["status"] == "completed" and row["epochs_completed"] == 2
    assert row["config"] == {
        "backbone": "resnet18",
        "lr": 0.1,
        "weight_decay": 5e-4,
        "seed": 3,
        "data": None,
        "hierarchy": "mod:5",
        "max_train_samples": 500,
    }
    assert row["metrics"] == {"nc/train/nc1": 0.25, "val/acc": 0.9}
    crashed = SimpleNamespace(
        name="x", url="u", state="crashed", config={"ncfine": {"backbone": "vgg16_bn", "lr": 0.01}}, summary={}
    )
    row = run_from_wandb(crashed)
    assert row["status"] == "failed" and row["config"]["backbone"] == "vgg16_bn"
    with pytest.raises(CollectError, match="ENTITY/PROJECT"):
        load_wandb_runs("just-a-project")


def test_pca_of_two_lines_explains_their_variance():
    t = torch.linspace(-1, 1, 50, dtype=torch.float64)
    x = torch.stack([3 * t, t, torch.zeros_like(t)], dim=1)  # points on one line
    coords, explained = pca_2d(x)
    assert explained[0] == pytest.approx(1.0) and explained[1] == pytest.approx(0.0, abs=1e-12)
    assert coords[:, 0].abs().max() == pytest.approx(math.sqrt(10), rel=1e-9)
    # both Gram shapes (N <= D and N > D) agree with the SVD of the centred data, up to sign
    g = torch.Generator().manual_seed(1)
    for x in (
        torch.randn(40, 6, generator=g, dtype=torch.float64),
        torch.randn(6, 40, generator=g, dtype=torch.float64),
    ):
        coords, explained = pca_2d(x)
        centred = x - x.mean(0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        assert torch.allclose(coords.abs(), (centred @ vh[:2].T).abs(), atol=1e-9)
        assert torch.allclose(explained, s[:2] ** 2 / (s**2).sum())


def test_plot_pca_and_render_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    coarse = torch.arange(300) % 3
    fine = coarse + 3 * (torch.arange(300) // 3 % 2)
    h = torch.randn(300, 16, generator=g) + 4 * torch.nn.functional.one_hot(fine, 16).float()
    plot_pca(h, coarse, fine, tmp_path / "pca.png")
    assert (tmp_path / "pca.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="coarse"):
        plot_pca(h, coarse[:10], fine)

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "nc/train/nc1": [2.0, 1.0, 0.5],
            "nc/test/nc1": [3.0, 2.0, 1.5],
            "nc/train/fine/nc1": [4, 3.5, 3],
            "nc/train/nc4": [0.1, 0.0, 0.0],
            "fine/test/kmeans_per_coarse_acc": [0.6, 0.7, 0.8],
            "val/acc": [0.5, 0.7, 0.9],
        }
    ).to_csv(run / "metrics.csv", index=False)
    torch.save({"h": h, "coarse": coarse, "fine": fine}, run / "features_test.pt")
    written = render_run(run)
    assert sorted(p.name for p in written) == ["nc_curves.png", "pca_test.png", "recovery_curves.png"]
    assert all(p.parent == run / "plots" and p.stat().st_size > 5000 for p in written)


def test_plot_cli(tmp_path):
    proc = run_cli([str(tmp_path / "nope")], module="ncfine.plot")
    assert proc.returncode == 2 and "metrics.csv" in proc.stderr and proc.stderr.count("\n") == 1


BASELINE_COLUMNS = (
    "baseline/input/train/kmeans_per_coarse_acc",
    "baseline/init/train/kmeans_per_coarse_acc",
    "baseline/input/test/kmeans_per_coarse_acc",
    "baseline/init/test/kmeans_per_coarse_acc",
    "baseline/input/probe_acc",
    "baseline/init/probe_acc",
)


def baselines_for(seed):
    """What a run measures before its first step (ncfine.analysis.baselines), under its results.json keys."""
    return {
        "baseline/input/train/kmeans_per_coarse_acc": 0.62,
        "baseline/init/train/kmeans_per_coarse_acc": 0.64 + 0.04 * seed,
        "baseline/input/test/kmeans_per_coarse_acc": 0.61,
        "baseline/init/test/kmeans_per_coarse_acc": 0.66 + 0.01 * seed,
        "baseline/input/probe_acc": 0.3,
        "baseline/init/probe_acc": 0.35 + 0.01 * seed,
    }


def test_the_tables_show_the_baselines_beside_the_recovery_and_nothing_for_old_runs(tmp_path):
    root = tmp_path / "sweep"
    fake_job(root, "resnet18", 0.1, 5e-4, 0, metrics={**metrics_for("resnet18", 0.1, 5e-4, 0), **baselines_for(0)})
    fake_job(root, "resnet18", 0.1, 5e-4, 1, metrics=metrics_for("resnet18", 0.1, 5e-4, 1))  # before the baselines
    table = summarize(load_runs(root))
    columns = list(table.columns)
    for recovery, baselines in (
        ("fine/train/kmeans_per_coarse_acc", BASELINE_COLUMNS[0:2]),
        ("fine/test/kmeans_per_coarse_acc", BASELINE_COLUMNS[2:4]),
        ("fine/probe_acc", BASELINE_COLUMNS[4:6]),
    ):
        at = columns.index(recovery)
        assert tuple(columns[at + 1 : at + 3]) == baselines  # right after the recovery they belong to
    new, old = table.iloc[0], table.iloc[1]
    assert {key: new[key] for key in BASELINE_COLUMNS} == pytest.approx(baselines_for(0))
    assert all(math.isnan(old[key]) for key in BASELINE_COLUMNS)

    write_summary(table, tmp_path / "out")
    with open(tmp_path / "out" / "summary.csv") as handle:
        rows = {row["seed"]: row for row in csv.DictReader(handle)}
    assert float(rows["0"]["baseline/init/train/kmeans_per_coarse_acc"]) == pytest.approx(0.64)
    assert all(rows["1"][key] == "" for key in BASELINE_COLUMNS)
    header = (tmp_path / "out" / "summary.md").read_text().splitlines()[6]
    assert all(key in header for key in BASELINE_COLUMNS)
    # Only old runs: summary.md drops the empty columns, summary.csv keeps them (a stable schema).
    write_summary(table.iloc[1:], tmp_path / "old")
    assert "baseline/" not in (tmp_path / "old" / "summary.md").read_text()
    assert all(key in (tmp_path / "old" / "summary.csv").read_text().splitlines()[0] for key in BASELINE_COLUMNS)


def test_runs_of_different_training_set_sizes_are_never_averaged(tmp_path):
    # Two sweeps collected together: the size is in each results.json's config, no override names it.
    root = tmp_path / "sweep"
    value = {500: 0.6, 3000: 0.7}
    for size in (500, 3000):
        for seed in (0, 1):
            metrics = {"fine/test/kmeans_per_coarse_acc": value[size] + 0.01 * seed}
            fake_job(
                root / f"n{size}", "resnet18", 0.1, 5e-4, seed, metrics=metrics, config={"max_train_samples": size}
            )
    # A run from before results.json recorded the size: its sweep's override still says it.
    old = fake_job(
        root / "old",
        "resnet18",
        0.1,
        5e-4,
        2,
        metrics={"fine/test/kmeans_per_coarse_acc": 0.75},
        extra=["data.max_train_samples=3000"],
    )
    runs = load_runs(root)
    assert next(r for r in runs if r["run_dir"] == str(old))["config"]["max_train_samples"] == 3000
    table = summarize(runs)
    assert sorted(table["max_train_samples"]) == [500, 500, 3000, 3000, 3000]
    assert sorted(set(table["variant"])) == ["data.max_train_samples=3000", "data.max_train_samples=500"]
    by_config = aggregate_seeds(table).set_index("max_train_samples")
    assert sorted(by_config.index) == [500, 3000]
    assert by_config.loc[500, "n_seeds"] == 2 and by_config.loc[3000, "n_seeds"] == 3
    assert by_config.loc[500, "fine/test/kmeans_per_coarse_acc mean"] == pytest.approx(0.605)
    assert by_config.loc[3000, "fine/test/kmeans_per_coarse_acc mean"] == pytest.approx((0.7 + 0.71 + 0.75) / 3)
    # One size everywhere adds nothing to the variant.
    assert list(summarize([r for r in runs if r["config"].get("max_train_samples") == 500])["variant"]) == ["", ""]


def test_a_recovery_heatmap_names_its_baselines_in_the_title(sweep, tmp_path, monkeypatch):
    import ncfine.collect.heatmaps as heatmaps

    table = summarize(load_runs(sweep))
    resnet = table["backbone"] == "resnet18"
    table.loc[resnet, "baseline/input/test/kmeans_per_coarse_acc"] = 0.62
    table.loc[resnet, "baseline/init/test/kmeans_per_coarse_acc"] = 0.64 + 0.04 * table.loc[resnet, "seed"]
    metric = "fine/test/kmeans_per_coarse_acc"
    note = "inputs 0.62, untrained network 0.64-0.68 (range over the cells' runs)"
    assert baseline_note(table, metric, "resnet18") == note
    assert baseline_note(table, metric, "vgg16_bn") is None  # its runs measured no baselines
    assert baseline_note(table, "nc/train/nc1", "resnet18") is None  # not a recovery
    one_seed = table[table["seed"] == 0]
    assert baseline_note(one_seed, metric, "resnet18") == "inputs 0.62, untrained network 0.64"

    titles = []
    monkeypatch.setattr(heatmaps, "plot_heatmap", lambda grid, metric, title, path: titles.append(title))
    write_heatmaps(table, tmp_path, [metric, "val/acc"])
    assert f"{metric}: resnet18 baselines: {note}" in [t.replace("\n", " ") for t in titles]
    assert f"{metric}: vgg16_bn" in titles and "val/acc: resnet18" in titles


def test_collect_names_baseline_keys_as_the_analysis_does():
    # ncfine.collect restates the rule to import no torch; the two must agree.
    from ncfine.analysis.baselines import BASELINES
    from ncfine.analysis.baselines import baseline_key as analysis_key
    from ncfine.collect.schema import INIT_BASELINE, INPUT_BASELINE, baseline_key

    assert (INPUT_BASELINE, INIT_BASELINE) == BASELINES
    for key in ("fine/test/kmeans_per_coarse_acc", "fine/probe_acc", "nc/train/nc1"):
        for name in BASELINES:
            assert baseline_key(key, name) == analysis_key(name, key)
    assert set(BASELINE_COLUMNS) == {
        baseline_key(k, n)
        for k in ("fine/train/kmeans_per_coarse_acc", "fine/test/kmeans_per_coarse_acc", "fine/probe_acc")
        for n in BASELINES
    }
