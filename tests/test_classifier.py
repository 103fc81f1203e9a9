"""CoarseClassifier (Lightning), parameter groups and learning-rate schedules."""

import functools
import logging
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from ncfine.models.classifier import CoarseClassifier
from ncfine.optim import schedulers
from ncfine.optim.param_groups import build_param_groups
from ncfine.utils import compute_path
from ncfine.utils.errors import ConfigError, DivergedError

CONF = Path(__file__).resolve().parents[1] / "conf"
SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def _loader(n=16, side=16, num_coarse=3, nan=False, batch_size=8):
    """Batches (image, coarse, fine, index) as the data modules yield them; two fine classes per coarse class."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(n, 3, side, side, generator=generator)
    if nan:
        image[:] = float("nan")
    fine = torch.randint(0, 2 * num_coarse, (n,), generator=generator)
    dataset = TensorDataset(image, fine // 2, fine, torch.arange(n))
    return DataLoader(dataset, batch_size=batch_size)


def _trainer(**kwargs):
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**options, **kwargs})


def _model(**kwargs):
    options = dict(backbone="resnet10t", num_classes=3, optimizer=SGD, img_size=16)
    return CoarseClassifier(**{**options, **kwargs})


def test_fast_dev_run_fits_logs_the_contract_keys_and_reloads(tmp_path):
    model = _model(scheduler=functools.partial(schedulers.cosine), log_fine_upper=True)
    trainer = _trainer(fast_dev_run=True)
    trainer.fit(model, _loader(), _loader())
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/fine_acc_upper"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert 0 <= float(metrics["val/acc"]) <= 1
    assert float(metrics["val/fine_acc_upper"]) == float(metrics["val/acc"])
    # The optimizer got the norm/bias split, with the partial's weight decay on the weights.
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0.0

    # A checkpoint reloads for analysis without an optimizer or scheduler.
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    reloaded = CoarseClassifier.load_from_checkpoint(path)
    assert reloaded.hparams.backbone == "resnet10t" and reloaded.hparams.img_size == 16
    x = torch.randn(2, 3, 16, 16)
    model.eval(), reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))


class _EpochMeansFromBatches(pl.Callback):
    """Recomputes each epoch's mean loss and accuracy from the batches' logits (a hook on the head) and
    reads what the module logged, at on_train_epoch_end, where the progress line and metrics.csv read it."""

    def __init__(self, model):
        self.logits, self.sums, self.epochs, self.batches = None, [], [], []
        model.head.register_forward_hook(lambda module, args, out: setattr(self, "logits", out.detach()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        target = batch[1]
        loss = nn.functional.cross_entropy(self.logits.float(), target, reduction="sum")
        self.sums.append((float(loss), float((self.logits.argmax(1) == target).sum()), target.shape[0]))

    def on_train_epoch_end(self, trainer, pl_module):
        loss, correct, count = (sum(column) for column in zip(*self.sums))
        logged = trainer.callback_metrics
        self.epochs.append(((loss / count, correct / count), (float(logged["train/loss"]), float(logged["train/acc"]))))
        self.batches.append(self.sums)
        self.sums = []


@pytest.mark.parametrize(
    "check_every, limits",
    [(1, dict(max_epochs=2)), (2, dict(max_epochs=2)), (50, dict(max_epochs=2)), (50, dict(max_steps=4))],
    ids=["log-every-step", "log-every-2", "log-at-epoch-end", "max-steps-mid-epoch"],
)
def test_train_loss_and_acc_are_the_means_over_the_epochs_samples(check_every, limits):
    # 20 samples in batches of 8, 8, 4: an unweighted mean of batch means would differ.
    model = _model(nan_check_every_n_steps=check_every)
    recorder = _EpochMeansFromBatches(model)
    _trainer(callbacks=[recorder], limit_val_batches=0, **limits).fit(model, _loader(n=20))
    assert len(recorder.epochs) == 2  # max_steps=4 stops after the first step of the second epoch
    for expected, logged in recorder.epochs:
        torch.testing.assert_close(logged, expected, rtol=1e-5, atol=1e-6)


class _Unsized(torch.utils.data.IterableDataset):
    """The batches of `_loader(n=20)` (8, 8, 4 samples) from a dataset without a length."""

    def __iter__(self):
        return iter(_loader(n=20))


def test_an_epoch_of_unknown_length_logs_what_it_saw_and_warns_about_the_rest(caplog):
    model = _model(nan_check_every_n_steps=2)
    recorder = _EpochMeansFromBatches(model)
    loader = DataLoader(_Unsized(), batch_size=None)
    with caplog.at_level(logging.WARNING, logger="ncfine.models.classifier"):
        _trainer(callbacks=[recorder], limit_val_batches=0, max_epochs=1).fit(model, loader)
    # Logged at step 2 (16 samples); the epoch's 3rd batch (4 samples) came after the last log.
    assert "leave out its last 4 training samples" in caplog.text
    loss, correct, count = (sum(column) for column in zip(*recorder.batches[0][:2]))
    torch.testing.assert_close(recorder.epochs[0][1], (loss / count, correct / count), rtol=1e-5, atol=1e-6)


def test_features_and_head_for_analysis():
    model = _model()
    x = torch.randn(2, 3, 16, 16)
    model.train()
    h = model.features(x)
    assert model.training  # the mode is put back
    assert h.shape == (2, model.feature_dim) == (2, 512) and not h.requires_grad
    assert model.head.weight.shape == (3, 512)
    model.eval()
    with torch.no_grad():
        # eval mode inside features(): a training-mode call gives the eval-mode features
        torch.testing.assert_close(h, model.penultimate(x))
        torch.testing.assert_close(model(x), model.head(model.features(x)))
    model.train()
    assert not torch.allclose(model.penultimate(x), h)  # batch statistics differ from running ones


def test_non_finite_loss_raises_diverged_error():
    model = _model(nan_check_every_n_steps=50)
    trainer = _trainer(max_epochs=2, limit_val_batches=0)
    with pytest.raises(DivergedError, match="non-finite training loss at epoch 0") as info:
        trainer.fit(model, _loader(nan=True))
    assert info.value.epoch == 0
    # Checked at the epoch's last batch, not after every step.
    assert trainer.global_step == 2


def test_huge_learning_rate_diverges():
    optimizer = functools.partial(torch.optim.SGD, lr=1e30, weight_decay=0.0)
    model = _model(optimizer=optimizer, nan_check_every_n_steps=1)
    with pytest.raises(DivergedError, match="lr 1e\\+30"):
        _trainer(max_epochs=3, limit_val_batches=0).fit(model, _loader())


@pytest.mark.parametrize(
    "optimizer, match",
    [
        (functools.partial(torch.optim.SGD, lr=0.0), "lr must be a positive number, got 0.0"),
        (functools.partial(torch.optim.SGD, lr=-0.1), "got -0.1"),
        (
            functools.partial(torch.optim.SGD, lr=0.1, weight_decay=-1e-4),
            "weight_decay must be a number >= 0, got -0.0001",
        ),
        # torch's own checks, at construction rather than after the Trainer started
        (
            functools.partial(torch.optim.SGD, lr=0.1, momentum=0, nesterov=True),
            "Nesterov momentum requires a momentum",
        ),
        (functools.partial(torch.optim.SGD, lr=0.1, momentum=-0.5), "SGD.*momentum=-0.5.*Invalid momentum value"),
        (functools.partial(torch.optim.AdamW, lr=0.1, betas=(0.9, 1.5)), "Invalid beta parameter"),
    ],
)
def test_bad_optimizer_values_are_one_line_config_errors(optimizer, match):
    with pytest.raises(ConfigError, match=match) as info:
        _model(optimizer=optimizer)
    assert "\n" not in str(info.value)


def test_bad_label_level_and_num_classes():
    with pytest.raises(ConfigError, match="label_level"):
        _model(label_level="superclass")
    with pytest.raises(ConfigError, match="num_classes"):
        _model(num_classes=1)


def test_fine_label_level_trains_on_the_fine_column():
    model = _model(num_classes=6, label_level="fine")
    trainer = _trainer(fast_dev_run=True)
    trainer.fit(model, _loader(), _loader())
    assert "val/acc" in trainer.callback_metrics
    # Coarse labels would not reach class 5; fine ones do, and the 6-way head accepts them.
    assert model.head.out_features == 6
    # Training on the fine labels: val/fine_acc_upper is logged (= val/acc), as for an identity hierarchy.
    assert float(trainer.callback_metrics["val/fine_acc_upper"]) == float(trainer.callback_metrics["val/acc"])
    assert "val/fine_acc_upper" not in _trainer_fit_keys(_model())


def _trainer_fit_keys(model):
    trainer = _trainer(fast_dev_run=True)
    trainer.fit(model, _loader(), _loader())
    return set(trainer.callback_metrics)


def test_compile_keeps_checkpoint_keys():
    # The eager backend exercises the compile path without a C++ toolchain; GPUs use the default (inductor).
    model = _model(compile={"backend": "eager"})
    trainer = _trainer(fast_dev_run=True)
    trainer.fit(model, _loader())
    assert all(not k.startswith("backbone._orig_mod") for k in model.state_dict())
    assert "train/loss" in trainer.callback_metrics


def test_channels_last_matches_the_default_layout():
    torch.manual_seed(0)
    plain = _model().eval()
    fast = _model(channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    assert fast.backbone.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-4)


def test_channels_last_auto_stays_nchw_on_a_cpu_without_bf16_units_and_rejects_other_values(monkeypatch):
    monkeypatch.setattr(compute_path, "_cpu_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": False})
    auto = _model(channels_last="auto")
    auto.setup("fit")  # on such a CPU: nothing to convert
    assert not auto.backbone.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match="channels_last must be true, false or auto, got 'yes'"):
        _model(channels_last="yes")


def test_param_groups_put_norm_and_bias_in_the_zero_decay_group():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 14 * 14), nn.Linear(784, 2)
    )
    groups = build_param_groups(model, weight_decay=5e-4)
    decay, no_decay = groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "4.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "0.bias",
        "1.bias",
        "1.weight",
        "3.bias",
        "3.weight",
        "4.bias",
    ]
    # Without a known weight decay the optimizer's own default applies to the weights.
    assert "weight_decay" not in build_param_groups(model, weight_decay=None)[0]
    assert len(build_param_groups(model, 5e-4, exclude_norm_bias=False)) == 1


def test_param_groups_respect_timm_no_weight_decay():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, patch_size=8, depth=1)
    _, no_decay = build_param_groups(vit, weight_decay=0.05)
    skipped = {id(p) for p in no_decay["params"]}
    assert id(vit.pos_embed) in skipped and id(vit.cls_token) in skipped
    assert id(vit.patch_embed.proj.weight) not in skipped


def _stepped_lrs(factory, steps, max_epochs=4, steps_per_epoch=5, lr=0.1):
    """Learning rates seen by each optimizer step (interval="step") or epoch (interval="epoch")."""
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr, momentum=0.9)
    config = factory(optimizer, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "scheduler.step() before optimizer.step()" would be a bug here
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            config["scheduler"].step()
    return config["interval"], lrs, optimizer


def test_cosine_anneals_to_eta_min_over_all_steps():
    interval, lrs, _ = _stepped_lrs(schedulers.cosine, steps=20)
    assert interval == "step"
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.05) and lrs[-1] < 0.002
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cosine_with_warmup_rises_then_anneals():
    _, lrs, _ = _stepped_lrs(functools.partial(schedulers.cosine, warmup_epochs=1), steps=20)
    assert lrs[0] == pytest.approx(0.001)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 5
    assert lrs[-1] < 0.002


def test_multistep_milestones_are_fractions_of_max_epochs():
    factory = functools.partial(schedulers.multistep, milestones=[0.5, 0.75], gamma=0.1)
    interval, lrs, _ = _stepped_lrs(factory, steps=200, max_epochs=200)
    assert interval == "epoch"
    assert lrs[99] == pytest.approx(0.1) and lrs[100] == pytest.approx(0.01)
    assert lrs[149] == pytest.approx(0.01) and lrs[150] == pytest.approx(0.001)


def test_onecycle_peaks_at_the_optimizer_lr_and_keeps_momentum():
    interval, lrs, optimizer = _stepped_lrs(functools.partial(schedulers.onecycle, pct_start=0.25), steps=20)
    assert interval == "step"
    # torch puts the peak at step pct_start * total - 1.
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 4
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_onecycle_on_a_smoke_run_warns_instead_of_dividing_by_zero():
    with pytest.warns(UserWarning, match="pct_start"):
        interval, lrs, _ = _stepped_lrs(schedulers.onecycle, steps=2, max_epochs=1, steps_per_epoch=2)
    assert lrs[0] == pytest.approx(0.1 / 25)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="at least 2 optimizer steps"):
        schedulers.onecycle(optimizer, max_epochs=1, steps_per_epoch=1)


def test_onecycle_survives_max_steps_that_are_not_a_multiple_of_max_epochs():
    # 10 steps over 3 epochs: a schedule of 3 * (10 // 3) = 9 steps made OneCycleLR raise on step 10.
    model = _model(
        backbone="mlp",
        small_input=False,
        img_size=16,
        backbone_kwargs={"hidden_dim": 8, "depth": 1},
        scheduler=functools.partial(schedulers.onecycle),
    )
    trainer = _trainer(max_epochs=3, max_steps=10, limit_val_batches=0)
    trainer.fit(model, _loader(n=40, batch_size=4))
    assert trainer.global_step == 10


def test_constant_keeps_the_lr():
    _, lrs, _ = _stepped_lrs(schedulers.constant, steps=5)
    assert lrs == [pytest.approx(0.1)] * 5


@pytest.mark.parametrize("name", ["cosine", "multistep", "onecycle"])
def test_schedules_that_need_an_epoch_budget_say_so(name):
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="max_epochs"):
        schedulers.SCHEDULERS[name](optimizer, max_epochs=None, steps_per_epoch=None)


def test_multistep_rejects_epoch_numbers_as_milestones():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="fractions"):
        schedulers.multistep(optimizer, max_epochs=200, steps_per_epoch=10, milestones=[100, 150])


@pytest.mark.parametrize("schedule", ["constant", "cosine", "multistep", "onecycle"])
def test_project_configs_instantiate_and_train(schedule):
    """conf/optimizer/sgd.yaml and conf/scheduler/*.yaml, instantiated as Hydra does, drive a real fit."""
    optimizer = instantiate(OmegaConf.load(CONF / "optimizer" / "sgd.yaml"))
    scheduler = instantiate(OmegaConf.load(CONF / "scheduler" / f"{schedule}.yaml"))
    # The small MLP keeps this about the optimisation path; backbone_kwargs arrive as a DictConfig, as from Hydra.
    model = _model(
        backbone="mlp",
        optimizer=optimizer,
        scheduler=scheduler,
        img_size=8,
        backbone_kwargs=OmegaConf.create({"hidden_dim": 16, "depth": 2}),
    )
    trainer = _trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, _loader(n=16, side=8, batch_size=8))
    assert trainer.global_step == 4
    expected_wd = OmegaConf.load(CONF / "optimizer" / "sgd.yaml").weight_decay
    assert trainer.optimizers[0].param_groups[0]["weight_decay"] == expected_wd


def test_channels_last_auto_converts_in_setup_before_the_strategy_wraps_the_model(monkeypatch):
    """DDP lays out gradient buckets by parameter strides when it wraps the model (strategy.setup, before
    on_fit_start): the 'auto' conversion to channels_last must already have happened in setup()."""
    from types import SimpleNamespace

    def conv_weights_channels_last(model):
        weights = [
            m.weight for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1
        ]
        assert weights  # (1x1 kernels are contiguous in both layouts)
        return all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights)

    for device, bf16_units, expected in (("cuda", False, True), ("cpu", True, True), ("cpu", False, False)):
        capabilities = {"avx512_bf16": bf16_units, "amx_bf16": False}
        monkeypatch.setattr(compute_path, "_cpu_capabilities", lambda capabilities=capabilities: capabilities)
        model = CoarseClassifier("resnet10t", 2, small_input=True, channels_last="auto")
        model.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        model.setup("fit")
        assert conv_weights_channels_last(model) is expected
