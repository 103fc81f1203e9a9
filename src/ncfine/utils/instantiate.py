"""Hydra instantiation that surfaces ncfine's own one-line errors instead of Hydra's wrapper."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException

from ncfine.utils.errors import NcfineError


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising the NcfineError (or ImportError) a constructor raised."""
    try:
        return hydra.utils.instantiate(config, *args, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, (NcfineError, ImportError)):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        target = getattr(config, "_target_", None) or (config.get("_target_") if hasattr(config, "get") else None)
        raise NcfineError(f"could not build {target}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc.__cause__ or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
