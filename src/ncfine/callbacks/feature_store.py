"""`FeatureStore`: one eval pass per split and epoch, shared by every analysis callback.

The pass itself is `ncfine.features.extract_features` (gathered over DDP ranks, padding
duplicates dropped, sorted by sample index); this per-trainer cache makes the first callback
that asks for (epoch, split, subset) extract it and the others reuse it.

Validation already runs the test split through the network in eval mode every epoch; when its
loader is the analysis pass of that split (`datamodule.val_split()`), the validation step returns
its penultimate features and `FeatureStore` keeps them, so the test split is not forwarded a
second time. They are used only when they are the features the analysis pass would give, bit
for bit: the same autocast (precision), no optimizer step since the validation (`global_step`),
and, after the same gather and dedupe, every sample of the split (`limit_val_batches` or a
validation schedule that skipped the epoch fall back to the analysis pass).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch

from ncfine.features import Features, extract_features, extraction_autocast, gather_unique, subset_indices, subset_mask
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)


@dataclass
class _Capture:
    """The features one validation run handed over, batch by batch, on this rank."""

    owner: object
    split: str
    epoch: int
    global_step: int
    batches: list = field(default_factory=list)
    broken: str | None = None  # why these batches cannot stand in for the analysis pass


class FeatureStore:
    """Per-trainer cache: the first callback that asks for (epoch, split, subset) extracts, the rest reuse.

    A subset (`max_samples`) is taken from the whole split's features when those are already
    there (extracted, or captured during validation: see the module docstring), else only the
    subset is run through the model. Holds only the current epoch's features, so memory does not
    grow over training.
    """

    _stores: weakref.WeakKeyDictionary[object, FeatureStore] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._features: dict[tuple[str, int | None], Features] = {}
        self._capture: _Capture | None = None
        self._said: set[str] = set()
        self.extractions = 0  # analysis passes run (a test can count forward passes saved)

    @classmethod
    def of(cls, trainer) -> FeatureStore:
        store = cls._stores.get(trainer)
        if store is None:
            store = cls._stores[trainer] = cls()
        return store

    def _new_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch, self._features = epoch, {}
            if self._capture is not None and self._capture.epoch != epoch:
                self._capture = None

    def get(self, trainer, pl_module, split: str, max_samples: int | None = None) -> Features:
        self._new_epoch(trainer.current_epoch)
        datamodule = trainer.datamodule
        split_size = datamodule.split_size(split)
        indices = subset_indices(split_size, max_samples)
        key = (split, None if indices is None else len(indices))
        if key in self._features:
            return self._features[key]
        whole = self._features.get((split, None))
        if whole is None:
            whole = self._take_capture(trainer, split, split_size)
            if whole is not None:
                self._features[(split, None)] = whole
        if whole is not None:
            keep = subset_mask(whole.index, split_size, max_samples)
            feats = Features(split, whole.h[keep], whole.coarse[keep], whole.fine[keep], whole.index[keep])
        else:
            device = pl_module.device
            loader = datamodule.analysis_dataloader(split, indices=indices)
            feats = extract_features(pl_module, loader, device, split, extraction_autocast(trainer, device))
            self.extractions += 1
        self._features[key] = feats
        return feats

    # ---- features captured during validation ---------------------------------------------------
    def begin_capture(self, owner, trainer, pl_module, split: str = "test") -> None:
        """Keep this validation's features of `split` (called at validation start; the first caller
        of a validation run feeds the batches, later callers are no-ops)."""
        if trainer.sanity_checking:
            return  # a few batches of an untrained model, before epoch 0 trains
        self._new_epoch(trainer.current_epoch)
        current = self._capture
        if (
            current is not None
            and (current.epoch, current.global_step) == (trainer.current_epoch, trainer.global_step)
            and current.owner is not owner
        ):
            return
        self._capture = _Capture(owner, split, trainer.current_epoch, trainer.global_step)
        self._capture.broken = _capture_refusal(trainer, pl_module, split)

    def capture_batch(self, owner, outputs, batch, dataloader_idx: int = 0) -> None:
        """One validation batch `(image, coarse, fine, index)` and what `validation_step` returned."""
        capture = self._capture
        if capture is None or capture.owner is not owner or capture.broken or dataloader_idx != 0:
            return
        h = outputs.get("features") if isinstance(outputs, dict) else None
        if not isinstance(h, torch.Tensor):
            capture.broken = "validation_step returns no 'features'"
            capture.batches.clear()
            return
        _, coarse, fine, index = batch[:4]
        # .float() as extract_features does: the stored features are float32 under bf16 autocast too.
        capture.batches.append((h.detach().float(), coarse, fine, index))

    def _take_capture(self, trainer, split: str, split_size: int) -> Features | None:
        """The captured features of `split` when they can stand in for the analysis pass, else None.

        Every rank decides alike (the checks read only what all ranks share, and coverage is judged
        after the gather), so either all of them gather or none does."""
        capture = self._capture
        if capture is None or capture.split != split:
            return None
        self._capture = None  # taken once: the whole split's features are cached from here on
        if capture.broken is None and capture.global_step != trainer.global_step:
            capture.broken = "the model trained after the last validation of the epoch"
        if capture.broken is None and not capture.batches:
            capture.broken = "validation ran no batches"
        if capture.broken is not None:
            self._say(
                f"analysis: the {split} split is extracted again (validation features unusable: {capture.broken})"
            )
            return None
        h, coarse, fine, index = (torch.cat(parts) for parts in zip(*capture.batches))
        whole = gather_unique(Features(split, h, coarse.long(), fine.long(), index.long()))
        if len(whole) != split_size:
            self._say(
                f"analysis: the {split} split is extracted again (validation covered {len(whole)} of its "
                f"{split_size} samples, e.g. limit_val_batches)"
            )
            return None
        self._say(f"analysis: {split} features taken from validation (no second forward pass)")
        return whole

    def _say(self, message: str) -> None:
        if message not in self._said:  # once per fit, not every epoch
            self._said.add(message)
            log.info(message)


_UNKNOWN = object()


def _validation_autocast(precision: str, device: torch.device):
    """The autocast dtype Lightning's precision plugin runs `validation_step` under; `_UNKNOWN` for
    precisions that also cast weights or inputs (e.g. bf16-true), which the analysis pass does not."""
    if precision in ("32-true", "32"):
        return None
    if precision == "bf16-mixed":
        return torch.bfloat16
    if precision == "16-mixed":
        return torch.float16
    return _UNKNOWN


def _capture_refusal(trainer, pl_module, split: str) -> str | None:
    """Why this validation's features of `split` may differ from the analysis pass's (None: they do not)."""
    datamodule = trainer.datamodule
    val_split = getattr(datamodule, "val_split", None)
    if not callable(val_split) or val_split() != split:
        return f"the validation loader is not the analysis pass of the {split} split"
    precision = str(getattr(trainer, "precision", ""))
    device = pl_module.device
    if _validation_autocast(precision, device) != extraction_autocast(trainer, device):
        return f"precision {precision} on {device.type} validates under another autocast than the analysis pass"
    return None
