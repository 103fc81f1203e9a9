"""ncfine-collect's trajectory figures (issue #28): per backbone, per-superclass recovery of the train
and test features against train NC1 at every analysed epoch, one line per seed, from the
metrics.csv and results.json files an experiment=cifar10_cpu sweep leaves behind."""

import json
import math

import pandas as pd
import pytest

import ncfine.collect.trajectories as trajectories_module
from conftest import run_cli
from ncfine.collect import (
    collect,
    init_point,
    load_runs,
    load_trajectory,
    plot_trajectories,
    summarize,
    trajectory_points,
)
from ncfine.collect.trajectories import INIT_LABEL
from ncfine.results.run_dir import rows_to_csv

EPOCHS = 10
ANALYSED = (4, 9)  # analysis every 5th epoch, as experiment=cifar10_cpu runs it


def nc1_at(backbone, seed, epoch):
    return {"resnet18": 8.0, "vgg16_bn": 2.0}.get(backbone, 5.0) * (0.1 ** (epoch / 9)) * (1 + 0.1 * seed)


def recovery_at(split, backbone, seed, epoch):
    # VGG loses the fine classes as it collapses; ResNet keeps them (the paper's picture).
    slope = -0.02 if backbone == "vgg16_bn" else 0.005
    return 0.7 + slope * epoch + (0.05 if split == "train" else 0.0) + 0.01 * seed


def epoch_rows(backbone, seed, splits=("train", "test"), fine_labels=False):
    """metrics.csv rows as RunFilesCallback writes them: train/* every epoch, val, NC and recovery
    only on analysed epochs."""
    rows = []
    for epoch in range(EPOCHS):
        row = {"epoch": epoch, "train/loss": 1.0 / (epoch + 1), "train/acc": 0.5 + 0.05 * epoch}
        if epoch in ANALYSED:
            row.update({"val/acc": 0.6, "nc/train/nc1": nc1_at(backbone, seed, epoch), "nc/test/nc1": 3.0})
            if not fine_labels:
                for split in splits:
                    row[f"fine/{split}/kmeans_per_coarse_acc"] = recovery_at(split, backbone, seed, epoch)
                    row[f"fine/{split}/kmeans_global_acc"] = 0.3
                row["fine/probe_acc"] = 0.45
        rows.append(row)
    return rows


def baselines_at(seed):
    """The keys a run measures before its first step (ncfine.analysis.baselines), in results.json."""
    return {
        "baseline/init/train/nc1": 20.0 + seed,
        "baseline/init/train/kmeans_per_coarse_acc": 0.64 + 0.01 * seed,
        "baseline/init/test/kmeans_per_coarse_acc": 0.66,
        "baseline/input/train/kmeans_per_coarse_acc": 0.62 + 0.01 * seed,
        "baseline/input/test/kmeans_per_coarse_acc": 0.60,
    }


def arm_job(root, arm, backbone, seed, rows=None, hierarchy="mod:5", status="completed", baselines=None, size=None):
    """A job dir of a sweep over `+cifar10_cpu=<arm>` x seed: Hydra's record, results.json (final
    metrics = the last row, plus `baselines`; `max_train_samples` when `size`), metrics.csv (when
    `rows`)."""
    overrides = [f"+cifar10_cpu={arm}", f"seed={seed}"]
    job = root / ",".join(overrides)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if rows is not None:
        (job / "metrics.csv").write_text(rows_to_csv(rows))
    final = {k: v for k, v in (rows or [{}])[-1].items() if k != "epoch"} | (baselines or {})
    config = {"backbone": backbone, "lr": 0.05, "weight_decay": 5e-4, "seed": seed, "data": "cifar10"}
    if size is not None:
        config["max_train_samples"] = size
    payload = {
        "status": status,
        "error": None,
        "epochs_completed": len(rows or []),
        "wall_time_s": 10.0,
        "metrics": final,
        "config": {**config, "hierarchy": hierarchy},
    }
    (job / "results.json").write_text(json.dumps(payload))
    return job


