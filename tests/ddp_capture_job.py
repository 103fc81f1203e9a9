"""One epoch on 1 or 2 CPU processes (gloo, ddp_spawn): the test split's features kept from validation
against a fresh analysis pass, on every rank; and the logged train/loss and train/acc against the means
over all ranks' training samples, recomputed from the logits.

    python tests/ddp_capture_job.py DEVICES OUT_DIR

Each rank writes OUT_DIR/rank<r>.json: {"equal": bool, "rows": int, "extractions": int,
"train_means_match": bool}.
Used by tests/test_feature_capture.py (a script, not a test module: ddp_spawn needs a __main__ guard).
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch

from ncfine.callbacks import NeuralCollapseCallback
from ncfine.callbacks.feature_store import FeatureStore
from ncfine.data import HierarchicalDataModule
from ncfine.data.sources import DigitsSource
from ncfine.features import extract_features
from ncfine.models import CoarseClassifier


class Compare(pl.Callback):
    def __init__(self, out: Path):
        self.out = out
        self.logits = None
        self.sums = torch.zeros(3, dtype=torch.float64)  # this rank's loss sum, correct, samples

    def on_fit_start(self, trainer, pl_module):
        pl_module.head.register_forward_hook(lambda module, args, out: setattr(self, "logits", out.detach()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        target = batch[1]
        loss = torch.nn.functional.cross_entropy(self.logits.double(), target, reduction="sum")
        self.sums += torch.stack([loss, (self.logits.argmax(1) == target).sum().double(), torch.tensor(len(target))])

    def on_train_epoch_end(self, trainer, pl_module):
        store = FeatureStore.of(trainer)
        kept = store._features[("test", None)]
        fresh = extract_features(pl_module, trainer.datamodule.analysis_dataloader("test"), pl_module.device, "test")
        equal = all(torch.equal(getattr(kept, n), getattr(fresh, n)) for n in ("h", "coarse", "fine", "index"))
        loss, correct, count = trainer.strategy.reduce(self.sums.clone(), reduce_op="sum").tolist()
        logged = trainer.callback_metrics
        train_means_match = (
            abs(float(logged["train/loss"]) - loss / count) < 1e-5 * max(1.0, loss / count)
            and abs(float(logged["train/acc"]) - correct / count) < 1e-6
        )
        payload = {
            "equal": equal,
            "rows": len(kept),
            "extractions": store.extractions,
            "train_means_match": train_means_match,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(payload))


def main(devices: int, out: str) -> None:
    pl.seed_everything(0, workers=True, verbose=False)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = CoarseClassifier("resnet10t", 5, partial(torch.optim.SGD, lr=0.05), in_chans=3, img_size=16)
    # Each rank validates every 2nd of the 360 test images (Lightning's DistributedSampler), in
    # batches of 70 with a short last one; the capture is gathered and sorted back by index.
    datamodule = HierarchicalDataModule(
        DigitsSource(image_size=16),
        hierarchy="mod:5",
        batch_size=64,
        eval_batch_size=70,
        augment=False,
        device_resident=False,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_epochs=1,
        limit_train_batches=2,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        default_root_dir=out_dir,
        callbacks=[NeuralCollapseCallback(splits=["test"], fine=False), Compare(out_dir)],
    )
    trainer.fit(model, datamodule=datamodule)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
