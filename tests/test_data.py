"""Label hierarchies, sources, the dataset/DataModule contract and the shared augmentation."""

import pytest
import torch
from omegaconf import OmegaConf

from fakes import (
    CIFAR10_NAMES,
    IMAGEFOLDER_MAPPING,
    pattern_images,
    write_fake_cifar10,
    write_fake_cifar100,
    write_fake_imagefolder,
)
from ncfine.data import (
    CIFAR10Source,
    CIFAR100Source,
    DeviceLoader,
    DigitsSource,
    HierarchicalDataModule,
    HierarchicalDataset,
    ImageFolderSource,
    ImageTransform,
    LabelHierarchy,
    SyntheticSource,
    TensorSource,
    build_hierarchy,
    normalize,
    random_crop_flip,
)
from ncfine.data.transforms import _crop_flip_gather, _crop_flip_slices, channel_stats
from ncfine.utils.errors import ConfigError, DataError


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------- hierarchy
def test_modulo_hierarchy_groups_cifar10_as_in_the_paper():
    h = LabelHierarchy.modulo(10, 5, CIFAR10_NAMES)
    assert (h.num_fine, h.num_coarse, h.is_identity) == (10, 5, False)
    groups = [{CIFAR10_NAMES[f] for f in g} for g in h.groups()]
    assert groups == [
        {"airplane", "dog"},
        {"automobile", "frog"},
        {"bird", "horse"},
        {"cat", "ship"},
        {"deer", "truck"},
    ]
    fine = torch.tensor([0, 5, 9, 3, 7])
    assert h.coarse_of(fine).tolist() == [0, 0, 4, 3, 2]
    assert h.coarse_of(fine).dtype == torch.int64
    assert h.fine_classes_of(3) == [3, 8]
    assert h.coarse_names[0] == "airplane+dog"


def test_identity_hierarchy_and_list_mapping():
    h = LabelHierarchy.identity(4, ["a", "b", "c", "d"])
    assert h.is_identity and h.coarse_names == ["a", "b", "c", "d"]
    assert torch.equal(h.coarse_of(torch.tensor([3, 1, 0])), torch.tensor([3, 1, 0]))
    lst = LabelHierarchy.from_mapping([1, 0, 1, 2], ["a", "b", "c", "d"])
    assert lst.fine_to_coarse == (1, 0, 1, 2) and lst.fine_classes_of(1) == [0, 2]


def test_dict_mapping_accepts_names_and_ids_in_coarse_order():
    h = LabelHierarchy.from_mapping(
        {"vehicle": ["automobile", 9, "airplane", "ship"], "animal": [2, 3, 4, 5, 6, 7]}, CIFAR10_NAMES
    )
    assert h.coarse_names == ["vehicle", "animal"]
    assert h.fine_to_coarse == (0, 0, 1, 1, 1, 1, 1, 1, 0, 0)


@pytest.mark.parametrize(
    "build, error, needles",
    [
        (lambda: LabelHierarchy([0, 1, 3, 0]), DataError, ["contiguous", "missing 2", "{0,1,3}"]),
        (
            lambda: LabelHierarchy.from_mapping(
                {"x": ["airplane", "dog"], "y": ["cat"]}, ["airplane", "cat", "dog", "frog"]
            ),
            DataError,
            ["not mapped", "frog"],
        ),
        (
            lambda: LabelHierarchy.from_mapping({"x": ["cat", "dog"], "y": ["dog", "frog"]}, ["cat", "dog", "frog"]),
            DataError,
            ["more than one coarse", "'dog'", "'x'", "'y'"],
        ),
        (lambda: LabelHierarchy.from_mapping({"x": ["cat", "dgo"]}, ["cat", "dog"]), DataError, ["'dgo'", "cat, dog"]),
        (lambda: LabelHierarchy.from_mapping([0, 1, 0], CIFAR10_NAMES), DataError, ["3 entries", "10 fine classes"]),
        (lambda: LabelHierarchy.modulo(4, 5), DataError, ["mod:5", "num_fine=4"]),
        (
            lambda: LabelHierarchy.from_labels(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 1]), fine_names=["a", "b"]),
            DataError,
            ["'a'", "more than one coarse"],
        ),
        (lambda: build_hierarchy("superclass", 10, CIFAR10_NAMES), ConfigError, ["superclass", "mod:K"]),
        (lambda: build_hierarchy("modd:5", 10), ConfigError, ["'modd:5'", "identity", "mod", "superclass"]),
        (lambda: build_hierarchy("mod:x", 10), ConfigError, ["mod:x"]),
        (lambda: build_hierarchy([0, 1, 0, 1], 10), DataError, ["4 fine classes", "has 10"]),
    ],
    ids=[
        "non-contiguous",
        "missing",
        "repeated",
        "unknown-name",
        "list-length",
        "mod-too-many",
        "labels-inconsistent",
        "superclass-absent",
        "unknown-spec",
        "mod-not-int",
        "spec-wrong-size",
    ],
)
def test_hierarchy_errors_are_one_line_and_name_the_classes(build, error, needles):
    with pytest.raises(error) as exc_info:
        build()
    message = one_line(exc_info)
    for needle in needles:
        assert needle in message, (needle, message)


