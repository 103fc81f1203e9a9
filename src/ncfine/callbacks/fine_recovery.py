"""Fine-class recovery from coarse-trained features every n epochs (Yang, Steinhardt & Hu 2023)."""

from __future__ import annotations

from typing import Mapping, Sequence

from ncfine.analysis.recovery import NORMALIZERS
from ncfine.analysis.training_keys import probe_keys, recovery_keys
from ncfine.callbacks.epoch_analysis import EpochAnalysisCallback
from ncfine.utils.errors import ConfigError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)

VALID_MODES = ("per_coarse", "global")


class FineRecoveryCallback(EpochAnalysisCallback):
    """Logs how much fine-class structure survives in the features:

    - `fine/<split>/kmeans_<mode>_{acc,nmi,ari}`: k-means per coarse class (the paper's protocol:
      k = number of fine classes in the coarse class) or globally (k = number of fine classes),
      scored by Hungarian-matched accuracy, NMI and ARI;
    - `fine/probe_acc`: a linear probe of fine labels fit on train features, scored on test;
    - `fine/knn_acc`: cosine k-NN of test features against train features.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        splits: Sequence[str] = ("test",),
        max_samples: int | None = None,
        modes: Sequence[str] = VALID_MODES,
        normalize: str = "none",
        kmeans_backend: str = "auto",
        kmeans_n_init: int = 10,
        kmeans_max_iter: int = 100,
        probe: bool = True,
        probe_weight_decay: float = 1e-4,
        probe_max_iter: int = 100,
        knn: bool = True,
        knn_k: int = 20,
        seed: int = 0,
        max_samples_per_split: Mapping[str, int | None] | None = None,
    ):
        super().__init__(every_n_epochs, splits, max_samples, max_samples_per_split)
        bad = [m for m in modes if m not in VALID_MODES]
        if bad:
            raise ConfigError(f"unknown fine-recovery mode(s) {bad}; valid modes are {list(VALID_MODES)}")
        if normalize not in NORMALIZERS:
            # Checked here, not in the first epoch's fine_recovery call, so a typo fails before training.
            raise ConfigError(f"unknown fine-recovery normalize {normalize!r}; valid values are {list(NORMALIZERS)}")
        self.modes = tuple(modes)
        self.kmeans_kwargs = dict(
            normalize=normalize,
            kmeans_backend=kmeans_backend,
            kmeans_n_init=kmeans_n_init,
            kmeans_max_iter=kmeans_max_iter,
            seed=seed,
        )
        self.probe, self.knn = probe, knn
        self.probe_kwargs = dict(
            probe=probe, probe_weight_decay=probe_weight_decay, probe_max_iter=probe_max_iter, knn=knn, knn_k=knn_k
        )
        self._skip_logged = False

    def on_fit_start(self, trainer, pl_module) -> None:
        # Fail before the first epoch, not after it, when the backend cannot run here.
        from ncfine.analysis.kmeans import resolve_backend

        resolve_backend(self.kmeans_kwargs["kmeans_backend"])

    def required_splits(self, trainer) -> tuple[str, ...]:
        if trainer.datamodule.hierarchy.is_identity:
            return ()
        probes = ("train", "test") if (self.probe or self.knn) else ()
        return tuple(dict.fromkeys((*self.splits, *probes)))

    def compute(self, trainer, pl_module) -> dict[str, float]:
        hierarchy = trainer.datamodule.hierarchy
        if hierarchy.is_identity:
            if not self._skip_logged:
                log.info("fine recovery skipped: the data's coarse and fine labels are identical (no hidden classes)")
                self._skip_logged = True
            return {}
        metrics: dict[str, float] = {}
        for split in self.splits:
            feats = self.features(trainer, pl_module, split)
            metrics.update(
                recovery_keys(split, feats.h, feats.coarse, feats.fine, modes=self.modes, **self.kmeans_kwargs)
            )
        if self.probe or self.knn:
            train, test = self.features(trainer, pl_module, "train"), self.features(trainer, pl_module, "test")
            metrics.update(
                probe_keys(train.h, train.fine, test.h, test.fine, num_fine=hierarchy.num_fine, **self.probe_kwargs)
            )
        return metrics
