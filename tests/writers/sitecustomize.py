"""Records which process writes which file, for tests/test_slurm_multinode.py (one writer per run dir).

Put on PYTHONPATH of a job with NCFINE_WRITES_LOG=DIR set, every Python process of the job
appends one line per write-like event (open for writing, rename/replace, mkdir, remove) under
NCFINE_WRITES_UNDER to DIR/<host>-<pid>.txt: `<host> <SLURM_PROCID> <event> <path>`. Python's
audit hooks see every such call of the process, including those inside torch, Lightning and
Hydra, so a second writer cannot hide in a library.
"""

import os
import socket
import sys

_LOG_DIR = os.environ.get("NCFINE_WRITES_LOG")
_UNDER = os.environ.get("NCFINE_WRITES_UNDER", "/")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _install() -> None:
    host, rank = socket.gethostname(), os.environ.get("SLURM_PROCID", "-")
    log_path = os.path.join(_LOG_DIR, f"{host}-{os.getpid()}.txt")
    busy = []  # no recursion: our own log write is an open event too

    def record(event: str, path) -> None:
        path = os.path.abspath(os.fsdecode(path))
        if not path.startswith(_UNDER) or busy:
            return
        busy.append(1)
        try:
            with open(log_path, "a") as handle:
                handle.write(f"{host} {rank} {event} {path}\n")
        finally:
            busy.pop()

    def hook(event: str, args) -> None:
        try:
            if event == "open":
                path, mode, flags = args
                if isinstance(path, (str, bytes, os.PathLike)) and (
                    (mode and any(c in mode for c in "wax+")) or (flags and flags & _WRITE_FLAGS)
                ):
                    record("open", path)
            elif event in ("os.rename", "os.replace"):
                record(event, args[1])
            elif event in ("os.mkdir", "os.remove", "os.rmdir"):
                record(event, args[0])
        except Exception:  # noqa: BLE001 - an observer must never break the observed process
            pass

    sys.addaudithook(hook)


if _LOG_DIR:
    _install()
