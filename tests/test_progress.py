"""The progress display: one line per epoch when stdout is not a terminal, tqdm's bar on one."""

import io
import re

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, TensorDataset

from ncfine.callbacks.progress import EpochLinesProgressBar, epoch_line, progress_bar
from ncfine.utils.errors import ConfigError


class TinyClassifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, _):
        x, y = batch
        logits = self.layer(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        self.log("train/lr", 0.1, on_step=False, on_epoch=True)  # neither loss nor accuracy: not printed
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self.layer(x)
        self.log("val/loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(callback, max_epochs=3):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        callbacks=[callback],
    )
    trainer.fit(TinyClassifier(), data, data)
    return trainer


def test_one_line_per_epoch_with_losses_accuracies_and_seconds():
    stream = io.StringIO()
    trainer = _fit(EpochLinesProgressBar(stream=stream))
    assert trainer.progress_bar_callback is not None
    assert not any(isinstance(cb, TQDMProgressBar) for cb in trainer.callbacks)  # no second bar from Lightning
    out = stream.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3, out
    pattern = (
        r"epoch (\d)/3  train/acc (\d\.\d{4})  train/loss (\d\.\d{4})  val/acc (\d\.\d{4})  "
        r"val/loss (\d\.\d{4})  (\d+\.\d) s"
    )
    matches = [re.fullmatch(pattern, line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    # The numbers are this epoch's: the last line holds the values Lightning ended with.
    final = trainer.callback_metrics
    assert float(matches[-1].group(4)) == pytest.approx(float(final["val/acc"]), abs=1e-4)
    assert float(matches[-1].group(3)) == pytest.approx(float(final["train/loss"]), abs=1e-4)


def test_refresh_rate_zero_prints_nothing():
    stream = io.StringIO()
    _fit(EpochLinesProgressBar(refresh_rate=0, stream=stream), max_epochs=1)
    assert stream.getvalue() == ""


def test_auto_mode_picks_the_bar_only_on_a_terminal():
    assert type(progress_bar("auto", is_terminal=True)) is TQDMProgressBar
    assert type(progress_bar("auto", is_terminal=False)) is EpochLinesProgressBar
    assert type(progress_bar("lines", refresh_rate=0)).__name__ == "EpochLinesProgressBar"
    assert progress_bar("bar", refresh_rate=5).refresh_rate == 5
    with pytest.raises(ConfigError, match=r"callbacks.progress_bar.mode must be one of auto, bar, lines; got 'tqdm'"):
        progress_bar("tqdm")


def test_epoch_line_without_validation_or_max_epochs():
    assert epoch_line(0, -1, {"train/loss": 0.5}, 1.25) == "epoch 1  train/loss 0.5000  1.2 s"
