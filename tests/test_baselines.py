"""The baselines a recovery number is read against (issue #34): the same analysis of the inputs and
of the untrained network, measured once before training, under `baseline/<name>/...` keys.

Checked against independent computations: the input baseline from the raw uint8 images normalised
and pooled here by hand, the init baseline from the features of a copy of the initial weights."""

from functools import partial

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import FAST, quiet_trainer
from ncfine.analysis.baselines import baseline_key, baseline_metrics
from ncfine.analysis.recovery import reconstructed_fine_accuracy
from ncfine.analysis.training_keys import feature_metrics, predict_coarse, regroup_key
from ncfine.api import compose, train
from ncfine.callbacks.baselines import BaselinesCallback
from ncfine.data import HierarchicalDataModule
from ncfine.data.sources import DigitsSource
from ncfine.features import extract_features
from ncfine.models import CoarseClassifier
from ncfine.results.report import format_summary
from ncfine.utils.errors import ConfigError

SETTINGS = dict(kmeans_backend="torch", kmeans_n_init=2, probe_max_iter=30)


def test_baseline_keys_rename_the_training_keys():
    assert baseline_key("input", "fine/test/kmeans_per_coarse_acc") == "baseline/input/test/kmeans_per_coarse_acc"
    assert baseline_key("init", "nc/train/fine/nc1") == "baseline/init/train/fine/nc1"
    assert baseline_key("init", "fine/probe_acc") == "baseline/init/probe_acc"
    assert regroup_key("layer/layer3", "nc/train/nc1") == "layer/layer3/train/nc1"
    with pytest.raises(ValueError, match=r"unknown baseline 'pixels'; valid baselines are \['input', 'init'\]"):
        baseline_key("pixels", "nc/train/nc1")
    with pytest.raises(ValueError, match="not an nc/ or fine/ metric key"):
        baseline_key("input", "val/acc")


def test_baseline_metrics_are_the_training_metrics_of_the_same_features():
    torch.manual_seed(0)
    fine = torch.arange(200) % 4
    coarse = fine % 2
    # Fine classes 4 units apart along their own axis, coarse classes along another.
    h = torch.randn(200, 6) + 4.0 * F.one_hot(fine, 6).float()
    splits = {"train": (h[:120], coarse[:120], fine[:120]), "test": (h[120:], coarse[120:], fine[120:])}
    weight = torch.randn(2, 6)
    got = baseline_metrics(
        {"input": splits, "init": splits},
        classifiers={"init": (weight, None)},
        num_coarse=2,
        num_fine=4,
        recovery_splits=["train", "test"],
        **SETTINGS,
    )
    plain = feature_metrics(splits, num_coarse=2, num_fine=4, recovery_splits=["train", "test"], **SETTINGS)
    with_head = feature_metrics(
        splits, weight=weight, num_coarse=2, num_fine=4, recovery_splits=["train", "test"], **SETTINGS
    )
    assert {k: v for k, v in got.items() if k.startswith("baseline/input/")} == {
        baseline_key("input", k): v for k, v in plain.items()
    }
    assert {k: v for k, v in got.items() if k.startswith("baseline/init/")} == {
        baseline_key("init", k): v for k, v in with_head.items()
    }
    # The classifier-only metrics exist for the network with a head and not for the inputs.
    assert "baseline/init/test/nc3" in got and "baseline/input/test/nc3" not in got
    # Well separated fine classes: k-means per superclass finds them in the "inputs".
    assert got["baseline/input/test/kmeans_per_coarse_acc"] > 0.95


def _datamodule():
    return HierarchicalDataModule(
        DigitsSource(image_size=16), hierarchy="mod:5", batch_size=64, eval_batch_size=128, augment=False
    )


def _trainer(tmp_path, callbacks, **kwargs):
    return quiet_trainer(tmp_path, callbacks, limit_val_batches=0, **kwargs)


