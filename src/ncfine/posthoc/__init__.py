"""The apps that take a trained model (any source) rather than train one: ncfine-analyze and ncfine-discover.

- analyze (`ncfine-analyze`, `ncfine.analyze`): NC and fine-class recovery layer by layer: the
  Python API (`analyze`), one job (`analyze_job`), its report (`analyze_report`), the CLI
  (`analyze_cli`);
- discover (`ncfine-discover`): the sub-classes a network separates inside each class, without fine
  labels: one job (`discover_job`), its report and files (`discover_report`), the CLI (`discover_cli`).

Both get their model from `sources` (a run dir, a weights file, a timm name) and their data and
device from `analyze_job.build_source`, and write the run-dir files `ncfine-collect` reads. They
stand on `ncfine.features` (one eval pass for every layer) and `ncfine.analysis` (the metrics),
beside the training run, and import nothing from `ncfine.callbacks` or `ncfine.run`."""
