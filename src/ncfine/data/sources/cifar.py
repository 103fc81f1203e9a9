"""CIFAR-10 and CIFAR-100 from their standard python-pickle folders, read without torchvision.

    CIFAR-10:  ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    CIFAR-100: ROOT/cifar-100-python/{train, test, meta}

`root` is the directory containing that folder (the folder itself is accepted too). Each batch is
a dict with "data" (uint8 N x 3072, R, G, B planes row-major) and "labels" (CIFAR-10) or
"fine_labels" + "coarse_labels" (CIFAR-100); both str and bytes keys are read. With
`download=True` a missing folder is fetched from the official archive
(https://www.cs.toronto.edu/~kriz/); a checksum mismatch only warns, since re-encoded copies exist.

Defaults: CIFAR-10 coarse = fine mod 5 (Yang et al. 2023: {airplane,dog} {automobile,frog}
{bird,horse} {cat,ship} {deer,truck}); CIFAR-100 coarse = its 20 official superclasses.
Normalisation: the published per-channel training-set mean and std of each dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ncfine.data.sources._files import as_names, download_and_extract, read_pickle_dict, require_key
from ncfine.data.sources.base import RawSplit, Source, check_split
from ncfine.utils.errors import DataError


class _CIFARSource(Source):
    folder: str
    url: str
    md5: str
    files: dict[str, tuple[str, ...]]
    meta_file: str
    num_fine_classes: int
    fine_names_key: str
    image_size = 32
    in_chans = 3

    def __init__(self, root: str | Path = "data", download: bool = False):
        self.root = Path(root).expanduser()
        self.download = bool(download)
        self._fine_names: list[str] | None = None

    def locate(self) -> Path | None:
        """The folder holding the batches: ROOT/<folder>, or ROOT itself if it is that folder."""
        for candidate in (self.root / self.folder, self.root):
            if (candidate / self.meta_file).is_file():
                return candidate
        return None

    def prepare(self) -> None:
        if self.locate() is None and self.download:
            download_and_extract(self.url, self.root, self.md5)

    def folder_path(self) -> Path:
        found = self.locate()
        if found is None and self.download:
            self.prepare()
            found = self.locate()
        if found is None:
            raise self._not_found()
        return found

    def check_files(self) -> None:
        if self.locate() is None and not self.download:
            raise self._not_found()

    def known_num_fine(self) -> int:
        return self.num_fine_classes

    def _not_found(self) -> DataError:
        return DataError(
            f"{self.title} not found: looked for {self.root / self.folder} and {self.root} "
            f"(expected {', '.join(self.files['train'] + self.files['test'] + (self.meta_file,))}); "
            f"set data.source.download=true or data.source.root=DIR containing {self.folder}"
        )

    @property
    def title(self) -> str:
        return self.name.upper().replace("CIFAR", "CIFAR-")

    @property
    def num_fine(self) -> int:
        return len(self.fine_names())

    def fine_names(self) -> list[str]:
        if self._fine_names is None:
            path = self.folder_path() / self.meta_file
            self._fine_names = as_names(require_key(read_pickle_dict(path), self.fine_names_key, path))
        return self._fine_names

    def load(self, split: str) -> RawSplit:
        folder = self.folder_path()
        images, labels = [], {}
        for name in self.files[check_split(split)]:
            path = folder / name
            batch = read_pickle_dict(path)
            data = np.asarray(require_key(batch, "data", path), dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise DataError(f"{path}: 'data' must be N x 3072 uint8, got shape {data.shape}")
            images.append(data.reshape(-1, 3, 32, 32))
            for key in self.label_keys:
                values = np.asarray(require_key(batch, key, path), dtype=np.int64)
                if values.shape != (data.shape[0],):
                    raise DataError(f"{path}: {len(values)} {key} for {data.shape[0]} images")
                labels.setdefault(key, []).append(values)
        images_t = torch.from_numpy(np.ascontiguousarray(np.concatenate(images)))
        labels_t = {k: torch.from_numpy(np.concatenate(v)) for k, v in labels.items()}
        return self._split(images_t, labels_t)

    label_keys: tuple[str, ...] = ()

    def _split(self, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> RawSplit:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, download={self.download})"


class CIFAR10Source(_CIFARSource):
    name = "cifar10"
    folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    md5 = "c58f30108f718f92721af3b95e74349a"
    files = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    meta_file = "batches.meta"
    num_fine_classes = 10
    fine_names_key = "label_names"
    label_keys = ("labels",)
    default_hierarchy = "mod:5"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def _split(self, images, labels):
        return RawSplit(images=images, fine=labels["labels"], fine_names=self.fine_names())


class CIFAR100Source(_CIFARSource):
    name = "cifar100"
    folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    files = {"train": ("train",), "test": ("test",)}
    meta_file = "meta"
    num_fine_classes = 100
    fine_names_key = "fine_label_names"
    label_keys = ("fine_labels", "coarse_labels")
    default_hierarchy = "superclass"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)

    def coarse_names(self) -> list[str]:
        path = self.folder_path() / self.meta_file
        return as_names(require_key(read_pickle_dict(path), "coarse_label_names", path))

    def _split(self, images, labels):
        return RawSplit(
            images=images,
            fine=labels["fine_labels"],
            fine_names=self.fine_names(),
            coarse=labels["coarse_labels"],
            coarse_names=self.coarse_names(),
        )
