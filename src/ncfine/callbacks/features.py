"""One eval pass per split and epoch, shared by every analysis callback.

The extracted `Features` are gathered over DDP ranks, the duplicates that DistributedSampler pads
in are dropped by sample index, and rows are sorted by index, so every rank holds the same tensors
as a single-process run.

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
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.distributed as dist

from ncfine.utils.errors import ConfigError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)


@dataclass(frozen=True)
class Features:
    """Penultimate features of one split with their labels, sorted by sample index."""

    split: str
    h: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return self.h.shape[0]


ANALYSIS_SPLITS = ("train", "test")


def check_sample_caps(max_samples, max_samples_per_split) -> dict[str, int | None]:
    """The per-split caps as a dict, after checking both settings (ConfigError naming the bad one)."""
    per_split = dict(max_samples_per_split or {})
    bad = [s for s in per_split if s not in ANALYSIS_SPLITS]
    if bad:
        raise ConfigError(f"unknown split(s) {bad} in max_samples_per_split; valid splits are {list(ANALYSIS_SPLITS)}")
    for name, cap in (("max_samples", max_samples), *((f"max_samples_per_split.{k}", v) for k, v in per_split.items())):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
            raise ConfigError(f"{name} must be a positive integer or null, got {cap!r}")
    return per_split


def samples_cap(split: str, max_samples: int | None, per_split: Mapping[str, int | None]) -> int | None:
    """How many samples of `split` are analysed: the smaller of `max_samples` and `per_split[split]`
    (None: the whole split)."""
    caps = [c for c in (max_samples, per_split.get(split)) if c is not None]
    return min(caps) if caps else None


def subset_indices(split_size: int, max_samples: int | None, seed: int = 0) -> torch.Tensor | None:
    """Sorted sample indices of a deterministic random subset of `max_samples` (None: the whole split)."""
    if max_samples is None or max_samples >= split_size:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(split_size, generator=generator)[:max_samples].sort().values


def subset_mask(index: torch.Tensor, split_size: int, max_samples: int | None, seed: int = 0) -> torch.Tensor:
    """Which of the sample indices `index` are in `subset_indices(split_size, max_samples, seed)`."""
    chosen = subset_indices(split_size, max_samples, seed)
    if chosen is None:
        return torch.ones_like(index, dtype=torch.bool)
    member = torch.zeros(split_size, dtype=torch.bool)
    member[chosen] = True
    return member.to(index.device)[index]


@torch.no_grad()
def extract_features(module, batches, device: torch.device, split: str, autocast_dtype=None) -> Features:
    """Run `module.features` over `batches` of (image, coarse, fine, index) in eval mode.

    Features stay on `device`, in float32 (bf16 autocast only for the forward pass).
    """
    was_training = module.training
    module.eval()
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )
    hs, coarse, fine, index = [], [], [], []
    try:
        for image, c, f, i in batches:
            image = image.to(device, non_blocking=True)
            with autocast:
                hs.append(module.features(image).float())
            coarse.append(c.to(device))
            fine.append(f.to(device))
            index.append(i.to(device))
    finally:
        module.train(was_training)
    local = Features(split, torch.cat(hs), torch.cat(coarse).long(), torch.cat(fine).long(), torch.cat(index).long())
    return _gather_unique(local)


def _gather_unique(local: Features) -> Features:
    """All-gather over ranks, then keep one row per sample index, sorted by index."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [_all_gather_variable(t) for t in (local.h, local.coarse, local.fine, local.index)]
        h, coarse, fine, index = parts
    else:
        h, coarse, fine, index = local.h, local.coarse, local.fine, local.index
    order = torch.argsort(index, stable=True)
    index = index[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    order = order[keep]
    return Features(local.split, h[order], coarse[order], fine[order], index[keep])


def _all_gather_variable(tensor: torch.Tensor) -> torch.Tensor:
    """all_gather for tensors whose first dimension may differ between ranks."""
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes)])


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

    _stores: "weakref.WeakKeyDictionary[object, FeatureStore]" = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._features: dict[tuple[str, int | None], Features] = {}
        self._capture: _Capture | None = None
        self._said: set[str] = set()
        self.extractions = 0  # analysis passes run (a test can count forward passes saved)

    @classmethod
    def of(cls, trainer) -> "FeatureStore":
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
        whole = _gather_unique(Features(split, h, coarse.long(), fine.long(), index.long()))
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


def extraction_autocast(trainer, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the analysis pass: bf16 on CUDA under a bf16 precision, else none."""
    return torch.bfloat16 if device.type == "cuda" and _bf16_precision(trainer) else None


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


def _bf16_precision(trainer) -> bool:
    return "bf16" in str(getattr(trainer, "precision", ""))