def test_build_hierarchy_specs_including_omegaconf_containers():
    assert build_hierarchy("mod:5", 10, CIFAR10_NAMES) == LabelHierarchy.modulo(10, 5, CIFAR10_NAMES)
    assert build_hierarchy("mod", 10, num_coarse=2).fine_to_coarse == (0, 1) * 5
    assert build_hierarchy("identity", 10).is_identity
    sup = build_hierarchy("superclass", 4, default_coarse_labels=[1, 0, 0, 1], coarse_names=["p", "q"])
    assert sup.fine_to_coarse == (1, 0, 0, 1) and sup.coarse_names == ["p", "q"]
    as_list = build_hierarchy(OmegaConf.create([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]), 10, CIFAR10_NAMES)
    assert as_list == LabelHierarchy.modulo(10, 5, CIFAR10_NAMES)
    as_dict = build_hierarchy(
        OmegaConf.create({"a": ["airplane", "automobile"], "b": list(CIFAR10_NAMES[2:])}), 10, CIFAR10_NAMES
    )
    assert as_dict.num_coarse == 2 and as_dict.fine_classes_of(0) == [0, 1]


def test_fine_to_coarse_dict_form():
    # {fine class: coarse class}, as an imagefolder YAML may give it; the coarse order is first appearance.
    names = ["husky", "beagle", "siamese", "tabby"]
    h = LabelHierarchy.from_mapping({"husky": "dog", "beagle": "dog", "siamese": "cat", "tabby": "cat"}, names)
    assert h.fine_to_coarse == (0, 0, 1, 1) and h.coarse_names == ["dog", "cat"]
    assert LabelHierarchy.from_mapping({"husky": 1, "beagle": 1, "siamese": 0, "tabby": 0}, names).fine_to_coarse == (
        1,
        1,
        0,
        0,
    )
    assert h == LabelHierarchy.from_mapping({"dog": ["husky", "beagle"], "cat": ["siamese", "tabby"]}, names)
    with pytest.raises(DataError) as exc_info:
        LabelHierarchy.from_mapping({"husky": "dog", "beagle": "dog", "siamese": "cat"}, names)
    assert "not mapped to any coarse class: 3 (tabby)" in one_line(exc_info)
    with pytest.raises(DataError, match="contiguous"):
        LabelHierarchy.from_mapping({"husky": 0, "beagle": 0, "siamese": 2, "tabby": 2}, names)


def test_from_labels_and_out_of_range_lookup():
    h = LabelHierarchy.from_labels(torch.tensor([2, 0, 1, 2, 3]), torch.tensor([1, 0, 0, 1, 1]))
    assert h.fine_to_coarse == (0, 0, 1, 1)
    with pytest.raises(DataError) as exc_info:
        h.coarse_of(torch.tensor([0, 4]))
    assert "4" in one_line(exc_info) and "0..3" in str(exc_info.value)
    with pytest.raises(DataError, match="outside 0..2"):
        LabelHierarchy.from_labels(torch.tensor([0, 1, 5]), torch.tensor([0, 1, 0]), num_fine=3)


