"""`RecoverySettings`: how fine-class recovery is measured, defined once for every consumer.

The NC / fine-recovery callbacks, the layer-wise callback, `ncfine-analyze` and `ncfine.analyze`
all take these options; their YAML is the one node `conf/recovery/default.yaml`, merged into
`callbacks.fine_recovery`, `callbacks.layerwise` and ncfine-analyze's `analysis`, so a new option
is one field here and one line there (tests/test_recovery_settings.py holds the two together).

    modes               k-means per superclass (k = its number of fine classes; the protocol of
                        Yang, Steinhardt & Hu 2023) and/or globally (k = number of fine classes)
    normalize           features before k-means: none | center | l2 | center_l2
    kmeans_backend      auto | torch | faiss;  kmeans_n_init, kmeans_max_iter
    reconstruct         also the fine labels reconstructed end to end (superclass from the head,
                        fine class from k-means inside it), where the head's predictions are known
    probe               linear probe of the fine labels, fit on train, scored on test;
                        probe_weight_decay, probe_max_iter
    knn                 cosine k-NN of test against train; knn_k
    seed                k-means++ seeding
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from ncfine.analysis.recovery import NORMALIZERS
from ncfine.utils.errors import ConfigError

RECOVERY_MODES = ("per_coarse", "global")


@dataclass(frozen=True)
class RecoverySettings:
    """k-means, probe and k-NN options of the fine-recovery metrics (module docstring)."""

    modes: tuple[str, ...] = RECOVERY_MODES
    normalize: str = "none"
    kmeans_backend: str = "auto"
    kmeans_n_init: int = 10
    kmeans_max_iter: int = 100
    reconstruct: bool = True
    probe: bool = True
    probe_weight_decay: float = 1e-4
    probe_max_iter: int = 100
    knn: bool = True
    knn_k: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        modes = (self.modes,) if isinstance(self.modes, str) else tuple(self.modes)
        object.__setattr__(self, "modes", modes)
        bad = [m for m in modes if m not in RECOVERY_MODES]
        if bad:
            raise ConfigError(f"unknown fine-recovery mode(s) {bad}; valid modes are {list(RECOVERY_MODES)}")
        # Checked here, not in the first epoch's k-means, so a typo fails before training.
        if self.normalize not in NORMALIZERS:
            raise ConfigError(
                f"unknown fine-recovery normalize {self.normalize!r}; valid values are {list(NORMALIZERS)}"
            )

    @classmethod
    def from_options(cls, options: Mapping | None, where: str = "fine recovery") -> RecoverySettings:
        """From a mapping of options (a config node, keyword arguments); `where` names the node in
        the one-line error for an unknown option."""
        options = dict(options or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {unknown}; valid options are {valid}")
        return cls(**options)

    def kmeans_options(self) -> dict:
        """Keyword arguments of `training_keys.recovery_keys`."""
        return dict(
            modes=self.modes,
            normalize=self.normalize,
            kmeans_backend=self.kmeans_backend,
            kmeans_n_init=self.kmeans_n_init,
            kmeans_max_iter=self.kmeans_max_iter,
            seed=self.seed,
            reconstruct=self.reconstruct,
        )

    def probe_options(self) -> dict:
        """Keyword arguments of `training_keys.probe_keys`."""
        return dict(
            probe=self.probe,
            probe_weight_decay=self.probe_weight_decay,
            probe_max_iter=self.probe_max_iter,
            knn=self.knn,
            knn_k=self.knn_k,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_settings(settings: RecoverySettings | None, options: Mapping, where: str) -> RecoverySettings:
    """`settings`, or a `RecoverySettings` from keyword `options` (an API takes either, not both)."""
    if settings is not None and options:
        raise ConfigError(f"{where}: pass settings= or the options {sorted(options)} as keywords, not both")
    return settings if settings is not None else RecoverySettings.from_options(options, where)
