"""The analysis applications that take a trained model (any source) rather than train one:

- analyze (`ncfine-analyze`, `ncfine.analyze`): NC and fine-class recovery layer by layer: the
  Python API (`api.analyze`), one job (`run`) and its report (`report`);
- discover (`ncfine-discover`): the sub-classes a network separates inside each class, without fine
  labels: one job (`discover`), its report and files (`discover_report`), the CLI (`discover_cli`).

Both get their model from `sources` (a run dir, a weights file, a timm name) and their data and
device from `run.build_source`, and write the run-dir files `ncfine-collect` reads. They stand on
`ncfine.features` (one eval pass for every layer) and `ncfine.analysis` (the metrics), beside the
training pipeline, and import nothing from `ncfine.callbacks`."""