@pytest.fixture
def sweep(tmp_path):
    """ResNet-18 and VGG-16-bn on the coarse labels, ResNet-18 on the fine labels, 2 seeds each;
    VGG seed 1 analysed the test split only; a DenseNet job died before its first epoch."""
    root = tmp_path / "cifar10_cpu"
    for seed in (0, 1):
        arm_job(root, "resnet18", "resnet18", seed, epoch_rows("resnet18", seed))
        splits = ("train", "test") if seed == 0 else ("test",)
        arm_job(root, "vgg16_bn", "vgg16_bn", seed, epoch_rows("vgg16_bn", seed, splits))
        fine_rows = epoch_rows("resnet18", seed, fine_labels=True)
        arm_job(root, "resnet18_fine", "resnet18", seed, fine_rows, hierarchy="identity")
    arm_job(root, "densenet121", "densenet121", 0, rows=None, status="failed")
    return root


def test_points_are_the_analysed_epochs_in_order(sweep):
    metrics = pd.read_csv(sweep / "+cifar10_cpu=resnet18,seed=1" / "metrics.csv")
    points = trajectory_points(metrics.iloc[::-1])  # order comes from the epoch column
    assert list(points["epoch"]) == list(ANALYSED)
    assert list(points["nc1"]) == pytest.approx([nc1_at("resnet18", 1, e) for e in ANALYSED])
    for split in ("train", "test"):
        assert list(points[split]) == pytest.approx([recovery_at(split, "resnet18", 1, e) for e in ANALYSED])


def test_one_figure_per_backbone_with_train_and_test_lines_per_seed(sweep, tmp_path):
    result = collect(str(sweep), str(tmp_path / "out"))
    trajectories = sorted(p.name for p in result["files"] if p.name.startswith("trajectory_"))
    # The fine-label arm is not drawn (no hidden classes), and the DenseNet job left no metrics.csv.
    assert trajectories == ["trajectory_resnet18.png", "trajectory_vgg16_bn.png"]
    assert all((tmp_path / "out" / name).stat().st_size > 10000 for name in trajectories)
    notes = [n for n in result["notes"] if n.startswith("trajectory: ")]
    assert len(notes) == 4, notes  # one line for each run left out or drawn in part
    assert sum("trained on the fine labels" in n for n in notes) == 2
    assert any(n.startswith("trajectory: +cifar10_cpu=densenet121,seed=0: no metrics.csv") for n in notes)
    assert any("vgg16_bn,seed=1: no fine/train/kmeans_per_coarse_acc column: drawn without it" in n for n in notes)

    runs = [r for r in load_runs(sweep) if r["job"].startswith("+cifar10_cpu=resnet18,")]
    fig = plot_trajectories([load_trajectory(run)[0] for run in runs])
    [ax] = fig.axes
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()  # collapse goes to the right
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == ["test, seed 0", "test, seed 1", "train, seed 0", "train, seed 1"]
    line = lines["train, seed 1"]
    assert list(line.get_xdata()) == pytest.approx([nc1_at("resnet18", 1, e) for e in ANALYSED])
    assert list(line.get_ydata()) == pytest.approx([recovery_at("train", "resnet18", 1, e) for e in ANALYSED])
    assert line.get_marker() != lines["test, seed 1"].get_marker()
    assert line.get_color() != lines["test, seed 1"].get_color()
    assert line.get_linestyle() != lines["train, seed 0"].get_linestyle()
    # The last analysed epoch of each line is a star at its end.
    stars = [(s.get_xdata()[0], s.get_ydata()[0]) for s in ax.get_lines() if s.get_marker() == "*"]
    assert (line.get_xdata()[-1], line.get_ydata()[-1]) in stars and len(stars) == 4
    # Runs made before the baselines were measured: no untrained-network point, no inputs' level,
    # and one training-set size, so no data-size figure (and no note about it).
    assert not [s for s in ax.get_lines() if s.get_marker() == "X"]
    assert INIT_LABEL not in [t.get_text() for t in fig.legends[0].get_texts()]
    assert not [p for p in result["files"] if p.name.startswith("datasize_")]
    assert not [n for n in result["notes"] if "datasize" in n]


