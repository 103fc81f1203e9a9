"""Hydra's config composition errors as one readable `ncfine: error:` line.

An unknown group option (`data=cifar11`, `experiment=nope`), a key typo (`optimizer.lrr=0.1`) or
an unparsable override is reported by Hydra inside `hydra.main`, before any ncfine code runs, as a
multi-line message with exit code 1. `report_composition_errors()` wraps Hydra's reporting so
these become one line naming the bad value and what would be valid, with exit code 2 (like every
other bad input). HYDRA_FULL_ERROR=1 keeps Hydra's own behaviour (the full traceback).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

EXIT_CODE = 2
_MAX_KEYS = 15


@contextlib.contextmanager
def report_composition_errors(config_dir: Path | None = None) -> Iterator[None]:
    """Within the block, Hydra composition errors print one line and exit 2 (unless HYDRA_FULL_ERROR=1)."""
    try:
        import hydra._internal.utils as hydra_utils
    except ImportError:  # pragma: no cover - Hydra's internals moved: keep its own reporting
        yield
        return
    original = getattr(hydra_utils, "run_and_report", None)
    if original is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return

    def run_and_report(func):
        def wrapped():
            try:
                return func()
            except (ConfigCompositionException, OverrideParseException) as exc:  # MissingConfigException too
                print(f"ncfine: error: {describe(exc, config_dir)}", file=sys.stderr)
                sys.exit(EXIT_CODE)  # SystemExit passes through Hydra's `except Exception`

        return original(wrapped)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def describe(exc: BaseException, config_dir: Path | None = None) -> str:
    """One line for a Hydra composition error: the bad value, and what would be valid."""
    if isinstance(exc, MissingConfigException) and exc.options and "/" in (exc.missing_cfg_file or ""):
        return _missing_option(exc, config_dir)
    cause = exc.__cause__
    if (
        isinstance(exc, ConfigCompositionException)
        and getattr(cause, "full_key", None)
        and getattr(cause, "parent_node", None) is not None
    ):
        return _unknown_key(exc, cause)
    lines = [ln.strip().rstrip(".") for ln in str(exc).splitlines() if ln.strip()]
    if cause is not None and type(cause).__module__.startswith("omegaconf"):
        lines += [ln.strip() for ln in str(cause).splitlines()[:1] if ln.strip()]
    if isinstance(exc, OverrideParseException):
        lines = ["could not parse the command-line overrides: " + lines[0]] + lines[1:]
    return "; ".join(lines) or type(exc).__name__


# Longer option lists are written as families (`option_families`) so the error stays one readable line.
PLAIN_OPTIONS_CHARS = 200


def option_families(options) -> str:
    """Options listed with the parts of a family after the name they extend, so a group of many
    related configs stays one readable line: `a, a_b, a_b_c, d` -> `a (+ _b (+ _c)), d`."""
    names = sorted(set(options))

    def parent(name: str) -> str | None:
        heads = [other for other in names if other != name and name.startswith(other + "_")]
        return max(heads, key=len, default=None)

    children: dict[str | None, list[str]] = {}
    for name in names:
        children.setdefault(parent(name), []).append(name)

    def render(name: str, head: str | None) -> str:
        label = name[len(head) :] if head is not None else name
        below = children.get(name)
        return f"{label} (+ {', '.join(render(child, name) for child in below)})" if below else label

    return ", ".join(render(name, None) for name in children.get(None, []))


def _missing_option(exc: MissingConfigException, config_dir: Path | None) -> str:
    group, _, name = exc.missing_cfg_file.rpartition("/")
    options = list(exc.options)
    text = f"{group}={name}: no such option in config group '{group}'"
    where = re.match(r"In '([^']+)'", str(exc))
    if where and where.group(1) != "train":
        text += f" (asked for by {where.group(1)}.yaml)"
    if config_dir is not None and (Path(config_dir) / group).is_dir():
        text += f" (looked in {Path(config_dir) / group})"
    plain = ", ".join(options)
    text += f"; available: {plain if len(plain) <= PLAIN_OPTIONS_CHARS else option_families(options)}"
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    if close:
        text += f"; did you mean {' or '.join(f'{group}={c}' for c in close)}?"
    return text


def _unknown_key(exc: ConfigCompositionException, cause: BaseException) -> str:
    full_key: str = cause.full_key
    key = str(getattr(cause, "key", None) or full_key.rpartition(".")[2])
    parent = full_key.rpartition(".")[0]
    try:
        keys = [str(k) for k in cause.parent_node.keys()]
    except Exception:  # noqa: BLE001 - not a dict node: no key list to offer
        keys = []
    append = re.search(r"use \+(\S+)", str(exc))
    override = append.group(1) if append else full_key
    where = f"'{parent}'" if parent else "the top-level config"
    text = f"{override}: unknown config key '{key}' in {where}"
    close = [f"{parent}.{c}" if parent else c for c in difflib.get_close_matches(key, keys, n=3, cutoff=0.6)]
    if not close:  # the key one level down, e.g. data.root=DIR for data.source.root=DIR
        close = [f"{parent}.{c}.{key}" if parent else f"{c}.{key}" for c in _children_with_key(cause.parent_node, key)]
    if close:
        text += f"; did you mean {' or '.join(close)}?"
    if keys:
        shown = ", ".join(keys[:_MAX_KEYS]) + (", ..." if len(keys) > _MAX_KEYS else "")
        text += f" (valid keys: {shown})"
    text += f"; to add a new key, use +{override}"
    return text


def _children_with_key(node, key: str) -> list[str]:
    """Names of the dict children of `node` that hold `key` (keys only: no interpolation is resolved)."""
    found = []
    try:
        for name in node.keys():
            child = node._get_node(name)
            if (
                hasattr(child, "keys")
                and not child._is_interpolation()
                and not child._is_none()
                and key in [str(k) for k in child.keys()]
            ):
                found.append(str(name))
    except Exception:  # noqa: BLE001 - a hint only: never mask the error being reported
        return []
    return found[:3]
