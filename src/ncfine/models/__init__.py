"""Backbones (any timm model, with CIFAR-style stems for small images) and the coarse-label classifier."""

from ncfine.models.backbone import create_backbone
from ncfine.models.classifier import CoarseClassifier

__all__ = ["CoarseClassifier", "create_backbone"]