def test_runs_without_the_columns_are_left_out_with_one_line(sweep, tmp_path):
    no_nc = sweep / "+cifar10_cpu=resnet18,seed=0" / "metrics.csv"
    pd.read_csv(no_nc).drop(columns=["nc/train/nc1"]).to_csv(no_nc, index=False)
    (sweep / "+cifar10_cpu=vgg16_bn,seed=0" / "metrics.csv").write_text("")
    proc = run_cli([str(sweep), "--out", str(tmp_path / "out")], module="ncfine.collect")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "trajectory:" in line]
    assert all(line.startswith("ncfine-collect: note: trajectory: ") for line in notes)
    assert any("resnet18,seed=0: metrics.csv has no nc/train/nc1 column: left out" in n for n in notes), notes
    assert any("vgg16_bn,seed=0: metrics.csv unreadable" in n for n in notes), notes
    # The seeds that have the columns are still drawn.
    assert {p.name for p in (tmp_path / "out").glob("trajectory_*.png")} == {
        "trajectory_resnet18.png",
        "trajectory_vgg16_bn.png",
    }


def test_arm_sweep_tables_keep_the_fine_baseline_apart_and_show_train_recovery(sweep):
    table = summarize(load_runs(sweep))
    # +cifar10_cpu splits resnet18 into a coarse and a fine arm: that stays a variant.
    resnet = table[table["backbone"] == "resnet18"]
    assert sorted(set(resnet["variant"])) == ["+cifar10_cpu=resnet18", "+cifar10_cpu=resnet18_fine"]
    row = table[(table["variant"] == "+cifar10_cpu=resnet18") & (table["seed"] == 0)].iloc[0]
    assert row["fine/train/kmeans_per_coarse_acc"] == pytest.approx(recovery_at("train", "resnet18", 0, 9))
    assert row["train/acc"] == pytest.approx(0.5 + 0.05 * 9)


def test_a_grid_colours_each_lr_wd_cell_and_names_it(tmp_path):
    # experiment=cifar10_cpu_grid: one seed, the runs of a backbone differ in lr and wd.
    root = tmp_path / "grid"
    for i, (lr, wd) in enumerate([(0.1, 5e-3), (0.01, 5e-4), (0.001, 5e-5)]):
        job = arm_job(root / f"cell{i}", "resnet18", "resnet18", 0, rows=epoch_rows("resnet18", i))
        payload = json.loads((job / "results.json").read_text())
        payload["config"].update(lr=lr, weight_decay=wd)
        (job / "results.json").write_text(json.dumps(payload))
    runs = load_runs(root)
    fig = plot_trajectories([load_trajectory(run)[0] for run in runs])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == sorted(
        f"{split}, lr {lr}, wd {wd}, seed 0"
        for split in ("train", "test")
        for lr, wd in (("0.1", "0.005"), ("0.01", "0.0005"), ("0.001", "5e-05"))
    )
    colours = {label.split(", ", 1)[1]: line.get_color() for label, line in lines.items() if label.startswith("train")}
    assert len(set(colours.values())) == 3  # a colour per cell ...
    same_cell = lines["train, lr 0.1, wd 0.005, seed 0"], lines["test, lr 0.1, wd 0.005, seed 0"]
    assert same_cell[0].get_color() == same_cell[1].get_color()  # ... shared by its two splits,
    assert same_cell[0].get_linestyle() != same_cell[1].get_linestyle()  # told apart by line style
    assert same_cell[0].get_marker() != same_cell[1].get_marker()


def test_an_architecture_sweep_gets_no_one_cell_heatmaps_but_a_note_each(sweep, tmp_path):
    result = collect(str(sweep), str(tmp_path / "out"))
    assert not [p for p in result["files"] if p.name.startswith("heatmap_")]
    notes = [n for n in result["notes"] if n.startswith("no heatmaps of ")]
    # resnet18 (coarse and fine arms), vgg16_bn and densenet121: one (lr, wd) cell each
    assert len(notes) == 4, notes
    assert all("one lr x wd cell (lr 0.05, wd 0.0005)" in n for n in notes)
    assert summarize(load_runs(sweep)).shape[0] == 7  # the tables keep every job