# ---------------------------------------------------------------------------------- sources
def test_digits_loads_real_images_with_a_stratified_split():
    source = DigitsSource()
    train, test = source.load("train"), source.load("test")
    assert train.images.shape == (1437, 3, 32, 32) and test.images.shape == (360, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.fine.dtype == torch.int64
    assert train.fine_names == [str(d) for d in range(10)]
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # one channel replicated
    counts = torch.bincount(test.fine, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified 20%
    again = DigitsSource().load("train")
    assert torch.equal(again.images, train.images) and torch.equal(again.fine, train.fine)


def test_digits_native_size_is_the_scaled_sklearn_data():
    from sklearn.datasets import load_digits

    raw = load_digits()
    source = DigitsSource(image_size=8, in_chans=1)
    train, test = source.load("train"), source.load("test")
    assert train.images.shape[1:] == (1, 8, 8)
    assert len(train) + len(test) == len(raw.target)
    # The first training image is one of sklearn's images, scaled 0..16 -> 0..255.
    expected = torch.as_tensor(raw.images * 255 / 16).round().to(torch.uint8)
    matches = (expected == train.images[0, 0]).flatten(1).all(1)
    assert bool(matches.any())


@pytest.mark.parametrize("key_type", ["str", "bytes"])
def test_cifar10_reader_str_and_bytes_keys(tmp_path, key_type):
    write_fake_cifar10(tmp_path, key_type, n_per_batch=12, n_test=20)
    source = CIFAR10Source(root=tmp_path)
    train, test = source.load("train"), source.load("test")
    assert train.images.shape == (60, 3, 32, 32) and test.images.shape == (20, 3, 32, 32)
    assert train.fine_names == CIFAR10_NAMES and source.num_fine == 10
    assert train.fine.tolist() == [i % 10 for i in range(60)]  # batches concatenated in order
    assert torch.equal(train.images[:, 0, 5, 7], train.fine.to(torch.uint8))  # R plane = label
    assert train.images[:, 1, 0, 0].tolist() == list(range(60))  # G plane = position
    assert bool((train.images[:, 2] == 255).all())
    # root may also point at the batches folder itself
    assert torch.equal(CIFAR10Source(root=tmp_path / "cifar-10-batches-py").load("test").fine, test.fine)


def test_missing_cifar_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as exc_info:
        CIFAR10Source(root=tmp_path / "nowhere").load("train")
    message = one_line(exc_info)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data.source.download=true" in message and "data.source.root=DIR" in message
    with pytest.raises(DataError) as exc_info:
        CIFAR100Source(root=tmp_path).load("test")
    assert "cifar-100-python" in one_line(exc_info)


def test_cifar_download_extracts_the_archive_and_only_warns_on_md5(tmp_path, monkeypatch, caplog):
    import tarfile

    write_fake_cifar10(tmp_path / "upstream")
    archive = tmp_path / "upstream" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "upstream" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10Source, "url", archive.as_uri())  # file:// stands in for the network
    source = CIFAR10Source(root=tmp_path / "data", download=True)
    with caplog.at_level("WARNING"):
        dm = HierarchicalDataModule(source)
        dm.prepare_data()
    assert (tmp_path / "data" / "cifar-10-batches-py" / "batches.meta").is_file()
    assert "md5" in caplog.text
    assert dm.split_size("train") == 60 and dm.num_coarse == 5


def test_truncated_cifar_batch_is_a_data_error(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError) as exc_info:
        CIFAR10Source(root=tmp_path).load("train")
    assert "data_batch_3" in one_line(exc_info)


@pytest.mark.parametrize("key_type", ["str", "bytes"])
def test_cifar100_reader_and_superclass_default(tmp_path, key_type):
    write_fake_cifar100(tmp_path, key_type)
    source = CIFAR100Source(root=tmp_path)
    train = source.load("train")
    assert train.images.shape == (200, 3, 32, 32) and len(train.fine_names) == 100
    assert train.coarse_names == [f"super{i:02d}" for i in range(20)]
    assert torch.equal(train.coarse, train.fine % 20)
    dm = HierarchicalDataModule(source)  # hierarchy="default" -> the 20 superclasses
    assert (dm.num_fine, dm.num_coarse) == (100, 20)
    assert dm.hierarchy.coarse_names[3] == "super03" and dm.hierarchy.fine_classes_of(3) == [3, 23, 43, 63, 83]
    assert dm.normalization[0].tolist() == pytest.approx([0.5071, 0.4865, 0.4409])


def test_imagefolder_with_yaml_mapping(tmp_path):
    root, mapping = write_fake_imagefolder(tmp_path, n_train=3, n_test=2, size=10)
    source = ImageFolderSource(root, mapping=str(mapping), image_size=16)
    train, test = source.load("train"), source.load("test")
    assert train.fine_names == ["beagle", "husky", "poodle", "siamese", "tabby"]
    assert train.images.shape == (15, 3, 16, 16) and test.images.shape == (10, 3, 16, 16)
    assert train.fine.tolist() == [f for f in range(5) for _ in range(3)]
    assert bool((train.images[:, 0] == (train.fine * 20)[:, None, None]).all())  # decoded colour
    dm = HierarchicalDataModule(source, hierarchy="superclass")
    assert dm.hierarchy.coarse_names == list(IMAGEFOLDER_MAPPING)
    assert [dm.fine_names[f] for f in dm.hierarchy.fine_classes_of(0)] == ["siamese", "tabby"]
    image, coarse, fine, index = next(iter(dm.val_dataloader()))
    assert torch.equal(coarse, dm.hierarchy.coarse_of(fine)) and image.shape[1:] == (3, 16, 16)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError) as exc_info:
        ImageFolderSource(tmp_path / "absent").load("train")
    assert str(tmp_path / "absent") in one_line(exc_info)
    root, _ = write_fake_imagefolder(tmp_path / "tree")
    incomplete = {"cat": ["siamese", "tabby"], "dog": ["beagle"]}
    with pytest.raises(DataError) as exc_info:
        ImageFolderSource(root, mapping=incomplete).load("train")
    message = one_line(exc_info)
    assert "husky" in message and "poodle" in message
    with pytest.raises(DataError) as exc_info:
        ImageFolderSource(root, mapping=str(root / "missing.yaml")).load("train")
    assert "missing.yaml" in one_line(exc_info)


