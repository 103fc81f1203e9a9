"""The analyze application (`ncfine-analyze`, `ncfine.analyze`): the Python API (`api.analyze`),
where the model comes from (`sources`: a run dir, a weights file, a timm name), one job (`run`)
and its report (`report`). It stands on `ncfine.features` (one eval pass for every layer) and
`ncfine.analysis` (the metrics), beside the training pipeline, and imports nothing from
`ncfine.callbacks`."""
