"""Hydra instantiation that surfaces ncfine's own one-line errors instead of Hydra's wrapper."""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from ncfine.utils.errors import ConfigError, NcfineError, missing_values_error


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising the NcfineError (or ImportError) a constructor raised."""
    try:
        return hydra.utils.instantiate(config, *args, **kwargs)
    except MissingMandatoryValue as exc:  # a `???` left in the config
        raise missing_values_error([getattr(exc, "full_key", None) or "a config value"]) from None
    except InstantiationException as exc:
        unknown = _unknown_target(exc)
        if unknown:
            raise ConfigError(unknown) from None
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


def _unknown_target(exc: InstantiationException) -> str | None:
    """A one-line message for a `_target_` that Hydra could not import (None for other errors)."""
    found = re.match(r"Error locating target '([^']+)'", str(exc))
    if not found:
        return None
    target = found.group(1)
    key = re.search(r"full_key: (\S+)", str(exc))
    key = f"{key.group(1)}._target_" if key else "_target_"
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as import_exc:  # noqa: BLE001 - any failure: say why the module does not load
        return f"{key}={target} cannot be imported: {type(import_exc).__name__}: {_first_line(import_exc)}"
    public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    names = sorted(n for n in public if isinstance(getattr(module, n, None), type))
    text = f"{key}={target} cannot be imported: module {module_name} has no {name!r}"
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        text += f"; did you mean {' or '.join(f'{module_name}.{c}' for c in close)}?"
    if names:
        text += f" (classes in {module_name}: {', '.join(names)})"
    return text