def test_synthetic_mixture_shapes_and_separation():
    source = SyntheticSource(
        num_coarse=3,
        fine_per_coarse=2,
        dim=16,
        coarse_separation=6.0,
        fine_separation=2.0,
        noise=0.5,
        n_train_per_fine=400,
        n_test_per_fine=50,
        seed=3,
    )
    train, test = source.load("train"), source.load("test")
    assert train.x.shape == (2400, 16) and test.x.shape == (300, 16) and train.x.dtype == torch.float32
    assert train.images is None and not train.is_image
    assert torch.equal(train.coarse, train.fine // 2) and train.fine.bincount().tolist() == [400] * 6
    coarse_means, fine_means = source.means()
    assert torch.cdist(coarse_means, coarse_means)[~torch.eye(3, dtype=bool)].tolist() == pytest.approx([6.0] * 6)
    assert float((fine_means[0] - fine_means[1]).norm()) == pytest.approx(2.0)
    empirical = torch.stack([train.x[train.fine == f].double().mean(0) for f in range(6)])
    assert float((empirical - fine_means).norm(dim=1).max()) < 0.15  # 0.5 * sqrt(16 / 400) = 0.1 expected
    spread = (train.x - fine_means[train.fine].float()).std()
    assert float(spread) == pytest.approx(0.5, rel=0.05)
    # determinism and independent streams
    same = SyntheticSource(
        num_coarse=3,
        fine_per_coarse=2,
        dim=16,
        coarse_separation=6.0,
        fine_separation=2.0,
        noise=0.5,
        n_train_per_fine=400,
        n_test_per_fine=10,
        seed=3,
    ).load("train")
    assert torch.equal(same.x, train.x)
    other = SyntheticSource(num_coarse=3, fine_per_coarse=2, dim=16, seed=4, n_train_per_fine=400).load("train")
    assert not torch.allclose(other.x, train.x)


def test_synthetic_datamodule_serves_features_without_augmentation():
    dm = HierarchicalDataModule(SyntheticSource(dim=8, n_train_per_fine=20, n_test_per_fine=5), batch_size=16)
    assert (dm.is_image, dm.in_features, dm.in_chans, dm.image_size) == (False, 8, 8, 1)
    assert (dm.num_fine, dm.num_coarse) == (10, 5) and dm.normalization is None
    x, coarse, fine, index = next(iter(dm.analysis_dataloader("train")))
    raw = dm.split("train")
    assert torch.equal(x, raw.x[index]) and torch.equal(coarse, fine // 2)


# ---------------------------------------------------------------------------------- transforms
def test_crop_flip_gather_and_slice_paths_agree_exactly():
    images = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8)
    offsets = torch.randint(0, 9, (2, 64))
    flips = torch.rand(64) < 0.5
    assert torch.equal(_crop_flip_gather(images, offsets, flips, 4), _crop_flip_slices(images, offsets, flips, 4))


def test_crop_flip_is_a_shifted_window_with_zero_padding():
    image = pattern_images(1, 8)[0]  # rows 1..8 / cols 1..8
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = random_crop_flip(image, pad=2, generator=generator)
        assert out.shape == image.shape and out.dtype == torch.uint8
        dy, dx, flipped = decode_crop(out, pad=2)
        expected = torch.zeros(2, 12, 12, dtype=torch.uint8)
        expected[:, 2:10, 2:10] = image
        window = expected[:, dy : dy + 8, dx : dx + 8]
        assert torch.equal(out, window.flip(-1) if flipped else window)
    assert torch.equal(random_crop_flip(image, pad=0, flip=False), image)


def test_normalize_and_channel_stats():
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=7)
    reference = images.double().div(255)
    assert mean.tolist() == pytest.approx(reference.mean((0, 2, 3)).tolist())
    assert std.tolist() == pytest.approx(reference.permute(1, 0, 2, 3).flatten(1).std(1, unbiased=False).tolist())
    x = normalize(images, mean.float(), std.float())
    assert x.dtype == torch.float32
    assert x.mean((0, 2, 3)).abs().max() < 1e-5 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-2


