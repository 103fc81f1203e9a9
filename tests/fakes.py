"""Tiny stand-ins for on-disk datasets, written into a tmp dir (no network, milliseconds).

    write_fake_cifar10(tmp_path)             -> tmp_path/cifar-10-batches-py   (str keys)
    write_fake_cifar10(tmp_path, "bytes")    -> the same with bytes keys and bytes label names
    write_fake_cifar100(tmp_path)            -> tmp_path/cifar-100-python      (coarse = fine % 20)
    write_fake_imagefolder(tmp_path)         -> (root, mapping.yaml) with root/{train,test}/<class>/*.png
    pattern_images(n, size)                  -> uint8 (n, 2, size, size): channel 0 = row + 1, channel 1 = col + 1

Fake CIFAR images encode what a reader must get right: in image i, the R plane holds the fine
label, the G plane i % 256 and the B plane 255, so a wrong reshape or split order shows up.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_COARSE = 20


def _key(name: str, key_type: str):
    return name.encode() if key_type == "bytes" else name


def _name(name: str, key_type: str):
    return name.encode() if key_type == "bytes" else name


def _cifar_images(labels: np.ndarray, start: int) -> np.ndarray:
    n = len(labels)
    data = np.empty((n, 3, 32, 32), dtype=np.uint8)
    data[:, 0] = labels[:, None, None].astype(np.uint8)
    data[:, 1] = ((start + np.arange(n)) % 256)[:, None, None].astype(np.uint8)
    data[:, 2] = 255
    return data.reshape(n, 3072)


def fake_cifar_labels(n: int, num_classes: int, offset: int = 0) -> np.ndarray:
    """Every class present (n >= num_classes), interleaved: (offset + i) % num_classes."""
    return (offset + np.arange(n)) % num_classes


def write_fake_cifar10(root: Path, key_type: str = "str", n_per_batch: int = 12, n_test: int = 20) -> Path:
    """Five train batches of `n_per_batch` and a test batch of `n_test`, in the published layout."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    k = lambda name: _key(name, key_type)  # noqa: E731
    for b in range(5):
        labels = fake_cifar_labels(n_per_batch, 10, offset=b * n_per_batch)
        batch = {
            k("batch_label"): f"training batch {b + 1} of 5",
            k("labels"): labels.tolist(),
            k("data"): _cifar_images(labels, b * n_per_batch),
            k("filenames"): [f"{i}.png" for i in range(n_per_batch)],
        }
        _dump(folder / f"data_batch_{b + 1}", batch)
    labels = fake_cifar_labels(n_test, 10, offset=3)
    _dump(folder / "test_batch", {k("labels"): labels.tolist(), k("data"): _cifar_images(labels, 0)})
    _dump(
        folder / "batches.meta",
        {
            k("label_names"): [_name(n, key_type) for n in CIFAR10_NAMES],
            k("num_cases_per_batch"): n_per_batch,
            k("num_vis"): 3072,
        },
    )
    return folder


def write_fake_cifar100(root: Path, key_type: str = "str", n_train: int = 200, n_test: int = 100) -> Path:
    """train/test/meta with fine labels 0..99 and coarse label = fine % 20 (a valid hierarchy)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    k = lambda name: _key(name, key_type)  # noqa: E731
    for split, n in (("train", n_train), ("test", n_test)):
        fine = fake_cifar_labels(n, 100, offset=7 if split == "test" else 0)
        _dump(
            folder / split,
            {
                k("fine_labels"): fine.tolist(),
                k("coarse_labels"): (fine % CIFAR100_COARSE).tolist(),
                k("data"): _cifar_images(fine, 0),
            },
        )
    _dump(
        folder / "meta",
        {
            k("fine_label_names"): [_name(f"fine{i:02d}", key_type) for i in range(100)],
            k("coarse_label_names"): [_name(f"super{i:02d}", key_type) for i in range(CIFAR100_COARSE)],
        },
    )
    return folder


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


IMAGEFOLDER_MAPPING = {"cat": ["siamese", "tabby"], "dog": ["beagle", "husky", "poodle"]}


def write_fake_imagefolder(
    root: Path, mapping: dict[str, list[str]] | None = None, n_train: int = 3, n_test: int = 2, size: int = 10
) -> tuple[Path, Path]:
    """root/{train,test}/<fine>/<i>.png (solid colour = class id * 20) and root/mapping.yaml."""
    import yaml
    from PIL import Image

    mapping = mapping or IMAGEFOLDER_MAPPING
    classes = sorted(c for members in mapping.values() for c in members)
    root = Path(root)
    for split, n in (("train", n_train), ("test", n_test)):
        for fine, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.full((size, size + 2, 3), fine * 20, dtype=np.uint8)  # non-square: resized to square
                pixels[..., 2] = 200
                Image.fromarray(pixels).save(folder / f"{i}.png")
    mapping_path = root / "mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(mapping))
    return root, mapping_path


def pattern_images(n: int, size: int = 32) -> torch.Tensor:
    """uint8 (n, 2, size, size) with channel 0 = row + 1 and channel 1 = col + 1 (0 marks padding)."""
    rows = torch.arange(1, size + 1, dtype=torch.uint8)[:, None].expand(size, size)
    cols = torch.arange(1, size + 1, dtype=torch.uint8)[None, :].expand(size, size)
    return torch.stack([rows, cols]).expand(n, 2, size, size).contiguous()
