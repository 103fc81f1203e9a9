"""Any image dataset laid out as ROOT/<split>/<fine class>/<image>, plus a fine -> coarse mapping.

    ROOT/train/husky/001.jpg, ROOT/train/beagle/..., ROOT/test/husky/...
    mapping.yaml:  {dog: [husky, beagle], cat: [siamese, tabby]}
             or:   {husky: dog, beagle: dog, siamese: cat, tabby: cat}   (fine -> coarse)

Fine classes are the sorted sub-directory names of the train split (the test split may lack some,
not add any). Every image is decoded once with PIL, converted to RGB (or L for in_chans=1),
resized to image_size x image_size (bilinear) and kept in memory as uint8. `mapping` (a YAML path
or a dict) supplies the dataset's coarse labels, so hierarchy=superclass uses it; without a mapping
use mod:K, identity, a list or a dict as the DataModule's hierarchy. Normalisation statistics are
computed from the training split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ncfine.data.hierarchy import LabelHierarchy, _plain
from ncfine.data.sources.base import RawSplit, Source, check_in_chans, check_split, positive_int
from ncfine.utils.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderSource(Source):
    name = "imagefolder"
    default_hierarchy = "superclass"

    def __init__(
        self,
        root: str | Path,
        mapping: str | Path | Mapping | None = None,
        image_size: int = 32,
        in_chans: int = 3,
        train_dir: str = "train",
        test_dir: str = "test",
    ):
        if root is None:
            raise DataError("imagefolder needs data.source.root=DIR with DIR/train/<class>/*.jpg")
        self.root = Path(root).expanduser()
        self.mapping = mapping
        self.image_size = positive_int(image_size, "image_size")
        self.in_chans = check_in_chans(in_chans)
        self.split_dirs = {"train": train_dir, "test": test_dir}
        self._classes: list[str] | None = None
        self._hierarchy: LabelHierarchy | None = None

    def check_files(self) -> None:
        self.split_dir("train")

    def split_dir(self, split: str) -> Path:
        if not self.root.is_dir():
            raise DataError(
                f"image folder root {self.root} does not exist; set data.source.root=DIR with DIR/train/<class>/*.jpg"
            )
        path = self.root / self.split_dirs[check_split(split)]
        if not path.is_dir():
            raise DataError(f"image folder split {split!r} not found: {path} is not a directory")
        return path

    def fine_names(self) -> list[str]:
        if self._classes is None:
            train = self.split_dir("train")
            classes = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not classes:
                raise DataError(f"{train} has no class sub-directories (expected {train}/<class>/<image>)")
            self._classes = classes
        return self._classes

    @property
    def num_fine(self) -> int:
        return len(self.fine_names())

    def mapping_hierarchy(self) -> LabelHierarchy | None:
        """The fine -> coarse map from `mapping`, validated against the class directories."""
        if self.mapping is None:
            return None
        if self._hierarchy is None:
            mapping = self.mapping
            if not isinstance(mapping, Mapping):
                mapping = _read_yaml_mapping(Path(mapping).expanduser())
            self._hierarchy = LabelHierarchy.from_mapping(_plain(mapping), self.fine_names())
        return self._hierarchy

    def load(self, split: str) -> RawSplit:
        folder = self.split_dir(split)
        names = self.fine_names()
        present = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        extra = [c for c in present if c not in names]
        if extra:
            raise DataError(f"{folder} has classes not in the train split: {extra}")
        images, labels = [], []
        for fine, cls in enumerate(names):
            files = (
                sorted(p for p in (folder / cls).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
                if cls in present
                else []
            )
            if split == "train" and not files:
                raise DataError(f"class directory {folder / cls} has no images ({', '.join(IMAGE_SUFFIXES)})")
            images.extend(self._decode(p) for p in files)
            labels.extend([fine] * len(files))
        if not images:
            raise DataError(f"no images under {folder}")
        fine_t = torch.tensor(labels, dtype=torch.int64)
        hierarchy = self.mapping_hierarchy()
        return RawSplit(
            images=torch.from_numpy(np.stack(images)),
            fine=fine_t,
            fine_names=list(names),
            coarse=None if hierarchy is None else hierarchy.coarse_of(fine_t),
            coarse_names=None if hierarchy is None else hierarchy.coarse_names,
        )

    def _decode(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if self.in_chans == 3 else "L")
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"could not read image {path} ({exc})") from None
        return array.reshape(self.image_size, self.image_size, -1).transpose(2, 0, 1).copy()

    def __repr__(self) -> str:
        return f"ImageFolderSource(root={str(self.root)!r}, mapping={self.mapping!r}, image_size={self.image_size})"


def _read_yaml_mapping(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise DataError(
            f"hierarchy mapping file {path} does not exist (a YAML dict {{coarse: [fine class dirs]}} or {{fine class dir: coarse}})"
        )
    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"could not parse {path} as YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(mapping, dict):
        raise DataError(
            f"{path} must hold a dict {{coarse: [fine class dirs]}} or {{fine class dir: coarse}}, got {type(mapping).__name__}"
        )
    return mapping
