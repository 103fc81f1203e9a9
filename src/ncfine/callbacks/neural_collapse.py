"""NC1-NC4 of the penultimate features every n epochs (Papyan, Han & Donoho 2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ncfine.analysis.training_keys import collapse_keys
from ncfine.callbacks.epoch_analysis import EpochAnalysisCallback


class NeuralCollapseCallback(EpochAnalysisCallback):
    """Logs `nc/<split>/<metric>` against the coarse (training) labels and the classifier head, and,
    with `fine=True`, `nc/<split>/fine/<metric>` against the fine labels (no classifier: the head
    only knows coarse classes), since how collapsed the fine classes are is the point of the study.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        splits: Sequence[str] = ("train", "test"),
        max_samples: int | None = None,
        fine: bool = True,
        max_samples_per_split: Mapping[str, int | None] | None = None,
    ):
        super().__init__(every_n_epochs, splits, max_samples, max_samples_per_split)
        self.fine = fine

    def compute(self, trainer, pl_module) -> dict[str, float]:
        head = pl_module.head
        weight = head.weight.detach()
        bias = head.bias.detach() if head.bias is not None else None
        hierarchy = trainer.datamodule.hierarchy
        metrics: dict[str, float] = {}
        with_fine = self.fine and not hierarchy.is_identity
        for split in self.splits:
            feats = self.features(trainer, pl_module, split)
            metrics.update(
                collapse_keys(
                    split,
                    feats.h,
                    feats.coarse,
                    feats.fine if with_fine else None,
                    weight=weight,
                    bias=bias,
                    num_coarse=hierarchy.num_coarse,
                    num_fine=hierarchy.num_fine,
                )
            )
        return metrics
