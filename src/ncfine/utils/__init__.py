"""Small shared helpers below every package: atomic files, errors, logging, config paths, checkpoints, devices."""
