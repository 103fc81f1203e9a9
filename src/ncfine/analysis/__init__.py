"""Pure tensor analysis of penultimate features: no Lightning, no I/O.

- `collapse.nc_metrics`: NC1-NC4 (Papyan, Han & Donoho 2020), float64, two-pass.
- `recovery.fine_recovery`: fine classes recovered by k-means from coarse-trained features
  (Yang, Steinhardt & Hu 2023), scored by Hungarian-matched accuracy, NMI and ARI.
- `probes.linear_probe`, `probes.knn_probe`: supervised read-outs of the fine labels.
- `training_keys.feature_metrics`: all of the above for one set of features under the keys
  training logs (the callbacks call its `collapse_keys`, `recovery_keys`, `probe_keys`);
  `layerwise.layerwise_metrics`: the same for many layers under `layer/<name>/...` keys;
  `baselines.baseline_metrics`: the same for the inputs and the untrained network, under
  `baseline/<input|init>/...`: what a recovery number is read against.
- `discovery.discover_subclasses`: the sub-clusters of each superclass with no fine labels (k
  chosen per superclass, 1 allowed), scored by the model's head and, where given, the fine labels.
- `kmeans.kmeans`: batched k-means on torch (CPU/GPU) or faiss (not re-exported here: the
  function would shadow its module).
"""

from ncfine.analysis.collapse import NCAccumulator, nc_metrics
from ncfine.analysis.layerwise import layerwise_metrics
from ncfine.analysis.probes import knn_probe, linear_probe
from ncfine.analysis.recovery import cluster_accuracy, fine_recovery
from ncfine.analysis.training_keys import feature_metrics

__all__ = [
    "nc_metrics",
    "NCAccumulator",
    "fine_recovery",
    "cluster_accuracy",
    "linear_probe",
    "knn_probe",
    "feature_metrics",
    "layerwise_metrics",
]
