"""Input checks shared by the analysis functions: each failure is a one-line ValueError."""

from __future__ import annotations

import operator

import torch


def check_feature_shape(features, name: str = "features") -> None:
    """Require a non-empty (N, D) tensor of real numbers (finiteness is the caller's, or check_features')."""
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, D), got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(features.shape)}")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(features.shape)}); need at least one sample and one dimension")
    if features.dtype == torch.bool or features.is_complex():
        raise ValueError(f"{name} must be real numbers (float32, bfloat16, float64, ...), got dtype {features.dtype}")


def check_features(features: torch.Tensor, name: str = "features") -> torch.Tensor:
    """Require a non-empty 2-D tensor of finite real values; returns it as floating point."""
    check_feature_shape(features, name)
    if not features.is_floating_point():
        features = features.float()
    bad = ~torch.isfinite(features).all(dim=1)
    n_bad = int(bad.sum())
    if n_bad:
        raise ValueError(
            f"{name} contain NaN or Inf in {n_bad} of {features.shape[0]} rows; "
            "check the training run for divergence (loss NaN) before analysing"
        )
    return features


def check_labels(labels: torch.Tensor, n: int, name: str = "labels", num_classes: int | None = None) -> torch.Tensor:
    """Require (N,) integer labels in [0, num_classes) matching N samples."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N,), got {type(labels).__name__}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the features, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class ids, got dtype {labels.dtype}")
    labels = labels.long()
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ValueError(f"{name} contain negative class id {lo}; class ids must be in [0, C)")
    if num_classes is not None and hi >= num_classes:
        raise ValueError(f"{name} contain class id {hi}, outside [0, {num_classes}) for num_classes={num_classes}")
    return labels


def check_several_classes(labels: torch.Tensor, name: str, what: str) -> None:
    """Require at least two distinct ids in `labels`: with one class, `what` has nothing to tell apart."""
    ids = torch.unique(labels)
    if ids.numel() < 2:
        raise ValueError(
            f"{name} hold a single class (id {int(ids[0])}); {what} needs at least 2 classes "
            "(with one class there is nothing to tell apart)"
        )


def check_count(value, name: str) -> int:
    """`value` as a positive Python int: ints, numpy integers and 0-d integer tensors pass, bools
    and floats do not (3.0 clusters is a config mistake, not a count)."""
    if isinstance(value, bool) or getattr(value, "dtype", None) == torch.bool:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if count < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return count
