"""Fine recovery on the training split as well as the test split (issue #28: the paper's point is
that the *training* features collapse and still hold the fine classes): the keys per split, the
probes once, one eval pass per split shared with the NC callback, and the train column of the
run's final table."""

from functools import partial

import pandas as pd
import pytorch_lightning as pl
import torch

from conftest import FAST, quiet_trainer
from ncfine.api import compose, train
from ncfine.callbacks import FineRecoveryCallback, NeuralCollapseCallback
from ncfine.callbacks.feature_store import FeatureStore
from ncfine.collect import collect
from ncfine.data import HierarchicalDataModule
from ncfine.data.sources import DigitsSource
from ncfine.models import CoarseClassifier
from ncfine.results.report import format_summary

TRAIN_CAP = 200  # the same fixed training subset for both callbacks, as conf/callbacks/analysis.yaml keeps them


class CountPasses(pl.Callback):
    """After the analysis callbacks: how many analysis passes the epoch ran, and which split each was."""

    def __init__(self):
        self.extractions, self.cached = [], []

    def on_train_epoch_end(self, trainer, pl_module):
        store = FeatureStore.of(trainer)
        self.extractions.append(store.extractions)
        self.cached.append(sorted(store._features))


def test_train_and_test_recovery_share_the_nc_callbacks_passes(tmp_path):
    torch.manual_seed(0)
    model = CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.05), in_chans=3, img_size=16)
    datamodule = HierarchicalDataModule(
        DigitsSource(image_size=16), hierarchy="mod:5", batch_size=64, eval_batch_size=128, augment=False
    )
    caps = {"train": TRAIN_CAP, "test": None}
    nc = NeuralCollapseCallback(splits=["train", "test"], fine=False, max_samples_per_split=caps)
    recovery = FineRecoveryCallback(
        splits=["train", "test"], max_samples_per_split=caps, kmeans_backend="torch", kmeans_n_init=2
    )
    passes = CountPasses()
    trainer = quiet_trainer(tmp_path, [nc, recovery, passes])
    trainer.fit(model, datamodule=datamodule)

    # One analysis pass in all: the 200-image training subset, asked for by both callbacks; the
    # test split's features are validation's own.
    assert passes.extractions == [1]
    assert passes.cached == [[("test", None), ("train", TRAIN_CAP)]]

    metrics = recovery.last_metrics
    per_split = {
        f"fine/{s}/kmeans_{m}_{n}"
        for s in ("train", "test")
        for m in ("per_coarse", "global")
        for n in ("acc", "nmi", "ari")
    }
    # The fine labels reconstructed inside the head's predicted superclasses, per split too.
    per_split |= {f"fine/{s}/reconstructed_acc" for s in ("train", "test")}
    # k-means per split; the probe and k-NN (fit on train, scored on test) once, not per split.
    assert set(metrics) == per_split | {"fine/probe_acc", "fine/knn_acc"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in metrics if k.endswith("_acc"))
    # The two splits are different features: their recoveries are separate numbers.
    assert metrics["fine/train/kmeans_per_coarse_acc"] != metrics["fine/test/kmeans_per_coarse_acc"]

    # The final table of the run prints both columns of the recovery rows.
    table = format_summary({"status": "completed", "metrics": {**nc.last_metrics, **metrics}, "config": {}})
    [row] = [line for line in table.splitlines() if line.startswith("fine/{s}/kmeans_per_coarse_acc")]
    train_cell, test_cell = row.split()[-2:]
    assert float(train_cell) == round(metrics["fine/train/kmeans_per_coarse_acc"], 4)
    assert float(test_cell) == round(metrics["fine/test/kmeans_per_coarse_acc"], 4)


def test_a_composed_run_logs_train_recovery_and_collect_draws_its_trajectory(tmp_path):
    # The whole path: the config's splits -> metrics.csv / results.json -> ncfine-collect.
    overrides = [*FAST, "logger=none", "callbacks.fine_recovery.splits=[train,test]", "callbacks.plots=null"]
    results = train(compose(overrides, run_dir=tmp_path / "sweep" / "seed=0"))
    assert results["status"] == "completed", results["error"]
    for split in ("train", "test"):
        assert 0.0 <= results["metrics"][f"fine/{split}/kmeans_per_coarse_acc"] <= 1.0
    rows = pd.read_csv(tmp_path / "sweep" / "seed=0" / "metrics.csv")
    assert rows["fine/train/kmeans_per_coarse_acc"].notna().sum() == 2  # analysed every epoch

    collected = collect(str(tmp_path / "sweep"))
    # nothing left out of the trajectory; one run is one lr x wd cell: a table row, not a heatmap
    [note] = collected["notes"]
    assert note.startswith("no heatmaps of resnet10t: one lr x wd cell"), note
    [row] = collected["table"].to_dict("records")
    assert row["fine/train/kmeans_per_coarse_acc"] == results["metrics"]["fine/train/kmeans_per_coarse_acc"]
    assert tmp_path / "sweep" / "trajectory_resnet10t.png" in collected["files"]
