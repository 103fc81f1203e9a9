"""Multi-node DDP: the node counts that must agree, checked before anything waits on them.

A DDP run of `trainer.num_nodes` nodes waits in torch.distributed's rendezvous (30 minutes by
default, then a timeout traceback) until `trainer.num_nodes x trainer.devices` processes have
joined. Under `hydra/launcher=slurm` the processes are the `hydra.launcher.nodes x
hydra.launcher.tasks_per_node` tasks that srun starts; when the counts disagree, Lightning
notices only inside the job, after the queue wait and the data loading, in its own terms, and a
run with `trainer.num_nodes > 1` that nothing starts on other nodes (a plain run,
`hydra/launcher=local`) hangs. So:

- `sweep_error` runs in the sweep command, before anything is submitted (the pre-flight,
  ncfine.preflight): one line naming `trainer.num_nodes` and `hydra.launcher.nodes`.
- `run_error` runs in every run (ncfine.validation), before the data is loaded: a
  `trainer.num_nodes > 1` with no launcher of other nodes around it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# Set by the launchers that start one process per node, one of which this process then is: SLURM
# tasks (srun, also inside a user's own sbatch script) and torch's launchers (torchrun, or
# MASTER_ADDR/NODE_RANK by hand), which Lightning's cluster environments read.
_MULTI_NODE_ENV = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "NODE_RANK")


def task_rank() -> int:
    """This process's global rank among its submitit job's tasks; 0 outside a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 0
    import submitit

    return submitit.JobEnvironment().global_rank


def num_nodes_of(value) -> int | None:
    """`trainer.num_nodes` as an int; None if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def sweep_error(executor: str, launcher_nodes, num_nodes_per_job: Iterable) -> str | None:
    """Why the sweep's jobs would not start the processes their DDP waits for, or None.

    `executor` is submitit's (`slurm`, `local`), `launcher_nodes` is `hydra.launcher.nodes`
    (slurm only) and `num_nodes_per_job` each job's `trainer.num_nodes`.
    """
    for num_nodes in dict.fromkeys(num_nodes_per_job):  # each distinct value once, in order
        if num_nodes is None:
            continue  # the key is absent (an old config): Lightning's default, one node
        if num_nodes_of(num_nodes) is None:
            return f"trainer.num_nodes must be a positive integer, got {num_nodes!r}"
        if executor == "slurm" and num_nodes != launcher_nodes:
            return (
                f"trainer.num_nodes={num_nodes} but hydra.launcher.nodes={launcher_nodes}: SLURM would start "
                f"{launcher_nodes} node(s) for a run that waits for {num_nodes}; set both to the same number"
            )
        if executor != "slurm" and num_nodes > 1:
            return (
                f"trainer.num_nodes={num_nodes} but hydra/launcher={executor} starts every job on this machine "
                f"only; use hydra/launcher=slurm hydra.launcher.nodes={num_nodes}, or trainer.num_nodes=1"
            )
    return None


def node_count_overrides(overrides: Iterable[str]) -> tuple[str, ...]:
    """The Hydra overrides of a job that can change its trainer.num_nodes: the trainer group and
    its keys, and experiment=... (an experiment may set them)."""
    picked = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("~+")
        if key in ("trainer", "experiment") or key.startswith("trainer."):
            picked.append(override)
    return tuple(picked)


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