def test_the_callback_measures_the_inputs_and_the_initial_network_before_the_first_step(tmp_path):
    torch.manual_seed(0)
    model = CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.05), in_chans=3, img_size=16)
    initial = CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.05), in_chans=3, img_size=16)
    initial.load_state_dict(model.state_dict())
    datamodule = _datamodule()
    # input_size 8 < the 16 x 16 images: the inputs are average-pooled to 8 x 8 before flattening.
    callback = BaselinesCallback(
        nc_splits=["train", "test"], recovery_splits=["train", "test"], input_size=8, **SETTINGS
    )
    _trainer(tmp_path, [callback]).fit(model, datamodule=datamodule)
    assert callback.measured == ("input", "init")
    assert not torch.equal(model.head.weight, initial.head.weight)  # it trained after measuring

    # Independent reference: the raw uint8 images normalised and pooled here; the initial weights' features.
    mean, std = datamodule.normalization
    hierarchy = datamodule.hierarchy
    inputs, init = {}, {}
    for split in ("train", "test"):
        raw = datamodule.split(split)
        x = (raw.images.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        fine = raw.fine
        coarse = hierarchy.coarse_of(fine)
        inputs[split] = (F.adaptive_avg_pool2d(x, 8).flatten(1), coarse, fine)
        feats = extract_features(initial, datamodule.analysis_dataloader(split), torch.device("cpu"), split)
        init[split] = (feats.h, feats.coarse, feats.fine)
    options = dict(num_coarse=5, num_fine=10, recovery_splits=["train", "test"], **SETTINGS)
    expected_input = feature_metrics(inputs, **options)
    expected_init = feature_metrics(
        init, weight=initial.head.weight.detach(), bias=initial.head.bias.detach(), **options
    )
    got = callback.metrics
    for key, value in expected_input.items():
        assert got[baseline_key("input", key)] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for key, value in expected_init.items():
        assert got[baseline_key("init", key)] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert len(got) == len(expected_input) + len(expected_init)
    # Digits' pixels hold their fine classes: a recovery number is read against this, not against 0.5.
    assert got["baseline/input/test/kmeans_per_coarse_acc"] > 0.8

    # The reconstruction baselines: the same inputs and initial features, clustered inside the
    # superclasses the trained head predicts for the same samples.
    test = extract_features(model, datamodule.analysis_dataloader("test"), torch.device("cpu"), "test")
    predicted = predict_coarse(test.h, model.head.weight.detach(), model.head.bias.detach())
    got = callback.reconstruction_metrics({"test": (test.index, predicted)})
    assert set(got) == {"baseline/input/test/reconstructed_acc", "baseline/init/test/reconstructed_acc"}
    for name, features in (("input", inputs), ("init", init)):
        h, coarse, fine = features["test"]
        expected = reconstructed_fine_accuracy(h, predicted, coarse, fine, backend="torch", n_init=2)["acc"]
        assert got[f"baseline/{name}/test/reconstructed_acc"] == pytest.approx(expected, abs=1e-12), name


def test_baselines_do_not_change_training(tmp_path):
    losses = []
    for callbacks in ([], [BaselinesCallback(**SETTINGS)]):
        torch.manual_seed(0)
        model = CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.05), in_chans=3, img_size=16)
        datamodule = HierarchicalDataModule(DigitsSource(image_size=16), hierarchy="mod:5", batch_size=64, seed=0)
        trainer = _trainer(tmp_path, callbacks, max_steps=3)
        trainer.fit(model, datamodule=datamodule)
        losses.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*losses))


def test_bad_baseline_options_fail_in_one_line():
    with pytest.raises(
        ConfigError, match=r"unknown baseline\(s\) \['pixels'\]; valid baselines are \['input', 'init'\]"
    ):
        BaselinesCallback(baselines=["pixels"])
    with pytest.raises(ConfigError, match="input_size must be a positive integer, got 0"):
        BaselinesCallback(input_size=0)
    with pytest.raises(ConfigError, match=r"unknown analysis split\(s\) \['val'\]"):
        BaselinesCallback(recovery_splits=["val"])


def _fast_run(run_dir, *extra):
    overrides = [*FAST, "logger=none", "callbacks.plots=null", *extra]
    return train(compose(overrides, run_dir=run_dir))


def test_a_composed_run_carries_its_baselines_in_every_row_and_keeps_them_when_extended(tmp_path):
    run_dir = tmp_path / "run"
    first = _fast_run(run_dir)
    assert first["status"] == "completed", first["error"]
    # The baselines measured before training; the reconstruction's follow the epoch's predictions.
    baselines = _before_training(first["metrics"])
    for name in ("input", "init"):
        for key in ("test/kmeans_per_coarse_acc", "test/kmeans_global_acc", "probe_acc", "knn_acc", "train/nc1"):
            assert f"baseline/{name}/{key}" in baselines
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert len(rows) == 2
    for key, value in baselines.items():
        assert rows[key].tolist() == pytest.approx([value, value], rel=1e-12)
    # The final table shows them under each recovery row.
    table = format_summary(first)
    assert "  baseline: inputs" in table and "  baseline: untrained network" in table

    # Extended by one epoch: resumed from last.ckpt, whose weights are trained. The baselines are
    # the checkpoint's (those of this run's initialisation), not re-measured on the trained network;
    # the reconstruction baselines go on, from the inputs extracted again and the untrained features
    # kept in the checkpoint.
    extended = _fast_run(run_dir, "trainer.max_epochs=3")
    assert extended["status"] == "completed", extended["error"]
    assert extended["epochs_completed"] == 3
    assert _before_training(extended["metrics"]) == baselines
    rows = pd.read_csv(run_dir / "metrics.csv")
    for name in ("input", "init"):
        assert rows[f"baseline/{name}/test/reconstructed_acc"].notna().all()


def _before_training(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("baseline/") and not k.endswith("/reconstructed_acc")}


def test_a_run_resumed_from_a_checkpoint_without_baselines_measures_only_the_inputs(tmp_path, caplog):
    run_dir = tmp_path / "run"
    first = _fast_run(run_dir)
    assert first["status"] == "completed", first["error"]
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    ckpt["callbacks"] = {k: v for k, v in ckpt["callbacks"].items() if "BaselinesCallback" not in k}
    torch.save(ckpt, ckpt_path)
    with caplog.at_level("WARNING"):
        extended = _fast_run(run_dir, "trainer.max_epochs=3")
    assert extended["status"] == "completed", extended["error"]
    metrics = extended["metrics"]
    assert (
        metrics["baseline/input/test/kmeans_per_coarse_acc"]
        == first["metrics"]["baseline/input/test/kmeans_per_coarse_acc"]
    )
    assert not any(k.startswith("baseline/init/") for k in metrics)
    assert "the init baseline needs the initial weights and is not measured" in caplog.text


def test_baselines_can_be_turned_off_from_the_top_level_key(tmp_path):
    results = _fast_run(tmp_path / "run", "analysis.baselines=[]")
    assert results["status"] == "completed", results["error"]
    assert not any(k.startswith("baseline/") for k in results["metrics"])