def decode_crop(out: torch.Tensor, pad: int) -> tuple[int, int, bool]:
    """(dy, dx, flipped) of a crop of a `pattern_images` image (channel 0 = row + 1, channel 1 = col + 1)."""
    rows, cols = out[0].long(), out[1].long()
    inside = rows > 0
    i, j = [int(v) for v in inside.nonzero()[0]]
    dy = int(rows[i, j]) - 1 - i + pad
    row = cols[i][cols[i] > 0]
    flipped = len(row) > 1 and bool(row[1] < row[0])
    source_j = (out.shape[-1] - 1 - j) if flipped else j
    dx = int(cols[i, j]) - 1 - source_j + pad
    return dy, dx, flipped


# ---------------------------------------------------------------------------------- dataset / DataModule
def pattern_module(n=256, size=16, **kwargs) -> HierarchicalDataModule:
    """Position-encoding images, identity normalisation (x = u / 255), 8 fine classes, mod:4."""
    images = pattern_images(n, size)
    fine = torch.arange(n) % 8
    source = TensorSource(
        train=(images, fine), test=(images[: n // 2], fine[: n // 2]), mean=(0.0, 0.0), std=(1.0, 1.0)
    )
    return HierarchicalDataModule(source, hierarchy="mod:4", **kwargs)


def crop_statistics(loader, epochs: int, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    dys, dxs, flips = [], [], []
    lo, hi = float("inf"), float("-inf")
    for _ in range(epochs):
        for image, _, _, _ in loader:
            assert image.dtype == torch.float32 and image.shape[1:] == (2, 16, 16)
            lo, hi = min(lo, float(image.min())), max(hi, float(image.max()))
            u8 = (image * 255).round().to(torch.uint8)
            for img in u8:
                dy, dx, flipped = decode_crop(img, pad)
                dys.append(dy)
                dxs.append(dx)
                flips.append(flipped)
    return torch.tensor(dys), torch.tensor(dxs), torch.tensor(flips, dtype=torch.float), lo, hi


def test_dataloader_and_device_paths_share_the_augmentation_distribution():
    pad, bins = 4, 9
    stats = {}
    for resident in (False, True):
        dm = pattern_module(device_resident=resident, batch_size=64, seed=1)
        loader = dm.train_dataloader()
        assert isinstance(loader, DeviceLoader) == resident
        stats[resident] = crop_statistics(loader, epochs=8, pad=pad)  # 2048 crops each
    for dy, dx, flips, lo, hi in stats.values():
        assert lo == 0.0 and hi == pytest.approx(16 / 255)  # zero padding appears; values stay the pattern's
        for offsets in (dy, dx):
            freq = torch.bincount(offsets, minlength=bins).double() / len(offsets)
            assert len(freq) == bins and float((freq - 1 / bins).abs().max()) < 0.035, freq  # ~5 sigma
        assert abs(float(flips.mean()) - 0.5) < 0.055
    for a, b in zip(stats[False][:3], stats[True][:3]):
        fa = torch.bincount(a.long(), minlength=bins).double() / len(a)
        fb = torch.bincount(b.long(), minlength=bins).double() / len(b)
        assert float((fa - fb).abs().max()) < 0.05


def test_batches_follow_the_contract_on_both_paths():
    for resident in (False, True):
        dm = pattern_module(device_resident=resident, batch_size=40)
        raw = dm.split("train")
        loaders = {
            "train": dm.train_dataloader(),
            "test": dm.val_dataloader(),
            "train_eval": dm.analysis_dataloader("train"),
        }
        for name, loader in loaders.items():
            split = dm.split(name.split("_")[0])
            seen = []
            for image, coarse, fine, index in loader:
                assert image.dtype == torch.float32 and image.dim() == 4
                assert coarse.dtype == fine.dtype == index.dtype == torch.int64
                assert torch.equal(coarse, dm.hierarchy.coarse_of(fine))
                assert torch.equal(fine, split.fine[index])
                seen.append(index)
            assert len(seen) == len(loader)
            assert sorted(torch.cat(seen).tolist()) == list(range(len(split)))  # each sample once per pass
        # analysis: ordered, unaugmented, every index once
        batches = list(dm.analysis_dataloader("train"))
        index = torch.cat([b[3] for b in batches])
        assert torch.equal(index, torch.arange(len(raw)))
        image = torch.cat([b[0] for b in batches])
        assert torch.allclose(image, raw.images.float() / 255, atol=1e-6)
        assert torch.equal(torch.cat([b[2] for b in batches]), raw.fine)
        val = torch.cat([b[3] for b in dm.val_dataloader()])
        assert torch.equal(val, torch.arange(dm.split_size("test")))


def test_hierarchical_dataset_items():
    h = LabelHierarchy.modulo(4, 2)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    fine = torch.tensor([0, 1, 2, 3, 0, 1])
    ds = HierarchicalDataset(images, fine, h, ImageTransform([0.5] * 3, [0.25] * 3, augment=False))
    image, coarse, f, index = ds[4]
    assert torch.allclose(image, (images[4].float() / 255 - 0.5) / 0.25, atol=1e-6)
    assert (int(coarse), int(f), int(index)) == (0, 0, 4)
    plain = HierarchicalDataset(images, fine, h)
    assert torch.equal(plain[2][0], images[2].float() / 255) and len(plain) == 6


def test_datamodule_digits_end_to_end_facts():
    dm = HierarchicalDataModule("digits", hierarchy="mod:5", batch_size=64)
    dm.setup("fit")
    dm.setup("fit")  # idempotent
    assert (dm.num_fine, dm.num_coarse, dm.in_chans, dm.image_size, dm.is_image) == (10, 5, 3, 32, True)
    assert dm.split_size("train") == 1437 and dm.split_size("test") == 360
    mean, std = dm.normalization
    assert mean.shape == (3,) and 0.2 < float(mean[0]) < 0.4 and float(std[0]) > 0.2
    image, coarse, fine, index = next(iter(dm.train_dataloader()))
    assert image.shape == (64, 3, 32, 32) and torch.equal(coarse, fine % 5)
    assert abs(float(dm.dataset("train")[0][0].mean())) < 3


def test_max_train_samples_is_a_seeded_renumbered_subset():
    a = HierarchicalDataModule("digits", max_train_samples=100, seed=5)
    b = HierarchicalDataModule("digits", max_train_samples=100, seed=5)
    c = HierarchicalDataModule("digits", max_train_samples=100, seed=6)
    assert a.split_size("train") == 100 and a.split_size("test") == 360
    assert torch.equal(a.split("train").images, b.split("train").images)
    assert not torch.equal(a.split("train").images, c.split("train").images)
    index = torch.cat([batch[3] for batch in a.analysis_dataloader("train")])
    assert torch.equal(index, torch.arange(100))


def test_max_test_samples_is_one_subset_for_every_seed():
    a = HierarchicalDataModule("digits", max_test_samples=50, seed=5)
    b = HierarchicalDataModule("digits", max_test_samples=50, seed=6)
    full = HierarchicalDataModule("digits", seed=5)
    assert a.split_size("test") == 50 and a.split_size("train") == full.split_size("train")
    assert torch.equal(a.split("test").images, b.split("test").images)
    # a subset of the real test images, not a reshuffle of the training ones
    rows = {bytes(image.numpy()) for image in full.split("test").images}
    assert all(bytes(image.numpy()) in rows for image in a.split("test").images)
    assert len(list(a.val_dataloader())) * a.eval_batch_size >= 50
    index = torch.cat([batch[3] for batch in a.analysis_dataloader("test")])
    assert torch.equal(index, torch.arange(50))
    # larger than the split: the whole split
    assert HierarchicalDataModule("digits", max_test_samples=10**6).split_size("test") == full.split_size("test")


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"eval_batch_size": -3}, "data.eval_batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"device_resident": "sometimes"}, "auto, true or false"),
        ({"max_train_samples": 0}, "max_train_samples"),
        ({"max_test_samples": 1.5}, "max_test_samples"),
        ({"source": "mnist"}, "'mnist'"),
        ({"source": object()}, "data.source"),
        ({"hierarchy": "mod:11"}, "mod:11"),
        ({"hierarchy": [0, 1]}, "2 entries"),
    ],
)
def test_datamodule_config_errors_are_one_line(kwargs, needle):
    kwargs = {"source": "digits", **kwargs}
    with pytest.raises((ConfigError, DataError)) as exc_info:
        HierarchicalDataModule(**kwargs).setup()
    assert needle in one_line(exc_info)


