"""ncfine.plot legibility: log scales that keep zeros, legends that do not cover the curves, class names."""

import numpy as np
import pandas as pd
import torch

from ncfine.plot import plot_nc_curves, plot_pca, plot_recovery_curves


def nc_metrics(train_nc4):
    epochs = np.arange(len(train_nc4))
    frame = pd.DataFrame({"epoch": epochs})
    for split in ("train", "test"):
        for name in ("nc1", "nc2_etf_error", "nc3"):
            frame[f"nc/{split}/{name}"] = np.exp(-epochs / 5) + 0.01
    frame["nc/train/nc4"] = train_nc4
    frame["nc/test/nc4"] = 0.5 * np.exp(-epochs / 4) + 0.04
    return frame


def test_nc_panels_are_log_scale_and_a_curve_that_reaches_zero_stays_visible(tmp_path):
    # NC4 on train is exactly 0 once the classifier agrees with the nearest class mean everywhere.
    fig = plot_nc_curves(nc_metrics([0.4, 0.1, 0.01, 0.002, 0.0, 0.0]), tmp_path / "nc.png")
    scales = {ax.get_title(): ax.get_yscale() for ax in fig.axes}
    assert scales == {"NC1": "log", "NC2 (ETF error)": "log", "NC3": "log", "NC4": "symlog"}
    nc4 = next(ax for ax in fig.axes if ax.get_title() == "NC4")
    assert nc4.get_ylim()[0] <= 0 < 0.002 < nc4.get_ylim()[1]  # the zeros are on the plot
    assert (tmp_path / "nc.png").stat().st_size > 5000


def test_nc_panel_of_zeros_only_is_linear(tmp_path):
    fig = plot_nc_curves(nc_metrics([0.0] * 4).assign(**{"nc/test/nc4": 0.0}))
    assert next(ax for ax in fig.axes if ax.get_title() == "NC4").get_yscale() == "linear"


def test_recovery_legends_sit_below_the_axes(tmp_path):
    epochs = np.arange(5)
    frame = pd.DataFrame({"epoch": epochs})
    for key in ("kmeans_per_coarse", "kmeans_global"):
        for score in ("acc", "nmi", "ari"):
            frame[f"fine/test/{key}_{score}"] = 0.5 + 0.05 * epochs
    frame["fine/probe_acc"], frame["fine/knn_acc"], frame["val/acc"] = 0.99, 0.95, 0.2 + 0.1 * epochs
    fig = plot_recovery_curves(frame, tmp_path / "recovery.png")
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None and len(legend.get_texts()) >= 4
        assert legend.get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0


def test_recovery_curves_draw_the_runs_baselines_as_levels():
    frame = pd.DataFrame({"epoch": np.arange(4), "fine/test/kmeans_per_coarse_acc": [0.6, 0.7, 0.8, 0.75]})
    plain = plot_recovery_curves(frame)
    frame["baseline/input/test/kmeans_per_coarse_acc"] = 0.62
    frame["baseline/init/test/kmeans_per_coarse_acc"] = 0.66
    fig = plot_recovery_curves(frame)
    levels = {line.get_label(): set(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert levels["pixels (test)"] == {0.62} and levels["untrained network (test)"] == {0.66}
    assert not any("pixels" in line.get_label() for line in plain.axes[0].get_lines())


def test_pca_panels_name_the_classes_when_names_are_given(tmp_path):
    fine = torch.arange(4).repeat_interleave(10)
    coarse = fine % 2
    h = torch.randn(40, 8)
    names = {
        "coarse_names": ["airplane+bird", "automobile+cat"],
        "fine_names": ["airplane", "automobile", "bird", "cat"],
    }
    fig = plot_pca(h, coarse, fine, tmp_path / "pca.png", **names)
    assert [ax.get_title() for ax in fig.axes] == names["coarse_names"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["airplane", "bird"]
    plain = plot_pca(h, coarse, fine)  # without names: ids
    assert [ax.get_title() for ax in plain.axes] == ["superclass 0", "superclass 1"]


def test_cli_with_several_runs_and_one_out_dir_keeps_each_run_apart(tmp_path):
    from ncfine.plot import main

    for name, nc4 in (("run_a", [0.3, 0.1]), ("run_b", [0.2, 0.0])):
        (tmp_path / name).mkdir()
        nc_metrics(nc4).to_csv(tmp_path / name / "metrics.csv", index=False)
    main([str(tmp_path / "run_a"), str(tmp_path / "run_b"), "--out", str(tmp_path / "plots")])
    assert (tmp_path / "plots" / "run_a" / "nc_curves.png").exists()
    assert (tmp_path / "plots" / "run_b" / "nc_curves.png").exists()
    main([str(tmp_path / "run_a"), "--out", str(tmp_path / "single")])  # one run: straight into --out
    assert (tmp_path / "single" / "nc_curves.png").exists()
