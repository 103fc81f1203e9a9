"""Hierarchical Gaussian mixture: the setting of the theory in Yang, Steinhardt & Hu (ICML 2023).

K coarse classes with F fine classes each, in R^D:

    mu_c     = (coarse_separation / sqrt 2) * u_c                 c = 0..K-1
    mu_{c,j} = mu_c + (fine_separation / sqrt 2) * v_{c,j}        j = 0..F-1
    x        = mu_{c,j} + noise * eps,   eps ~ N(0, I_D)

u_c and v_{c,j} are orthonormal directions (a random orthonormal basis when K + K*F <= D; random
unit vectors, nearly orthogonal in high dimension, otherwise), so two coarse means lie
`coarse_separation` apart and two fine means of one coarse class `fine_separation` apart.
Fine label = c * F + j; the coarse label c is provided, so hierarchy=superclass (the default) uses it.

The data are float features, not images: `RawSplit.x` is (N, D) float32, `is_image` is False, the
DataModule applies no augmentation or normalisation, and a model needs the "mlp" backbone
(`in_features` = D; for the shared (in_chans, img_size) model arguments a feature vector counts as
a 1x1 image with D channels, so in_chans * image_size**2 == D as for every source).
Means come from `seed`; train and test samples from their own streams of `seed`, so changing
n_test_per_fine leaves the training set unchanged.
"""

from __future__ import annotations

import math

import torch

from ncfine.data.sources.base import RawSplit, Source, check_split, positive_int
from ncfine.utils.errors import ConfigError

# Offsets that give each split its own random stream derived from the one seed.
_STREAM = {"means": 0, "train": 1_000_003, "test": 2_000_006}


class SyntheticSource(Source):
    name = "synthetic"
    default_hierarchy = "superclass"
    is_image = False
    image_size = 1

    def __init__(
        self,
        num_coarse: int = 5,
        fine_per_coarse: int = 2,
        dim: int = 32,
        coarse_separation: float = 4.0,
        fine_separation: float = 2.0,
        noise: float = 1.0,
        n_train_per_fine: int = 200,
        n_test_per_fine: int = 100,
        seed: int = 0,
    ):
        self.num_coarse = positive_int(num_coarse, "num_coarse")
        self.fine_per_coarse = positive_int(fine_per_coarse, "fine_per_coarse")
        self.dim = positive_int(dim, "dim")
        for name, value in (
            ("coarse_separation", coarse_separation),
            ("fine_separation", fine_separation),
            ("noise", noise),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        self.coarse_separation, self.fine_separation, self.noise = (
            float(coarse_separation),
            float(fine_separation),
            float(noise),
        )
        self.n_per_fine = {
            "train": positive_int(n_train_per_fine, "n_train_per_fine"),
            "test": positive_int(n_test_per_fine, "n_test_per_fine"),
        }
        self.seed = int(seed)
        self._cache: dict[str, RawSplit] = {}

    @property
    def in_chans(self) -> int:  # type: ignore[override]
        return self.dim

    @property
    def in_features(self) -> int:
        return self.dim

    @property
    def num_fine(self) -> int:
        return self.num_coarse * self.fine_per_coarse

    def known_num_fine(self) -> int:
        return self.num_fine

    def means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse means (K, D), fine means (K*F, D)), float64."""
        g = torch.Generator().manual_seed(self.seed + _STREAM["means"])
        k, n_dirs = self.num_coarse, self.num_coarse + self.num_fine
        if n_dirs <= self.dim:
            q, _ = torch.linalg.qr(torch.randn(self.dim, n_dirs, generator=g, dtype=torch.float64))
            dirs = q.T
        else:
            dirs = torch.randn(n_dirs, self.dim, generator=g, dtype=torch.float64)
            dirs = dirs / dirs.norm(dim=1, keepdim=True)
        coarse = dirs[:k] * (self.coarse_separation / math.sqrt(2))
        offsets = dirs[k:] * (self.fine_separation / math.sqrt(2))
        fine = coarse.repeat_interleave(self.fine_per_coarse, dim=0) + offsets
        return coarse, fine

    def load(self, split: str) -> RawSplit:
        check_split(split)
        if split not in self._cache:
            _, fine_means = self.means()
            n = self.n_per_fine[split]
            g = torch.Generator().manual_seed(self.seed + _STREAM[split])
            fine = torch.arange(self.num_fine).repeat_interleave(n)
            x = fine_means[fine] + self.noise * torch.randn(len(fine), self.dim, generator=g, dtype=torch.float64)
            self._cache[split] = RawSplit(
                images=None,
                x=x.float(),
                fine=fine,
                fine_names=[f"c{c}f{j}" for c in range(self.num_coarse) for j in range(self.fine_per_coarse)],
                coarse=torch.div(fine, self.fine_per_coarse, rounding_mode="floor"),
                coarse_names=[f"c{c}" for c in range(self.num_coarse)],
            )
        return self._cache[split]

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(num_coarse={self.num_coarse}, fine_per_coarse={self.fine_per_coarse}, dim={self.dim}, "
            f"coarse_separation={self.coarse_separation}, fine_separation={self.fine_separation}, noise={self.noise})"
        )
