"""Data sources: each loads one split into memory (see base.RawSplit). REGISTRY maps name -> class."""

from __future__ import annotations

from ncfine.data.sources.base import RawSplit, Source
from ncfine.data.sources.cifar import CIFAR10Source, CIFAR100Source
from ncfine.data.sources.digits import DigitsSource
from ncfine.data.sources.imagefolder import ImageFolderSource
from ncfine.data.sources.synthetic import SyntheticSource
from ncfine.data.sources.tensors import TensorSource
from ncfine.utils.errors import ConfigError

REGISTRY: dict[str, type[Source]] = {
    "digits": DigitsSource,
    "cifar10": CIFAR10Source,
    "cifar100": CIFAR100Source,
    "imagefolder": ImageFolderSource,
    "synthetic": SyntheticSource,
}


def create_source(name: str, **kwargs) -> Source:
    """REGISTRY[name](**kwargs), with a one-line error listing the valid names."""
    cls = REGISTRY.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown data source {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    return cls(**kwargs)


__all__ = [
    "REGISTRY",
    "create_source",
    "RawSplit",
    "Source",
    "CIFAR10Source",
    "CIFAR100Source",
    "DigitsSource",
    "ImageFolderSource",
    "SyntheticSource",
    "TensorSource",
]
