"""Config values as the plain Python containers that libraries outside Hydra expect."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from ncfine.utils.errors import ConfigError


def plain_dict(value: Any, what: str) -> dict:
    """`value` (a DictConfig, a dict or None) as a plain dict, interpolations resolved; `what` names
    the setting in the one-line error for anything else (timm and torch.compile want plain dicts)."""
    if value is None:
        return {}
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping, got {value!r}")
    return dict(value)
