"""The run's plots at the end of training, in RUN_DIR/plots/ and in the loggers that take images.

- last epoch: `pca_<split>.png`, the 2-D PCA of the split's features per superclass coloured by
  fine class. The features come from the shared `FeatureStore`, so when an analysis callback
  already extracted this split this epoch (the default: fine recovery runs on `test` at the last
  epoch), the plot costs no extra eval pass.
- end of fit: `nc_curves.png` and `recovery_curves.png` from metrics.csv (the same as
  `ncfine-plot RUN_DIR`), then every PNG is logged as an image to loggers with `log_image`
  (W&B), under the key `plots/<name>`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from ncfine.callbacks.feature_store import FeatureStore
from ncfine.utils.errors import ConfigError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)


class PlotsCallback(pl.Callback):
    """Writes `run_dir/plots/*.png` at the end of training and logs them as images.

    `pca_split`: the split whose last-epoch features are plotted (null: no PCA);
    `max_samples`: a fixed random subset of that split for the PCA; `save_features`: also save
    them as `run_dir/features_<split>.pt` (h, coarse, fine) so `ncfine-plot` can redraw the PCA.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        pca_split: str | None = "test",
        max_samples: int | None = 2000,
        save_features: bool = False,
        log_images: bool = True,
    ):
        if pca_split not in (None, "train", "test"):
            raise ConfigError(f"callbacks.plots.pca_split must be train, test or null, got {pca_split!r}")
        if max_samples is not None and max_samples <= 0:
            raise ConfigError(f"callbacks.plots.max_samples must be positive or null, got {max_samples!r}")
        self.run_dir = Path(run_dir)
        self.plot_dir = self.run_dir / "plots"
        self.pca_split = pca_split
        self.max_samples = max_samples
        self.save_features = save_features
        self.log_images = log_images

    @staticmethod
    def _is_last_epoch(trainer: pl.Trainer) -> bool:
        max_epochs = trainer.max_epochs
        return trainer.should_stop or (
            max_epochs is not None and max_epochs > 0 and trainer.current_epoch + 1 >= max_epochs
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pca_split is None or trainer.sanity_checking or not self._is_last_epoch(trainer):
            return
        if not callable(getattr(pl_module, "features", None)) or trainer.datamodule is None:
            return
        # Every rank takes part in the extraction (it gathers over ranks); rank 0 draws. The
        # features are shared with the analysis callbacks when they use the same max_samples.
        feats = FeatureStore.of(trainer).get(trainer, pl_module, self.pca_split, self.max_samples)
        if not trainer.is_global_zero:
            return
        h, coarse, fine = feats.h, feats.coarse, feats.fine
        from ncfine.plot import plot_pca, short_name

        hierarchy = getattr(trainer.datamodule, "hierarchy", None)
        names = {
            "coarse_names": getattr(hierarchy, "coarse_names", None),
            "fine_names": getattr(hierarchy, "fine_names", None),
        }
        plot_pca(
            h,
            coarse,
            fine,
            self.plot_dir / f"pca_{self.pca_split}.png",
            title=f"{short_name(self.run_dir)}: {self.pca_split} features, epoch {trainer.current_epoch}",
            **names,
        )
        if self.save_features:
            torch.save(
                {"h": h.cpu(), "coarse": coarse.cpu(), "fine": fine.cpu(), "epoch": trainer.current_epoch, **names},
                self.run_dir / f"features_{self.pca_split}.pt",
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from ncfine.plot import render_run

        try:
            render_run(self.run_dir, self.plot_dir)
        except FileNotFoundError:  # no epoch finished: nothing to plot
            return
        if self.log_images:
            self.log_plots(trainer)

    def log_plots(self, trainer: pl.Trainer) -> None:
        """Every PNG in plots/ to each logger that takes images (WandbLogger.log_image)."""
        images = sorted(self.plot_dir.glob("*.png"))
        for logger in trainer.loggers:
            if not callable(getattr(logger, "log_image", None)):
                continue
            for path in images:
                try:
                    logger.log_image(key=f"plots/{path.stem}", images=[str(path)])
                except Exception as exc:  # noqa: BLE001 - a plot upload must not fail a finished run
                    log.warning(f"could not log {path.name} to {type(logger).__name__}: {exc}")
