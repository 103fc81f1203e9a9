"""A run's own node-count checks: the multi-node half that runs inside every run.

- `run_error` runs in every run (ncfine.run.validation), before the data is loaded: a
  `trainer.num_nodes > 1` with no launcher of other nodes around it would wait forever in DDP's
  rendezvous (the sweep's half, `ncfine.sweep.multinode.sweep_error`, checks the launcher's counts
  before anything is submitted).
- `lost_peer_error` names a DDP collective that failed because another process of the run died.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Set by the launchers that start one process per node, one of which this process then is: SLURM
# tasks (srun, also inside a user's own sbatch script) and torch's launchers (torchrun, or
# MASTER_ADDR/NODE_RANK by hand), which Lightning's cluster environments read.
_MULTI_NODE_ENV = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "NODE_RANK")


def num_nodes_of(value) -> int | None:
    """`trainer.num_nodes` as an int; None if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def run_error(num_nodes, environ: Mapping[str, str] | None = None) -> str | None:
    """Why this run's DDP would wait forever for nodes nothing starts, or None."""
    environ = os.environ if environ is None else environ
    if num_nodes is None:
        return None
    if num_nodes_of(num_nodes) is None:
        return f"trainer.num_nodes must be a positive integer, got {num_nodes!r}"
    if num_nodes > 1 and not any(environ.get(key) for key in _MULTI_NODE_ENV):
        return (
            f"trainer.num_nodes={num_nodes} but this run was not started on {num_nodes} nodes (no SLURM task, "
            f"no torchrun); use hydra/launcher=slurm hydra.launcher.nodes={num_nodes} (with -m), or trainer.num_nodes=1"
        )
    return None


# How a collective reads when the process at the other end is gone (gloo on CPUs, NCCL on GPUs).
_PEER_LOST = ("by peer", "Broken pipe", "gloo", "NCCL")


def lost_peer_error(exc: BaseException, world_size: int) -> str | None:
    """One short line for a DDP collective that failed because another process of the run died
    (its node lost, its task killed), or None for any other error. Run by every surviving rank;
    rank 0 writes it into results.json, so the sweep summary names the cause in a few words, not a
    gloo or NCCL message."""
    text = str(exc).strip()
    if world_size <= 1 or not isinstance(exc, RuntimeError) or not any(s in text for s in _PEER_LOST):
        return None
    # "[.../gloo/transport/tcp/pair.cc:545] Read error [10.223.23.12]:45200: Connection reset by
    # peer. This is typically caused by ..." -> "Connection reset by peer"
    first = re.sub(r"^\[[^\]]*\]\s*", "", (text.splitlines() or [""])[0]).split(". ")[0].rstrip(".")
    detail = first.rsplit(": ", 1)[-1][:60] or type(exc).__name__
    return f"a node or task of this {world_size}-process DDP run died ({detail})"
