"""What every data source hands the DataModule: one split, fully in memory.

A source knows how to find and decode its files; it knows nothing of batching, augmentation or
label hierarchies. `load(split)` returns a `RawSplit`:

    images  uint8 (N, C, H, W)   for image data (x is None), or
    x       float32 (N, D)       for feature data such as the synthetic Gaussian mixture (images is None)
    fine    int64 (N,)           fine labels 0..num_fine-1
    fine_names                   num_fine names
    coarse, coarse_names         the dataset's own coarse labels (CIFAR-100 superclasses), or None
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ncfine.utils.errors import ConfigError, DataError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class RawSplit:
    """One split of a dataset in memory (see the module docstring for shapes and dtypes)."""

    images: torch.Tensor | None
    fine: torch.Tensor
    fine_names: list[str]
    coarse: torch.Tensor | None = None
    coarse_names: list[str] | None = None
    x: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.x is None):
            raise DataError(
                "a RawSplit holds either uint8 `images` (N,C,H,W) or float features `x` (N,D), not both/neither"
            )
        if self.images is not None and (self.images.dtype != torch.uint8 or self.images.dim() != 4):
            raise DataError(f"images must be uint8 (N,C,H,W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.x is not None and (not self.x.dtype.is_floating_point or self.x.dim() != 2):
            raise DataError(f"features x must be float (N,D), got {self.x.dtype} {tuple(self.x.shape)}")
        n = self.inputs.shape[0]
        if self.fine.dtype != torch.int64 or self.fine.shape != (n,):
            raise DataError(f"fine labels must be int64 ({n},), got {self.fine.dtype} {tuple(self.fine.shape)}")
        if n and (int(self.fine.min()) < 0 or int(self.fine.max()) >= len(self.fine_names)):
            raise DataError(
                f"fine labels span {int(self.fine.min())}..{int(self.fine.max())} but there are "
                f"{len(self.fine_names)} fine class names"
            )
        if self.coarse is not None and (self.coarse.dtype != torch.int64 or self.coarse.shape != (n,)):
            raise DataError(f"coarse labels must be int64 ({n},), got {self.coarse.dtype} {tuple(self.coarse.shape)}")

    @property
    def is_image(self) -> bool:
        return self.images is not None

    @property
    def inputs(self) -> torch.Tensor:
        """The images (uint8) or the features (float), whichever this split holds."""
        return self.images if self.images is not None else self.x

    def __len__(self) -> int:
        return int(self.fine.shape[0])

    def subset(self, rows: torch.Tensor) -> RawSplit:
        """The rows `rows` (in that order); sample positions are renumbered 0..len(rows)-1."""
        return replace(
            self,
            images=None if self.images is None else self.images[rows],
            x=None if self.x is None else self.x[rows],
            fine=self.fine[rows],
            coarse=None if self.coarse is None else self.coarse[rows],
        )


class Source:
    """Base of all data sources. Subclasses set the class attributes and implement `load`.

    Attributes:
        name: registry name ("cifar10", ...).
        default_hierarchy: the hierarchy spec used when the DataModule is given hierarchy="default".
        mean, std: per-channel normalisation in [0, 1] units, or None to compute it from the
            training split.
        is_image: False for feature data (then `in_features` is the feature dimension).
    """

    name: str = "source"
    default_hierarchy: str = "mod:5"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    is_image: bool = True
    in_chans: int = 3
    image_size: int = 32

    @property
    def in_features(self) -> int:
        """Length of one flattened input: in_chans * image_size**2 (D for feature data)."""
        return self.in_chans * self.image_size**2

    @property
    def num_fine(self) -> int:
        raise NotImplementedError

    def prepare(self) -> None:
        """Download or otherwise make the files available (called once, on rank 0). Default: nothing."""

    def check_files(self) -> None:
        """Raise the DataError `load` would raise for files that are missing and will not be fetched,
        without reading any (a sweep's pre-flight calls it for every job). Default: nothing to check."""

    def known_num_fine(self) -> int | None:
        """The number of fine classes if the source knows it without reading its files, else None."""
        return None

    def load(self, split: str) -> RawSplit:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits are {list(SPLITS)}")
    return split


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_in_chans(value) -> int:
    if value not in (1, 3):
        raise ConfigError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {value!r}")
    return int(value)
