"""Data: label hierarchies, sources, datasets, transforms, the DataModule and the device-resident loader.

Every loader yields `(image, coarse, fine, index)`: image float (B, C, H, W) normalised (or float
features (B, D) for non-image sources), coarse/fine/index int64 (B,), index = position in the split.
"""

from ncfine.data.datamodule import HierarchicalDataModule
from ncfine.data.dataset import HierarchicalDataset
from ncfine.data.device_loader import DeviceLoader, ShardedOrder, shard_indices
from ncfine.data.hierarchy import HIERARCHY_SPECS, LabelHierarchy, build_hierarchy
from ncfine.data.sources import (
    REGISTRY,
    CIFAR10Source,
    CIFAR100Source,
    DigitsSource,
    ImageFolderSource,
    RawSplit,
    Source,
    SyntheticSource,
    TensorSource,
    create_source,
)
from ncfine.data.transforms import ImageTransform, channel_stats, normalize, random_crop_flip

__all__ = [
    "HierarchicalDataModule",
    "HierarchicalDataset",
    "DeviceLoader",
    "ShardedOrder",
    "shard_indices",
    "HIERARCHY_SPECS",
    "LabelHierarchy",
    "build_hierarchy",
    "REGISTRY",
    "CIFAR10Source",
    "CIFAR100Source",
    "DigitsSource",
    "ImageFolderSource",
    "RawSplit",
    "Source",
    "SyntheticSource",
    "TensorSource",
    "create_source",
    "ImageTransform",
    "channel_stats",
    "normalize",
    "random_crop_flip",
]
