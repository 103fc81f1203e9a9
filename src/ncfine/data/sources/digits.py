"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grayscale images, no download.

Split: stratified 80/20 with a fixed seed (sklearn.model_selection.train_test_split(stratify=y,
test_size=0.2, random_state=split_seed)), i.e. 1,437 train and 360 test images, each split kept in
the dataset's original order. Pixel values 0..16 are scaled to 0..255 (round(v * 255 / 16)), the
images upsampled once at load to `image_size` (bilinear) and the single channel replicated to
`in_chans` (3 by default, so RGB backbones need no change).
Default hierarchy: coarse = digit mod 5, i.e. {0,5} {1,6} {2,7} {3,8} {4,9}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncfine.data.sources.base import RawSplit, Source, check_in_chans, check_split, positive_int
from ncfine.utils.errors import ConfigError

INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


class DigitsSource(Source):
    name = "digits"
    default_hierarchy = "mod:5"

    def __init__(
        self,
        image_size: int = 32,
        in_chans: int = 3,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        interpolation: str = "bilinear",
    ):
        self.image_size = positive_int(image_size, "image_size")
        self.in_chans = check_in_chans(in_chans)
        if not 0.0 < float(test_fraction) < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {interpolation!r}; valid: {list(INTERPOLATIONS)}")
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.interpolation = interpolation
        self._splits: dict[str, RawSplit] | None = None

    @property
    def num_fine(self) -> int:
        return 10

    def known_num_fine(self) -> int:
        return 10

    def load(self, split: str) -> RawSplit:
        check_split(split)
        if self._splits is None:
            self._splits = self._load_all()
        return self._splits[split]

    def _load_all(self) -> dict[str, RawSplit]:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)  # (N,1,8,8)
        if self.image_size != images.shape[-1]:
            kwargs = {} if self.interpolation == "nearest" else {"align_corners": False}
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode=self.interpolation, **kwargs)
        images = images.round_().clamp_(0, 255).to(torch.uint8).expand(-1, self.in_chans, -1, -1).contiguous()
        labels = torch.as_tensor(bunch.target, dtype=torch.int64)
        positions = torch.arange(len(labels))
        train_rows, test_rows = train_test_split(
            positions.numpy(), test_size=self.test_fraction, stratify=labels.numpy(), random_state=self.split_seed
        )
        names = [str(d) for d in range(10)]
        out = {}
        for split, rows in (("train", train_rows), ("test", test_rows)):
            rows = torch.as_tensor(sorted(rows.tolist()), dtype=torch.long)
            out[split] = RawSplit(images=images[rows], fine=labels[rows], fine_names=names)
        return out

    def __repr__(self) -> str:
        return f"DigitsSource(image_size={self.image_size}, in_chans={self.in_chans})"
