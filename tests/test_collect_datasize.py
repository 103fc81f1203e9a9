"""ncfine-collect's data-size figures: per-superclass recovery at the last epoch against the number of
training images, one line per (backbone, lr, wd) with the range over seeds, beside the inputs' and
the untrained network's recovery, written only where the collection's runs differ in that number."""

import math

import pandas as pd
import pytest

from ncfine.collect import (
    datasize_baselines,
    datasize_lines,
    datasize_runs,
    plot_datasize,
    summarize,
    write_datasize,
)

TEST = "fine/test/kmeans_per_coarse_acc"
TRAIN = "fine/train/kmeans_per_coarse_acc"


def run(backbone, size, seed, value, status="completed", hierarchy="mod:5", baselines=True):
    """A `load_runs` row: the final recovery `value` (test; train 0.1 above) and, unless it predates
    them, the baselines (inputs 0.6 + size / 1e5 + 0.01 seed, untrained network 0.65 + 0.01 seed)."""
    metrics = {TEST: value, TRAIN: value + 0.1}
    if baselines:
        metrics["baseline/input/test/kmeans_per_coarse_acc"] = 0.6 + size / 1e5 + 0.01 * seed if size else 0.9
        metrics["baseline/init/test/kmeans_per_coarse_acc"] = 0.65 + 0.01 * seed
    config = {"backbone": backbone, "lr": 0.05, "weight_decay": 5e-4, "seed": seed, "hierarchy": hierarchy}
    return {
        "job": f"{backbone},{size},{seed},{hierarchy}",
        "status": status,
        "metrics": metrics if status == "completed" else {},
        "config": {**config, "max_train_samples": size},
        "overrides": [],
    }


@pytest.fixture
def runs():
    """ResNet-18 at 500 and 3,000 images, 2 seeds each; VGG at both sizes, 1 seed; and what the
    figure leaves out: a fine-label ResNet, a failed run, a run on the whole split (no size)."""
    return [
        run("resnet18", 500, 0, 0.70),
        run("resnet18", 500, 1, 0.74),
        run("resnet18", 3000, 0, 0.80),
        run("resnet18", 3000, 1, 0.78),
        run("vgg16_bn", 500, 0, 0.60),
        run("vgg16_bn", 3000, 0, 0.55),
        run("resnet18", 500, 2, 0.99, hierarchy="identity"),
        run("resnet18", 3000, 2, 0.10, status="failed"),
        run("resnet18", None, 0, 0.90),
    ]


def test_lines_are_the_mean_and_range_over_seeds_per_size(runs):
    drawn = datasize_runs(summarize(runs))
    assert len(drawn) == 6 and set(drawn["size"]) == {500, 3000}
    assert set(drawn["arm"]) == {""}  # the size the variant gained is the x axis, not a line
    lines = datasize_lines(drawn, TEST)
    assert list(zip(lines["backbone"], lines["size"])) == [
        ("resnet18", 500),
        ("resnet18", 3000),
        ("vgg16_bn", 500),
        ("vgg16_bn", 3000),
    ]
    assert list(lines["mean"]) == pytest.approx([0.72, 0.79, 0.60, 0.55])
    assert list(lines["low"]) == pytest.approx([0.70, 0.78, 0.60, 0.55])
    assert list(lines["high"]) == pytest.approx([0.74, 0.80, 0.60, 0.55])
    assert list(lines["n"]) == [2, 2, 1, 1]
    assert list(datasize_lines(drawn, TRAIN)["mean"]) == pytest.approx([0.82, 0.89, 0.70, 0.65])


def test_baselines_are_the_mean_over_the_runs_of_each_size(runs):
    drawn = datasize_runs(summarize(runs))
    levels = datasize_baselines(drawn, TEST).set_index("size")
    # at 500: resnet seeds 0 and 1 and vgg seed 0, not the fine-label run
    assert levels.loc[500, "input"] == pytest.approx((0.605 + 0.615 + 0.605) / 3)
    assert levels.loc[3000, "input"] == pytest.approx((0.63 + 0.64 + 0.63) / 3)
    assert levels.loc[500, "init"] == pytest.approx((0.65 + 0.66 + 0.65) / 3)
    # runs made before the baselines were measured: no level, not a bogus one
    old = datasize_runs(summarize([run("resnet18", s, 0, 0.7, baselines=False) for s in (500, 3000)]))
    assert datasize_baselines(old, TEST)[["input", "init"]].isna().all().all()


def test_the_figure_draws_lines_and_grey_levels():
    from matplotlib.colors import to_rgba

    drawn = datasize_runs(summarize([run(b, s, 0, 0.7) for b in ("resnet18", "vgg16_bn") for s in (500, 3000)]))
    fig = plot_datasize(datasize_lines(drawn, TEST), datasize_baselines(drawn, TEST), TEST)
    [ax] = fig.axes
    assert ax.get_xscale() == "log"
    labelled = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    inputs, init = labelled["inputs (pixels)"], labelled["untrained network (before step 1)"]
    assert inputs.get_linestyle() == "--" and init.get_linestyle() == ":"
    assert to_rgba(inputs.get_color()) == to_rgba("grey")
    assert list(inputs.get_xdata()) == [500, 3000]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "resnet18, lr 0.05, wd 0.0005" in legend and "vgg16_bn, lr 0.05, wd 0.0005" in legend


def test_written_only_where_the_sizes_vary(runs, tmp_path):
    table = summarize(runs)
    files, notes = write_datasize(table, tmp_path / "out")
    assert sorted(p.name for p in files) == [
        "datasize_fine_test_kmeans_per_coarse_acc.png",
        "datasize_fine_train_kmeans_per_coarse_acc.png",
    ]
    assert all(p.stat().st_size > 10000 for p in files)
    assert notes == [
        "datasize: 1 completed run with no max_train_samples (the whole split, or not recorded): "
        "not on the data-size axis"
    ]
    # A metric no run logged: no figure, a note.
    files, notes = write_datasize(table.assign(**{TRAIN: math.nan}), tmp_path / "test_only")
    assert [p.name for p in files] == ["datasize_fine_test_kmeans_per_coarse_acc.png"]
    assert any(n.startswith(f"no datasize figure of {TRAIN}") for n in notes)
    # One size (the fine-label run at 500 and the failed one at 3,000 do not count): nothing, no note.
    one_size = summarize([r for r in runs if r["config"]["max_train_samples"] != 3000 or r["status"] != "completed"])
    assert set(datasize_runs(one_size)["size"]) == {500}
    assert write_datasize(one_size, tmp_path / "none") == ([], [])
    assert not (tmp_path / "none").exists()
    # Runs made before max_train_samples was recorded: no size at all, nothing.
    old = [{**r, "config": {k: v for k, v in r["config"].items() if k != "max_train_samples"}} for r in runs]
    assert write_datasize(summarize(old), tmp_path / "old") == ([], [])
    assert isinstance(datasize_runs(summarize(old)), pd.DataFrame) and datasize_runs(summarize(old)).empty