def test_device_resident_auto_decision(monkeypatch):
    dm = pattern_module(device_resident="auto")
    assert not dm.uses_device_loader(torch.device("cpu"))  # CPU: the DataLoader path
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
    needed = 256 * 2 * 16 * 16 + 128 * 2 * 16 * 16
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (needed * 10, needed * 20))
    assert dm.uses_device_loader(torch.device("cuda", 0))  # 10% of free memory: resident
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (needed * 2, needed * 20))
    assert dm.uses_device_loader(torch.device("cuda", 0))  # decided once per device
    fresh = pattern_module(device_resident="auto")
    assert not fresh.uses_device_loader(torch.device("cuda", 1))  # ~50% of free memory: not resident
    assert pattern_module(device_resident="true").uses_device_loader(torch.device("cpu"))


def test_cifar10_datamodule_from_fake_pickles(tmp_path):
    write_fake_cifar10(tmp_path)
    dm = HierarchicalDataModule(CIFAR10Source(root=tmp_path), hierarchy="default", batch_size=16)
    assert dm.hierarchy == LabelHierarchy.modulo(10, 5, CIFAR10_NAMES)
    image, coarse, fine, index = next(iter(dm.train_dataloader()))
    assert image.shape == (16, 3, 32, 32) and torch.equal(coarse, fine % 5)
