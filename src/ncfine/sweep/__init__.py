"""Sweeps: the checks and bookkeeping around many runs, which the Hydra launcher plugins use.

- `preflight`: every job composed and checked before any starts or is submitted;
- `status`: the sweep's job record and its exit status (`SweepStatusCallback`);
- `submitit_jobs`: each submitit job's outcome, job states without accounting, quiet logs;
- `multinode`: the launcher's node counts against the jobs' `trainer.num_nodes`;
- `launchers`: ncfine's launchers registered with Hydra.
"""
