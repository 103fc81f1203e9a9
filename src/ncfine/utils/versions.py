"""Versions of the packages a result depends on, for results.json."""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = (
    "ncfine",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "timm",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "numpy",
    "scipy",
    "scikit-learn",
    "faiss-cpu",
    "faiss-gpu",
    "wandb",
    "submitit",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    import torch

    versions["cuda"] = torch.version.cuda or "none"
    versions["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return versions
