"""Layer-wise analysis: which layers (`discovery`), how each output becomes a vector (`pooling`),
one eval pass for all of them (`extract`), the Python API (`api.analyze`), and the pieces of
`ncfine-analyze` (`sources`: model from a run dir / weights file, `run`: one job, `report`).
The metrics themselves are `ncfine.analysis.layerwise` (pure torch)."""
