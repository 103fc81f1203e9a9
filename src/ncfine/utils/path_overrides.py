"""Quote run-dir paths on the command line so Hydra reads each one as a single string.

ncfine names a run dir after its overrides (`.../multirun/grid/optimizer.lr=0.1,optimizer.weight_decay=5e-4`),
so the paths a user hands back to `ncfine-analyze run=PATH` hold `=` and `,`, which Hydra's
override grammar reads as a sweep (or a syntax error) unless the value is quoted:
`run='"PATH"'`. This module does that quoting before Hydra parses argv:

    run=/r/lr=0.1,wd=5e-4                    ->  run='/r/lr=0.1,wd=5e-4'        (one path)
    -m run=/r/lr=0.1,wd=5e-4,/r/lr=0.01,wd=5e-4  ->  run='/r/lr=0.1,wd=5e-4','/r/lr=0.01,wd=5e-4'   (a sweep)

Outside a multirun the key takes one path, so the whole value is quoted (a path that does not
exist then gets ncfine's "no such run dir" error, not a grammar error). In a multirun a comma
list is split into existing paths; one that can't be is left to Hydra, as is a value that is
already quoted or uses the grammar on purpose (`[..]`, `${..}`, `glob(..)`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

_MULTIRUN_FLAGS = ("-m", "--multirun")
_GRAMMAR_MARKERS = ("'", '"', "[", "]", "{", "}", "(", ")", "$", "\\")


def quote_path_overrides(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """argv with the values of `key=VALUE` (also `+key=`, `++key=`) quoted as single paths.

    In a multirun (`-m`) a comma list that splits into existing paths becomes a sweep over them.
    """
    multirun = any(arg in _MULTIRUN_FLAGS for arg in argv)
    out = []
    for arg in argv:
        prefix, sep, value = arg.partition("=")
        if sep and prefix.lstrip("+") in keys and _needs_quoting(value):
            paths = _split_existing(value) if multirun and not os.path.exists(value) else [value]
            if paths:
                arg = f"{prefix}={','.join(_quote(path) for path in paths)}"
        out.append(arg)
    return out


def _needs_quoting(value: str) -> bool:
    # Only '=' and ',' are in the way; a path with other grammar characters is left to the user.
    return ("," in value or "=" in value) and not any(marker in value for marker in _GRAMMAR_MARKERS)


def _split_existing(value: str) -> list[str] | None:
    """value split at commas into existing paths, if it can be (the longest path first at each step)."""
    if not value:
        return []
    parts = value.split(",")
    for end in range(len(parts), 0, -1):
        head = ",".join(parts[:end])
        if os.path.exists(head):
            rest = _split_existing(",".join(parts[end:])) if end < len(parts) else []
            if rest is not None:
                return [head, *rest]
    return None


def _quote(path: str) -> str:
    # _needs_quoting has ruled out quotes and backslashes in the path, so no escaping is needed.
    return f"'{path}'"
