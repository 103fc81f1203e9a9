"""Fine-class recovery from coarse-trained features every n epochs (Yang, Steinhardt & Hu 2023)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ncfine.analysis.settings import RecoverySettings
from ncfine.analysis.training_keys import predict_coarse, probe_keys, recovery_keys
from ncfine.callbacks.baselines import BaselinesCallback
from ncfine.callbacks.epoch_analysis import EpochAnalysisCallback
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)


class FineRecoveryCallback(EpochAnalysisCallback):
    """Logs how much fine-class structure survives in the features:

    - `fine/<split>/kmeans_<mode>_{acc,nmi,ari}`: k-means per coarse class (the paper's protocol:
      k = number of fine classes in the coarse class) or globally (k = number of fine classes),
      scored by Hungarian-matched accuracy, NMI and ARI;
    - `fine/<split>/reconstructed_acc` (with a linear head): the fine labels reconstructed end to
      end, k-means inside each superclass the head predicts, scored 10-way; beside it, with the
      baselines callback, `baseline/<input|init>/<split>/reconstructed_acc`: the inputs and the
      untrained features clustered inside the same predicted superclasses;
    - `fine/probe_acc`: a linear probe of fine labels fit on train features, scored on test;
    - `fine/knn_acc`: cosine k-NN of test features against train features.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        splits: Sequence[str] = ("test",),
        max_samples: int | None = None,
        max_samples_per_split: Mapping[str, int | None] | None = None,
        **recovery,
    ):
        """recovery: the options of `ncfine.analysis.settings.RecoverySettings` (modes, normalize,
        kmeans_*, probe*, knn*, seed), flat in `callbacks.fine_recovery` as in conf/recovery/default.yaml."""
        super().__init__(every_n_epochs, splits, max_samples, max_samples_per_split)
        self.settings = RecoverySettings.from_options(recovery, "callbacks.fine_recovery")
        self._skip_logged = False

    def on_fit_start(self, trainer, pl_module) -> None:
        # Fail before the first epoch, not after it, when the backend cannot run here.
        from ncfine.analysis.kmeans import resolve_backend

        resolve_backend(self.settings.kmeans_backend)

    def required_splits(self, trainer) -> tuple[str, ...]:
        if trainer.datamodule.hierarchy.is_identity:
            return ()
        probes = ("train", "test") if (self.settings.probe or self.settings.knn) else ()
        return tuple(dict.fromkeys((*self.splits, *probes)))

    def compute(self, trainer, pl_module) -> dict[str, float]:
        hierarchy = trainer.datamodule.hierarchy
        if hierarchy.is_identity:
            if not self._skip_logged:
                log.info(
                    "fine-label metrics skipped (recovery, fine NC): the training classes are the finest labels "
                    "this data has (hierarchy identity: coarse-only data, or training on the fine labels)"
                )
                self._skip_logged = True
            return {}
        metrics: dict[str, float] = {}
        head = pl_module.head
        reconstruct = self.settings.reconstruct and isinstance(head, torch.nn.Linear)
        predicted = {}
        for split in self.splits:
            feats = self.features(trainer, pl_module, split)
            if reconstruct:
                bias = head.bias.detach() if head.bias is not None else None
                predicted[split] = (feats.index, predict_coarse(feats.h, head.weight.detach(), bias))
            metrics.update(
                recovery_keys(
                    split,
                    feats.h,
                    feats.coarse,
                    feats.fine,
                    predicted=predicted[split][1] if reconstruct else None,
                    **self.settings.kmeans_options(),
                )
            )
        baselines = next((c for c in trainer.callbacks if isinstance(c, BaselinesCallback)), None)
        if predicted and baselines is not None:
            metrics.update(baselines.reconstruction_metrics(predicted))
        if self.settings.probe or self.settings.knn:
            train, test = self.features(trainer, pl_module, "train"), self.features(trainer, pl_module, "test")
            metrics.update(
                probe_keys(
                    train.h, train.fine, test.h, test.fine, num_fine=hierarchy.num_fine, **self.settings.probe_options()
                )
            )
        return metrics
