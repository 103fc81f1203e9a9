"""LightningDataModule: a source + a label hierarchy -> batches `(image, coarse, fine, index)`.

    dm = HierarchicalDataModule(CIFAR10Source(root), hierarchy="mod:5")
    dm.setup()          # loads both splits once (idempotent), builds the hierarchy
    dm.train_dataloader()  /  dm.val_dataloader()  /  dm.analysis_dataloader("train" | "test")

Two data paths with the same augmentation code (`transforms.ImageTransform`):
- DataLoader path: a map-style `HierarchicalDataset`, per-sample transform in the workers; under
  DDP Lightning injects its DistributedSampler into the train/val loaders.
- Device-resident path (`device_loader.DeviceLoader`): both splits stay on the training device as
  uint8 and batches are sampled, augmented and normalised there, sharded by rank.
  device_resident="auto" takes it when the trainer runs on CUDA and the data use at most
  `memory_fraction` (25%) of the free device memory; True forces it (also on CPU), False never.

`val_dataloader` is the test split without augmentation. `analysis_dataloader(split)` is an
ordered, unaugmented pass over a split for feature extraction; under torch.distributed each rank
gets its DistributedSampler(shuffle=False) shard, padding duplicates included (the index column
lets the analysis drop them).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ncfine.data.dataset import HierarchicalDataset
from ncfine.data.device_loader import DeviceLoader
from ncfine.data.hierarchy import LabelHierarchy, build_hierarchy, check_hierarchy_spec
from ncfine.data.sources import REGISTRY, RawSplit, Source, create_source
from ncfine.data.sources.base import check_split
from ncfine.data.transforms import ImageTransform, channel_stats
from ncfine.utils.devices import trainer_root_device
from ncfine.utils.errors import ConfigError, DataError
from ncfine.utils.logging import RankedLogger

log = RankedLogger(__name__)

# The test subset (max_test_samples) does not follow the run's seed: every run is scored on one set.
TEST_SUBSET_SEED = 0


def _random_subset(split: RawSplit, size: int | None, seed: int) -> RawSplit:
    """`size` rows of `split` drawn at random with `seed`, kept in their original order (all of it
    when size is None or not smaller)."""
    if size is None or size >= len(split):
        return split
    rows = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:size]
    return split.subset(rows.sort().values)


_RESIDENT_CHOICES = {"auto": "auto", "true": True, "false": False, True: True, False: False}


def _positive_int(value, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"data.{name} must be a positive integer{' or null' if allow_none else ''}, got {value!r}")
    return value


class HierarchicalDataModule(pl.LightningDataModule):
    """Batches `(image, coarse, fine, index)` of a source under a label hierarchy.

    Args:
        source: a `Source` (Hydra instantiates it from `_target_`) or a registry name ("digits", ...).
        hierarchy: "default" (the source's own: mod:5 for digits/CIFAR-10, superclass for
            CIFAR-100/imagefolder/synthetic), or any `build_hierarchy` spec: "mod:K", "identity",
            "superclass", a list of coarse ids per fine class, a dict {coarse: [fine classes]}.
        batch_size / eval_batch_size: training batches / val and analysis batches.
        num_workers, pin_memory: DataLoader path only (pin_memory=None: when training on CUDA).
        augment: random crop (zero padding `pad`) + horizontal flip on training images.
        device_resident: "auto", True or False (see the module docstring).
        max_train_samples: train on a deterministic random subset (seeded by `seed`) of this size;
            its samples are renumbered 0..M-1 (their `index`).
        max_test_samples: validate and analyse on a random subset of the test split of this size,
            the same images in every run and seed (drawn with TEST_SUBSET_SEED, not `seed`), so that
            runs of a sweep are scored on one test set.
        seed: the shuffling/augmentation seed of the device path and the DataLoader shuffle.
        memory_fraction: the share of free device memory "auto" may fill.
    """

    def __init__(
        self,
        source: Source | str,
        hierarchy: Any = "default",
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        augment: bool = True,
        device_resident: bool | str = "auto",
        max_train_samples: int | None = None,
        max_test_samples: int | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
        pad: int = 4,
        flip: bool = True,
        memory_fraction: float = 0.25,
    ):
        super().__init__()
        if isinstance(source, str):
            source = create_source(source)
        if not callable(getattr(source, "load", None)):
            raise ConfigError(
                f"data.source must be a data source with load(split) (one of {sorted(REGISTRY)}), got {source!r}"
            )
        self.source = source
        self.hierarchy_spec = hierarchy
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.eval_batch_size = _positive_int(eval_batch_size, "eval_batch_size")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers must be an integer >= 0, got {num_workers!r}")
        self.num_workers = num_workers
        self.augment = bool(augment)
        key = device_resident.lower() if isinstance(device_resident, str) else device_resident
        if key not in _RESIDENT_CHOICES:
            raise ConfigError(f"data.device_resident must be auto, true or false, got {device_resident!r}")
        self.device_resident = _RESIDENT_CHOICES[key]
        self.max_train_samples = _positive_int(max_train_samples, "max_train_samples", allow_none=True)
        self.max_test_samples = _positive_int(max_test_samples, "max_test_samples", allow_none=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"data.seed must be an integer, got {seed!r}")
        self.seed = seed
        self.pin_memory = pin_memory
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ConfigError(f"data.pad must be an integer >= 0, got {pad!r}")
        self.pad, self.flip = pad, bool(flip)
        if not 0.0 < float(memory_fraction) <= 1.0:
            raise ConfigError(f"data.memory_fraction must be in (0, 1], got {memory_fraction!r}")
        self.memory_fraction = float(memory_fraction)

        self._splits: dict[str, RawSplit] | None = None
        self._hierarchy: LabelHierarchy | None = None
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        self._datasets: dict[str, HierarchicalDataset] = {}
        self._resident: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._resident_choice: dict[torch.device, bool] = {}

    # ------------------------------------------------------------------------------ loading
    def check_files(self) -> None:
        """Before any split is read (a sweep's pre-flight, for every job): the source's files are
        there or will be downloaded; its own "not found" error otherwise."""
        self.source.check_files()

    def check_hierarchy(self) -> None:
        """Before any split is read: the hierarchy fits the source's fine classes where the source
        knows them without loading (mod:K against CIFAR-10's 10 classes)."""
        spec = getattr(self.source, "default_hierarchy", "identity") if self.hierarchy_spec == "default" else None
        check_hierarchy_spec(spec or self.hierarchy_spec, self.source.known_num_fine())

    def prepare_data(self) -> None:
        prepare = getattr(self.source, "prepare", None)
        if callable(prepare):
            prepare()

    def setup(self, stage: str | None = None) -> None:
        """Load both splits and build the hierarchy, once (later calls return immediately)."""
        if self._splits is not None:
            return
        train, test = self.source.load("train"), self.source.load("test")
        if train.fine_names != test.fine_names:
            raise DataError(
                f"train and test splits name different fine classes: {train.fine_names} vs {test.fine_names}"
            )
        if train.inputs.shape[1:] != test.inputs.shape[1:]:
            raise DataError(
                f"train and test inputs differ in shape: {tuple(train.inputs.shape[1:])} vs {tuple(test.inputs.shape[1:])}"
            )
        self._hierarchy = self._build_hierarchy(train, test)
        train = _random_subset(train, self.max_train_samples, self.seed)
        test = _random_subset(test, self.max_test_samples, TEST_SUBSET_SEED)
        self._splits = {"train": train, "test": test}
        if train.is_image:
            self._mean, self._std = self._normalization_stats(train)
        self._datasets = {
            "train": HierarchicalDataset(train.inputs, train.fine, self._hierarchy, self._transform(self.augment)),
            "test": HierarchicalDataset(test.inputs, test.fine, self._hierarchy, self._transform(False)),
            "train_eval": HierarchicalDataset(train.inputs, train.fine, self._hierarchy, self._transform(False)),
        }
        log.info(
            f"data: {getattr(self.source, 'name', type(self.source).__name__)} train={len(train)} test={len(test)} "
            f"input={tuple(train.inputs.shape[1:])} hierarchy={self._hierarchy.num_fine}->{self._hierarchy.num_coarse}: "
            f"{self._hierarchy.describe()}"
        )

    def _build_hierarchy(self, train: RawSplit, test: RawSplit) -> LabelHierarchy:
        names = train.fine_names
        provided = None
        if train.coarse is not None:
            provided = LabelHierarchy.from_labels(train.fine, train.coarse, len(names), names, train.coarse_names)
        spec = (
            getattr(self.source, "default_hierarchy", "identity")
            if self.hierarchy_spec == "default"
            else self.hierarchy_spec
        )
        hierarchy = build_hierarchy(
            spec,
            len(names),
            names,
            default_coarse_labels=None if provided is None else provided.fine_to_coarse,
            coarse_names=None if provided is None else provided.coarse_names,
        )
        if provided is not None and hierarchy == provided and test.coarse is not None:
            wrong = (hierarchy.coarse_of(test.fine) != test.coarse).nonzero().flatten()
            if wrong.numel():
                i = int(wrong[0])
                raise DataError(
                    f"test sample {i} (fine class {names[int(test.fine[i])]!r}) has coarse label {int(test.coarse[i])}, "
                    f"but the training split maps that class to {int(hierarchy.coarse_of(test.fine[i]))}"
                )
        return hierarchy

    def _normalization_stats(self, train: RawSplit) -> tuple[torch.Tensor, torch.Tensor]:
        channels = train.images.shape[1]
        mean, std = getattr(self.source, "mean", None), getattr(self.source, "std", None)
        if mean is None or std is None or len(mean) != channels:
            return tuple(t.float() for t in channel_stats(train.images))
        return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)

    def _transform(self, augment: bool) -> ImageTransform | None:
        if self._mean is None:
            return None  # feature data: no augmentation, no normalisation
        return ImageTransform(self._mean, self._std, augment=augment, pad=self.pad, flip=self.flip)

    def _require(self) -> dict[str, RawSplit]:
        if self._splits is None:
            self.setup()
        return self._splits  # type: ignore[return-value]

    # ------------------------------------------------------------------------------ facts
    @property
    def hierarchy(self) -> LabelHierarchy:
        self._require()
        return self._hierarchy  # type: ignore[return-value]

    @property
    def num_coarse(self) -> int:
        return self.hierarchy.num_coarse

    @property
    def num_fine(self) -> int:
        return self.hierarchy.num_fine

    @property
    def fine_names(self) -> list[str]:
        return self.hierarchy.fine_names

    @property
    def coarse_names(self) -> list[str]:
        return self.hierarchy.coarse_names

    @property
    def is_image(self) -> bool:
        return self._require()["train"].is_image

    @property
    def in_chans(self) -> int:
        """Image channels; for feature data the feature dimension D (a 1x1 image with D channels)."""
        return int(self._require()["train"].inputs.shape[1])

    @property
    def image_size(self) -> int:
        """Image height (= width); 1 for feature data."""
        train = self._require()["train"]
        return int(train.images.shape[-1]) if train.is_image else 1

    @property
    def in_features(self) -> int:
        """Length of one flattened input (C*H*W, or D for feature data)."""
        return int(self._require()["train"].inputs[0].numel())

    @property
    def normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, std) per channel in [0, 1] units, or None for feature data."""
        self._require()
        return None if self._mean is None else (self._mean, self._std)

    def split(self, split: str) -> RawSplit:
        """The raw in-memory split (after max_train_samples)."""
        return self._require()[check_split(split)]

    def split_size(self, split: str) -> int:
        return len(self.split(split))

    def dataset(self, split: str, augment: bool = False) -> HierarchicalDataset:
        self._require()
        check_split(split)
        if split == "train":
            return self._datasets["train" if augment else "train_eval"]
        return self._datasets["test"]

    # ------------------------------------------------------------------------------ placement
    def target_device(self) -> torch.device:
        """The attached trainer's root device, else the CPU."""
        return trainer_root_device(getattr(self, "trainer", None), torch.device("cpu"))

    def uses_device_loader(self, device: torch.device | None = None) -> bool:
        device = device or self.target_device()
        if self.device_resident != "auto":
            return bool(self.device_resident)
        if device.type != "cuda":
            return False
        if device not in self._resident_choice:  # decide once: free memory shrinks once training starts
            free, _ = torch.cuda.mem_get_info(device)
            needed = sum(s.inputs.numel() * s.inputs.element_size() + 2 * 8 * len(s) for s in self._require().values())
            self._resident_choice[device] = needed <= self.memory_fraction * free
            log.info(
                f"data: {needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free on {device}: "
                + ("device-resident batches" if self._resident_choice[device] else "DataLoader path")
            )
        return self._resident_choice[device]

    def rank_and_world_size(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        return 0, 1

    def _on_device(self, split: str, device: torch.device):
        key = (split, device)
        if key not in self._resident:
            raw = self.split(split)
            self._resident[key] = (
                raw.inputs.to(device),
                self._hierarchy.coarse_of(raw.fine).to(device),  # type: ignore[union-attr]
                raw.fine.to(device),
            )
        return self._resident[key]

    def _device_loader(
        self, split: str, batch_size: int, augment: bool, shuffle: bool, indices: torch.Tensor | None = None
    ) -> DeviceLoader:
        device = self.target_device()
        inputs, coarse, fine = self._on_device(split, device)
        sample_ids = None
        if indices is not None:
            sample_ids = indices.to(device)
            inputs, coarse, fine = inputs[sample_ids], coarse[sample_ids], fine[sample_ids]
        rank, world = self.rank_and_world_size()
        return DeviceLoader(
            inputs,
            coarse,
            fine,
            batch_size,
            transform=self._transform(augment),
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world,
            sample_ids=sample_ids,
        )

    def _pin(self) -> bool:
        return self.target_device().type == "cuda" if self.pin_memory is None else bool(self.pin_memory)

    # ------------------------------------------------------------------------------ loaders
    def train_dataloader(self):
        if self.uses_device_loader():
            return self._device_loader("train", self.batch_size, self.augment, shuffle=True)
        return DataLoader(
            self.dataset("train", augment=self.augment),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self._pin(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_split(self) -> str:
        """The split `val_dataloader` passes over. It is that split's analysis pass batch for batch
        (same dataset, transform, batch size and order; Lightning shards it under DDP as the analysis
        loader shards itself), so the analysis may reuse validation's features of it."""
        return "test"

    def val_dataloader(self):
        # Lightning keeps this loader for the whole fit (and shards it under DDP): keep its workers alive.
        return self._eval_loader(self.val_split(), distributed_sampler=False, persistent=True)

    def test_dataloader(self):
        return self._eval_loader("test", distributed_sampler=False, persistent=False)

    def analysis_dataloader(self, split: str, indices: torch.Tensor | None = None):
        """Ordered, unaugmented batches of `split` for feature extraction, sharded under torch.distributed.

        `indices` (sorted sample positions) restricts it to a subset; batches still carry each
        sample's position in the whole split.
        """
        return self._eval_loader(check_split(split), distributed_sampler=True, persistent=False, indices=indices)

    def _eval_loader(
        self, split: str, distributed_sampler: bool, persistent: bool, indices: torch.Tensor | None = None
    ):
        if self.uses_device_loader():
            return self._device_loader(split, self.eval_batch_size, augment=False, shuffle=False, indices=indices)
        dataset = self.dataset(split)
        if indices is not None:
            dataset = Subset(dataset, indices.tolist())
        sampler = None
        if distributed_sampler and dist.is_available() and dist.is_initialized():
            rank, world = self.rank_and_world_size()
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self._pin(),
            persistent_workers=persistent and self.num_workers > 0,
            # Its own generator: an iterator of a DataLoader without one draws its base seed from
            # the global RNG, so every validation or analysis pass would shift the augmentations
            # and shuffles of the epochs after it (turning analysis on or off would change training).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def teardown(self, stage: str | None = None) -> None:
        self._resident.clear()  # free device memory; rebuilt on demand

    def __repr__(self) -> str:
        return (
            f"HierarchicalDataModule(source={self.source!r}, hierarchy={self.hierarchy_spec!r}, "
            f"batch_size={self.batch_size}, device_resident={self.device_resident!r})"
        )
