"""Feature extraction: the layer that the training callbacks and `ncfine-analyze` both stand on.

- `record.Features`: features of one split with their coarse / fine labels and sample indices;
- `extract.extract_features`: one eval pass of `module.features` over a split, and the rule for
  its autocast (`extraction_autocast`);
- `gather.gather_unique`: the DDP all-gather that drops DistributedSampler's padding duplicates;
- `subsets`: the per-split sample caps and the fixed random subset they take;
- the layer side: `layers` (which modules, by name), `pooling` (a layer output -> one vector per
  sample), `taps` (forward hooks that tap several layers in one pass: `extract_layer_features`).

Lightning-free, like `ncfine.analysis` below it: a `trainer` argument is only read for its precision.
"""

from ncfine.features.extract import extract_features, extraction_autocast, precision_autocast
from ncfine.features.gather import gather_unique
from ncfine.features.layers import INPUT, PENULTIMATE, PSEUDO_LAYERS, default_layers, resolve_layers, stage_layers
from ncfine.features.pooling import check_pool, first_tensor, pool_output
from ncfine.features.record import Features
from ncfine.features.subsets import ANALYSIS_SPLITS, check_sample_caps, samples_cap, subset_indices, subset_mask
from ncfine.features.taps import LOGITS, LayerModel, LayerTaps, as_layer_model, extract_layer_features, layer_order

__all__ = [
    "ANALYSIS_SPLITS",
    "INPUT",
    "LOGITS",
    "PENULTIMATE",
    "PSEUDO_LAYERS",
    "Features",
    "LayerModel",
    "LayerTaps",
    "as_layer_model",
    "check_pool",
    "check_sample_caps",
    "default_layers",
    "extract_features",
    "extract_layer_features",
    "extraction_autocast",
    "first_tensor",
    "gather_unique",
    "layer_order",
    "pool_output",
    "precision_autocast",
    "resolve_layers",
    "samples_cap",
    "stage_layers",
    "subset_indices",
    "subset_mask",
]
