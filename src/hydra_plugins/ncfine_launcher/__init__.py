"""ncfine's Hydra launchers (`hydra/launcher=local|slurm`): hydra-submitit-launcher's, collecting
every job's outcome. Hydra finds plugins in the `hydra_plugins` namespace package only."""
