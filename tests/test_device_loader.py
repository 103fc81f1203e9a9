"""The device-resident loader: order, determinism, sharding, and a real Lightning fit (on CPU)."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

import ncfine.data.datamodule as datamodule_module
from fakes import pattern_images
from ncfine.data import DeviceLoader, HierarchicalDataModule, ImageTransform, ShardedOrder, TensorSource, shard_indices


def make_loader(n=50, batch_size=8, seed=0, rank=0, world_size=1, shuffle=True):
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    fine = torch.arange(n) % 4
    transform = ImageTransform([0.5] * 3, [0.25] * 3, augment=True, pad=2)
    return DeviceLoader(
        images,
        fine // 2,
        fine,
        batch_size,
        transform=transform,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )


def epoch_of(loader):
    return [tuple(t.clone() for t in batch) for batch in loader]


def test_every_index_once_per_epoch_and_new_order_each_epoch():
    loader = make_loader(n=50, batch_size=8)
    assert len(loader) == 7
    first, second = epoch_of(loader), epoch_of(loader)
    for epoch in (first, second):
        assert len(epoch) == 7 and [len(b[3]) for b in epoch] == [8] * 6 + [2]
        index = torch.cat([b[3] for b in epoch])
        assert sorted(index.tolist()) == list(range(50))
        for image, coarse, fine, idx in epoch:
            assert torch.equal(fine, idx % 4) and torch.equal(coarse, fine // 2)
            assert image.dtype == torch.float32 and image.shape[1:] == (3, 8, 8)
    assert not torch.equal(torch.cat([b[3] for b in first]), torch.cat([b[3] for b in second]))


def test_deterministic_under_the_seed_and_replayable_by_epoch():
    a, b = make_loader(seed=3), make_loader(seed=3)
    for _ in range(2):
        for x, y in zip(epoch_of(a), epoch_of(b)):
            assert all(torch.equal(u, v) for u, v in zip(x, y))
    other = epoch_of(make_loader(seed=4))[0]
    assert not torch.equal(other[3], epoch_of(make_loader(seed=3))[0][3])
    # resume: a fresh loader told "epoch 1" yields what the first loader yielded in its second epoch
    reference = make_loader(seed=3)
    epoch_of(reference)
    second = epoch_of(reference)
    resumed = make_loader(seed=3)
    resumed.sampler.set_epoch(1)
    for x, y in zip(second, epoch_of(resumed)):
        assert all(torch.equal(u, v) for u, v in zip(x, y))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, world", [(10, 1), (10, 3), (11, 2), (13, 4), (3, 4), (16, 4)])
def test_sharding_matches_distributed_sampler_and_covers_all(n, world, shuffle):
    shards = []
    for rank in range(world):
        ours = ShardedOrder(n, shuffle=shuffle, seed=7, rank=rank, world_size=world)
        ours.set_epoch(2)
        reference = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=7)
        reference.set_epoch(2)
        assert list(ours) == list(reference) and len(ours) == len(reference)
        shards.append(ours.indices())
    assert len({len(s) for s in shards}) == 1  # equal batch counts on every rank
    every = torch.cat(shards)
    assert set(every.tolist()) == set(range(n))
    assert len(every) - n == (-n) % world  # only the wrap-around padding is duplicated


def test_shard_indices_drop_last():
    order = torch.arange(10)
    assert [shard_indices(order, r, 3, drop_last=True).tolist() for r in range(3)] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_sharded_device_loaders_have_equal_lengths_and_cover_the_split():
    loaders = [make_loader(n=45, batch_size=4, rank=r, world_size=4) for r in range(4)]
    assert len({len(loader) for loader in loaders}) == 1
    index = torch.cat([b[3] for loader in loaders for b in loader])
    assert set(index.tolist()) == set(range(45)) and len(index) == 48


def pattern_datamodule(resident, n=37):
    images = pattern_images(n, 8)
    fine = torch.arange(n) % 4
    source = TensorSource(train=(images, fine), test=(images[:20], fine[:20]), mean=(0.0, 0.0), std=(1.0, 1.0))
    return HierarchicalDataModule(source, hierarchy="mod:2", batch_size=8, eval_batch_size=5, device_resident=resident)


@pytest.mark.parametrize("resident", [False, True])
def test_analysis_loader_shards_like_distributed_sampler(monkeypatch, resident):
    """Simulate torch.distributed (world size 3) without launching processes."""
    dm = pattern_datamodule(resident)
    dm.setup()
    monkeypatch.setattr(datamodule_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(datamodule_module.dist, "get_world_size", lambda group=None: 3)
    per_rank = []
    for rank in range(3):
        monkeypatch.setattr(datamodule_module.dist, "get_rank", lambda group=None, r=rank: r)
        batches = list(dm.analysis_dataloader("train"))
        index = torch.cat([b[3] for b in batches])
        assert index.tolist() == (list(range(37)) + [0, 1])[rank::3]  # DistributedSampler's wrap-around padding
        per_rank.append(index)
    assert [len(i) for i in per_rank] == [13, 13, 13]
    every = torch.cat(per_rank)
    assert set(every.tolist()) == set(range(37))  # 2 padding duplicates, dropped by index in the analysis
    assert sorted(every.tolist())[:2] == [0, 0] and every.tolist().count(1) == 2


class TinyModule(pl.LightningModule):
    """A linear classifier that records the indices it is trained on, per epoch."""

    def __init__(self, in_features, num_classes):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, num_classes))
        self.seen: dict[int, list[torch.Tensor]] = {}
        self.val_batches = 0

    def training_step(self, batch, batch_idx):
        image, coarse, fine, index = batch
        assert image.dtype == torch.float32 and torch.equal(coarse, fine % 2)
        self.seen.setdefault(self.current_epoch, []).append(index.cpu())
        return torch.nn.functional.cross_entropy(self.net(image), coarse)

    def validation_step(self, batch, batch_idx):
        self.val_batches += 1
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("resident", [True, False])
def test_lightning_fit_consumes_the_loader(resident):
    dm = pattern_datamodule(resident)
    dm.setup()
    model = TinyModule(dm.in_features, dm.num_coarse)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    batches_per_epoch = 5  # ceil(37 / 8)
    assert trainer.global_step == 3 * batches_per_epoch
    assert model.val_batches == 3 * 4  # ceil(20 / 5) per validation
    orders = {epoch: torch.cat(parts) for epoch, parts in model.seen.items()}
    assert sorted(orders) == [0, 1, 2]
    for order in orders.values():
        assert sorted(order.tolist()) == list(range(37))
    if resident:
        loader = trainer.train_dataloader
        assert isinstance(loader, DeviceLoader)
        for epoch, order in orders.items():  # Lightning's set_epoch drives the order
            assert torch.equal(order, loader.sampler.indices(epoch))
