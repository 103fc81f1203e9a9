"""User-facing errors.

`NcfineError` marks a problem with the user's input (config, data, arguments) rather than a bug.
The CLI prints such errors as one line (`ncfine: error: ...`) and exits non-zero; the full
traceback is shown only with HYDRA_FULL_ERROR=1.
"""

from __future__ import annotations


class NcfineError(ValueError):
    """A bad value from the user: the message names the value and what would be valid."""


class ConfigError(NcfineError):
    """An invalid configuration value."""


class DataError(NcfineError):
    """A dataset that is missing, malformed or inconsistent with its label hierarchy."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the run is recorded as `diverged`."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch


class MissingDependencyError(NcfineError, ImportError):
    """An optional dependency is needed for the requested feature."""

    def __init__(self, package: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the optional package '{package}', which is not installed; "
            f"install it with: pip install 'ncfine[{extra}]' (or pip install {package})"
        )
        self.package = package
        self.extra = extra


def require(module: str, *, package: str | None = None, extra: str, feature: str):
    """Import and return `module`, or raise MissingDependencyError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package or module, extra, feature) from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def missing_values_error(keys: list[str]) -> ConfigError:
    """The error for config values left at `???`."""
    example = " ".join(f"{key}=..." for key in keys)
    return ConfigError(f"{', '.join(keys)} must be set (the config has ??? there); add {example} to the command")
