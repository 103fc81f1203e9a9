"""Multi-node DDP: the node counts that must agree, checked before anything waits on them.

A DDP run of `trainer.num_nodes` nodes waits in torch.distributed's rendezvous (30 minutes by
default, then a timeout traceback) until `trainer.num_nodes x trainer.devices` processes have
joined. Under `hydra/launcher=slurm` the processes are the `hydra.launcher.nodes x
hydra.launcher.tasks_per_node` tasks that srun starts; when the counts disagree, Lightning
notices only inside the job, after the queue wait and the data loading, in its own terms, and a
run with `trainer.num_nodes > 1` that nothing starts on other nodes (a plain run,
`hydra/launcher=local`) hangs. So:

- `sweep_error` runs in the sweep command, before anything is submitted (the pre-flight,
  ncfine.sweep.preflight): one line naming `trainer.num_nodes` and `hydra.launcher.nodes`.
- `ncfine.run.nodes.run_error` runs in every run (ncfine.run.validation), before the data is
  loaded: a `trainer.num_nodes > 1` with no launcher of other nodes around it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ncfine.run.nodes import num_nodes_of


def task_rank() -> int:
    """This process's global rank among its submitit job's tasks; 0 outside a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 0
    import submitit

    return submitit.JobEnvironment().global_rank


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
