"""One training run: validate the config, build data, model and trainer, fit, and write the run dir.

- `pipeline`: `train(cfg)` (what `ncfine-train` runs per job): resume or skip, fit, results.json;
- `validation`: the config checks every run makes before loading data (one line per bad value);
- `nodes`: the run's own multi-node checks (node count, a lost DDP peer);
- `requeue`: the error of a run that submitit stops requeueing.
"""
