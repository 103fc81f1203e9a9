"""The test split's features come from validation when validation covers it, bit for bit the ones the
analysis pass would extract, and the analysis pass runs again whenever they could differ."""

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from conftest import quiet_trainer
from ncfine.callbacks import NeuralCollapseCallback
from ncfine.callbacks import feature_store as features_module
from ncfine.callbacks.feature_store import FeatureStore
from ncfine.data import HierarchicalDataModule
from ncfine.data.sources import DigitsSource
from ncfine.features import extract as extract_module
from ncfine.features import extract_features
from ncfine.models import CoarseClassifier


class CompareWithExtraction(pl.Callback):
    """After the analysis callbacks: the store's whole-test-split features against a fresh analysis pass."""

    def __init__(self):
        self.checked = []

    def on_train_epoch_end(self, trainer, pl_module):
        store = FeatureStore.of(trainer)
        cached = store._features[("test", None)]
        loader = trainer.datamodule.analysis_dataloader("test")
        fresh = extract_features(
            pl_module, loader, pl_module.device, "test", features_module.extraction_autocast(trainer, pl_module.device)
        )
        for name in ("h", "coarse", "fine", "index"):
            a, b = getattr(cached, name), getattr(fresh, name)
            assert a.dtype == b.dtype and torch.equal(a, b), name
        self.checked.append(store.extractions)


def fit(tmp_path, epochs=1, resident=False, **trainer_kwargs):
    torch.manual_seed(0)
    model = CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.05), in_chans=3, img_size=16)
    datamodule = HierarchicalDataModule(
        DigitsSource(image_size=16),
        hierarchy="mod:5",
        batch_size=64,
        eval_batch_size=100,
        augment=False,
        device_resident=resident,
    )
    compare = CompareWithExtraction()
    nc = NeuralCollapseCallback(splits=["test"], fine=False)
    trainer = quiet_trainer(tmp_path, [nc, compare], max_epochs=epochs, num_sanity_val_steps=1, **trainer_kwargs)
    trainer.fit(model, datamodule=datamodule)
    return compare.checked


@pytest.mark.parametrize("resident", [False, True], ids=["dataloader", "device_loader"])
def test_validation_features_replace_the_test_pass_bit_for_bit(tmp_path, resident):
    # Whole test split validated (the sanity check's partial pass is not kept): no analysis pass at all.
    assert fit(tmp_path, resident=resident) == [0]


def test_partial_validation_falls_back_to_the_analysis_pass(tmp_path):
    # 2 of 4 test batches validated: the capture covers 200 of 360 samples and is not used.
    assert fit(tmp_path, limit_val_batches=2) == [1]


@pytest.mark.slow
def test_an_epoch_without_validation_extracts(tmp_path):
    # Validation every 2nd epoch: epoch 0 extracts, epoch 1 reuses validation's features.
    assert fit(tmp_path, epochs=2, check_val_every_n_epoch=2) == [1, 1]


@pytest.mark.slow
def test_bf16_on_cpu_takes_validations_features(tmp_path):
    # The CPU fast path: validation and the analysis pass both run under CPU bf16 autocast, so the
    # captured features are taken and equal a bf16 analysis pass bit for bit (CompareWithExtraction).
    assert fit(tmp_path, precision="bf16-mixed") == [0]


@pytest.mark.slow
def test_another_autocast_is_not_taken(tmp_path, monkeypatch):
    # Were the analysis pass float32 on CPU (bf16 analysis on CUDA only), validation's bf16 features
    # would not be its features: extracted again.
    monkeypatch.setattr(extract_module, "BF16_ANALYSIS_DEVICES", ("cuda",))
    assert fit(tmp_path, precision="bf16-mixed") == [1]


def test_capture_is_refused_after_an_optimizer_step_and_for_other_precisions():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    trainer = lambda precision: SimpleNamespace(precision=precision)  # noqa: E731
    extraction = features_module.extraction_autocast
    validation = features_module._validation_autocast
    for device in (cuda, cpu):
        assert validation("bf16-mixed", device) == extraction(trainer("bf16-mixed"), device) == torch.bfloat16
        assert validation("32-true", device) is extraction(trainer("32-true"), device) is None
    for precision, device in (("16-mixed", cuda), ("bf16-true", cuda), ("bf16-true", cpu), ("64-true", cpu)):
        assert validation(precision, device) != extraction(trainer(precision), device), (precision, device)

    # Validation mid-epoch (val_check_interval < 1): the model trained on afterwards, so not taken.
    store, owner = FeatureStore(), object()
    module = SimpleNamespace(device=cpu)
    datamodule = SimpleNamespace(val_split=lambda: "test", split_size=lambda split: 3)
    run = SimpleNamespace(
        sanity_checking=False, current_epoch=0, global_step=5, precision="32-true", datamodule=datamodule
    )
    store.begin_capture(owner, run, module)
    batch = (None, torch.zeros(3), torch.zeros(3), torch.arange(3))
    store.capture_batch(owner, {"features": torch.ones(3, 2)}, batch)
    run.global_step = 6
    assert store._take_capture(run, "test", 3) is None
    run.global_step = 5
    store.begin_capture(owner, run, module)
    store.capture_batch(owner, {"features": torch.ones(3, 2)}, batch)
    assert len(store._take_capture(run, "test", 3)) == 3


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_keep_the_gathered_validation_features(tmp_path):
    job = Path(__file__).with_name("ddp_capture_job.py")
    proc = subprocess.run([sys.executable, str(job), "2", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # Every rank holds all 360 test samples once (gathered, deduplicated), equal to the
        # gathered analysis pass, and no analysis pass ran for the test split.
        # And train/loss, train/acc are the means over both ranks' 2 x 2 x 64 training samples.
        assert result == {"equal": True, "rows": 360, "extractions": 0, "train_means_match": True}, (rank, result)


def test_per_split_caps_combine_with_max_samples_and_reject_bad_values():
    from ncfine.callbacks import FineRecoveryCallback
    from ncfine.utils.errors import ConfigError

    cb = NeuralCollapseCallback(max_samples_per_split={"train": 10000, "test": None})
    assert (cb.samples_cap("train"), cb.samples_cap("test")) == (10000, None)
    # The old key still works and the smaller cap wins.
    cb = FineRecoveryCallback(max_samples=200, max_samples_per_split={"train": 10000})
    assert (cb.samples_cap("train"), cb.samples_cap("test")) == (200, 200)
    for bad, message in (
        ({"val": 5}, "unknown split"),
        ({"train": 0}, "max_samples_per_split.train must be"),
        ({"test": 2.5}, "max_samples_per_split.test must be"),
    ):
        with pytest.raises(ConfigError, match=message):
            NeuralCollapseCallback(max_samples_per_split=bad)
