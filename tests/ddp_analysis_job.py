"""One epoch of analysis of a fixed model on 1 or 2 CPU processes (gloo, ddp_spawn).

    python tests/ddp_analysis_job.py DEVICES CHECKPOINT RUN_DIR

The model's weights are put back from CHECKPOINT right before the analysis callbacks run, so a
1-process and a 2-process run analyse the same model; rank 0 writes RUN_DIR/metrics.csv (float
reprs, exact) and the CSV logger's RUN_DIR/csv/metrics.csv.
Used by tests/test_ddp.py (a script, not a test module: ddp_spawn needs a __main__ guard).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from ncfine.callbacks import FineRecoveryCallback, NeuralCollapseCallback
from ncfine.callbacks.baselines import BaselinesCallback
from ncfine.callbacks.layerwise import LayerwiseCallback
from ncfine.callbacks.run_files import RunFilesCallback
from ncfine.data import HierarchicalDataModule
from ncfine.data.sources import DigitsSource
from ncfine.models import CoarseClassifier

# Odd sizes on purpose: DistributedSampler pads 1437 train samples and the 201-sample test subset
# with duplicates, which the analysis has to drop.
TEST_SUBSET = 201


class RestoreWeights(pl.Callback):
    """Loads the fixed weights before the analysis callbacks (it is listed first)."""

    def __init__(self, state_dict: dict):
        self.weights = state_dict

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.load_state_dict(self.weights)


def build_model() -> CoarseClassifier:
    return CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.01), in_chans=3, img_size=16)


def build_datamodule() -> HierarchicalDataModule:
    return HierarchicalDataModule(
        DigitsSource(image_size=16),
        hierarchy="mod:5",
        batch_size=64,
        eval_batch_size=100,
        augment=False,
        device_resident=False,
    )


def main(devices: int, checkpoint: str, run_dir: str) -> None:
    pl.seed_everything(0, workers=True, verbose=False)
    state = torch.load(checkpoint, map_location="cpu")
    run_dir = Path(run_dir)
    nc = NeuralCollapseCallback(splits=["train", "test"])
    fine = FineRecoveryCallback(splits=["test"], max_samples=TEST_SUBSET, kmeans_backend="torch", kmeans_n_init=3)
    # Layer-wise: its own one-pass extraction of two layers, gathered over ranks the same way.
    layers = LayerwiseCallback(
        every_n_epochs=1,
        max_samples=TEST_SUBSET,
        layers=["layer2", "penultimate"],
        kmeans_backend="torch",
        kmeans_n_init=3,
    )
    # Before the first step, on the initial weights (seeded above, so the same in both runs).
    baselines = BaselinesCallback(max_samples=TEST_SUBSET, kmeans_backend="torch", kmeans_n_init=3)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RestoreWeights(state), nc, fine, layers, baselines, RunFilesCallback(run_dir)],
        logger=CSVLogger(run_dir, name="csv", version=""),
        default_root_dir=run_dir,
    )
    trainer.fit(build_model(), datamodule=build_datamodule())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