def test_the_untrained_network_point_needs_its_nc1_and_a_recovery():
    assert init_point({}) is None  # a run made before the baselines were measured
    assert init_point({"baseline/init/train/nc1": 3.0}) is None
    assert init_point({"baseline/init/test/kmeans_per_coarse_acc": 0.6}) is None
    assert init_point({"baseline/init/train/nc1": math.nan, "baseline/init/test/kmeans_per_coarse_acc": 0.6}) is None
    point = init_point({"baseline/init/train/nc1": 3.0, "baseline/init/test/kmeans_per_coarse_acc": 0.6})
    assert point["nc1"] == 3.0 and point["test"] == 0.6 and math.isnan(point["train"])


def test_each_line_starts_at_the_untrained_network_beside_the_inputs_level(tmp_path):
    root = tmp_path / "sweep"
    for seed in (0, 1):
        arm_job(root, "resnet18", "resnet18", seed, epoch_rows("resnet18", seed), baselines=baselines_at(seed))
    fig = plot_trajectories([load_trajectory(run)[0] for run in load_runs(root)])
    [ax] = fig.axes
    inits = sorted((x.get_xdata()[0], round(x.get_ydata()[0], 9)) for x in ax.get_lines() if x.get_marker() == "X")
    assert inits == [(20.0, 0.64), (20.0, 0.66), (21.0, 0.65), (21.0, 0.66)]  # train and test, per seed
    # ... each joined to its line's first analysed epoch, in the line's colour
    first = ANALYSED[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    joins = [x for x in ax.get_lines() if x.get_label().startswith("_") and len(x.get_xdata()) == 2]
    join = next(x for x in joins if x.get_xdata()[0] == 21.0 and x.get_ydata()[0] == pytest.approx(0.65))
    assert list(join.get_xdata()) == pytest.approx([21.0, nc1_at("resnet18", 1, first)])
    assert list(join.get_ydata()) == pytest.approx([0.65, recovery_at("train", "resnet18", 1, first)])
    assert join.get_color() == lines["train, seed 1"].get_color()
    assert max(ax.get_xlim()) >= 21.0  # the untrained network is inside the axes
    # The inputs' recovery: a dashed level per split in its colour, the mean over the runs.
    train_level, test_level = lines["inputs (pixels), train"], lines["inputs (pixels), test"]
    assert list(train_level.get_ydata()) == pytest.approx([0.625, 0.625])
    assert list(test_level.get_ydata()) == pytest.approx([0.60, 0.60])
    assert train_level.get_linestyle() == "--" and train_level.get_color() == lines["train, seed 0"].get_color()
    assert INIT_LABEL in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_backbone_trained_on_several_sizes_gets_a_figure_per_size(tmp_path, monkeypatch):
    root = tmp_path / "sweep"
    for size in (500, 3000):
        for seed in (0, 1):
            rows = epoch_rows("resnet18", seed)
            arm_job(root / f"n{size}", "resnet18", "resnet18", seed, rows, baselines=baselines_at(seed), size=size)
    arm_job(root / "n3000", "vgg16_bn", "vgg16_bn", 0, epoch_rows("vgg16_bn", 0), size=3000)
    titles = {}
    draw = trajectories_module.plot_trajectories

    def recording(trajectories, title=None, path=None):
        titles[path.name] = (title, sorted(t["size"] for t in trajectories))
        return draw(trajectories, title, path)

    monkeypatch.setattr(trajectories_module, "plot_trajectories", recording)
    result = collect(str(root), str(tmp_path / "out"))
    assert sorted(titles) == [
        "trajectory_resnet18_3000img.png",
        "trajectory_resnet18_500img.png",
        "trajectory_vgg16_bn.png",
    ]
    assert titles["trajectory_resnet18_500img.png"][1] == [500, 500]  # the runs of that size only
    assert titles["trajectory_resnet18_500img.png"][0].endswith("\n500 training images")
    assert "training images" not in titles["trajectory_vgg16_bn.png"][0]  # one size: named as before
    datasize = sorted(p.name for p in result["files"] if p.name.startswith("datasize_"))
    assert datasize == ["datasize_fine_test_kmeans_per_coarse_acc.png", "datasize_fine_train_kmeans_per_coarse_acc.png"]
    assert all((tmp_path / "out" / name).stat().st_size > 10000 for name in datasize)
