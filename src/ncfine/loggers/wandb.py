"""Weights & Biases for ncfine runs: one W&B run per run dir, resumable, one group per sweep.

- `make_wandb_logger(...)` (the `_target_` of conf/logger/wandb.yaml) builds Lightning's
  `WandbLogger` with a run id kept in `<run dir>/wandb_id.txt`: a re-run of the same command
  (after a crash, a SLURM requeue or a preemption) continues the same W&B run (`resume="allow"`).
- `log_config` / `finish_run` are called by the pipeline through `ncfine.loggers`: the resolved
  config at the start; the outcome (`ncfine/status`, epochs, wall time, error) and `finish()` at
  the end, so the next job of a multirun in the same process starts a new W&B run.
- `read_run_file` reads a run's `.wandb` transaction log (what offline mode writes) back into
  dicts, so a run can be checked without an account or network (`wandb sync` uploads it later).
"""

from __future__ import annotations

import json
import os
import secrets
import string
import struct
from pathlib import Path
from typing import Any

from ncfine.utils.atomic import atomic_write_text
from ncfine.utils.errors import ConfigError, require

ID_FILE = "wandb_id.txt"
# W&B's own names for its modes; "dryrun"/"run" are the legacy spellings of offline/online.
MODES = {
    "online": "online",
    "offline": "offline",
    "disabled": "disabled",
    "shared": "shared",
    "dryrun": "offline",
    "run": "online",
}
SUMMARY_PREFIX = "ncfine/"


def make_wandb_logger(
    save_dir: str | os.PathLike,
    project: str = "ncfine",
    entity: str | None = None,
    group: str | None = None,
    tags: Any = (),
    mode: str = "online",
    name: str | None = None,
    job_type: str | None = None,
    notes: str | None = None,
    log_model: bool | str = False,
    id_file: str = ID_FILE,
    **kwargs: Any,
):
    """A `WandbLogger` writing under `save_dir/wandb/`, named after the run dir, resumable.

    The run id is read from `save_dir/id_file` or created and written there (rank 0 only), then
    passed as `id=..., resume="allow"`: the first run creates the W&B run, every re-run continues it.
    """
    require("wandb", extra="wandb", feature="logger=wandb")
    from pytorch_lightning.loggers import WandbLogger

    key = str(mode).lower()
    if key not in MODES:
        raise ConfigError(f"logger.wandb.mode must be one of {sorted(set(MODES.values()))}, got {mode!r}")
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=str(save_dir),
        project=project,
        entity=entity or None,
        group=str(group) if group else None,
        tags=[str(t) for t in (tags or [])],
        mode=MODES[key],
        name=name or save_dir.name,
        id=persistent_run_id(save_dir / id_file),
        resume="allow",
        job_type=job_type,
        notes=notes,
        log_model=log_model,
        **kwargs,
    )


def persistent_run_id(path: str | os.PathLike) -> str:
    """The W&B run id stored in `path`, or a new one that is stored there (by rank 0)."""
    path = Path(path)
    try:
        run_id = path.read_text().strip()
        if run_id:
            return run_id
    except OSError:
        pass
    # W&B's own ids: 8 characters of [a-z0-9] (its helper moved between wandb versions).
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    if _rank() == 0:  # the other DDP ranks never create the W&B run
        atomic_write_text(path, run_id + "\n")
    return run_id


def _rank() -> int:
    from lightning_utilities.core.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def log_config(logger: Any, config: dict) -> None:
    """The full resolved config as the W&B run config (nested: model.backbone, optimizer.lr, ...)."""
    logger.log_hyperparams(config)


def finish_run(logger: Any, results: dict[str, Any] | None) -> None:
    """Write the run's outcome into the W&B summary and finish the run (rank 0, if it was started)."""
    run = getattr(logger, "_experiment", None)
    if run is None or not hasattr(run, "finish"):
        return
    results = results or {}
    status = results.get("status") or "failed"
    run.summary.update(
        {
            f"{SUMMARY_PREFIX}status": status,
            f"{SUMMARY_PREFIX}epochs_completed": results.get("epochs_completed"),
            f"{SUMMARY_PREFIX}wall_time_s": results.get("wall_time_s"),
            f"{SUMMARY_PREFIX}error": results.get("error"),
        }
    )
    if status == "running" and hasattr(run, "mark_preempting"):
        run.mark_preempting()  # interrupted: a re-run resumes this W&B run
    run.finish(exit_code=0 if status in ("completed", "diverged") else 1)
    logger._experiment = None


# ---- reading offline runs back ----------------------------------------------------------------
_BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of (crc, length, type) records
_HEADER = 7  # ":W&B" + uint16 magic + uint8 version
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def offline_run_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The W&B run folders under `run_dir/wandb/` (offline and online), oldest first."""
    root = Path(run_dir) / "wandb"
    return sorted(p for p in root.glob("*run-*") if p.is_dir() and p.name != "latest-run")


def read_run_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a `.wandb` file (or a W&B run folder holding one) into
    {run_id, project, group, tags, config, history: [row, ...], summary}.

    This reads W&B's local transaction log (the format `wandb sync` uploads), decoding each
    record with W&B's own protobuf schema; values are JSON-decoded. Nested keys join with '/'.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.wandb"))
        if not files:
            raise FileNotFoundError(f"no .wandb file in {path}")
        path = files[0]
    out: dict[str, Any] = {
        "run_id": None,
        "project": None,
        "group": None,
        "tags": [],
        "config": {},
        "history": [],
        "summary": {},
    }
    for raw in _records(path.read_bytes(), path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(run_id=run.run_id, project=run.project, group=run.run_group, tags=list(run.tags))
            out["config"].update(_items(run.config.update))
            out["summary"].update(_items(run.summary.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "history":
            out["history"].append(_items(record.history.item))
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
    out["config"].pop("_wandb", None)
    return out


def _items(items) -> dict[str, Any]:
    decoded = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        try:
            decoded[key] = json.loads(item.value_json)
        except ValueError:
            decoded[key] = item.value_json
    return decoded


def _records(data: bytes, path: Path):
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (it does not start with ':W&B')")
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
