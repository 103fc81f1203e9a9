"""One eval pass over the data gives the pooled features of every chosen layer.

Forward hooks on the named modules reduce each output as it is produced (`pooling`), so the pass
keeps (N, D_layer) per layer and no activation map outlives its batch; `penultimate` is the input
of the classifier head (a forward pre-hook), `input` the batch itself. Rows are gathered over DDP
ranks, padding duplicates dropped and sorted by sample index with the helper the penultimate pass
uses (`ncfine.features.gather.gather_unique`), so every rank holds what a single-process run
computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

from ncfine.features.gather import gather_unique
from ncfine.features.layers import INPUT, PENULTIMATE, resolve_layers
from ncfine.features.pooling import check_pool, first_tensor, pool_output
from ncfine.features.record import Features
from ncfine.utils.errors import ConfigError

LOGITS = "_logits"  # the head's output, kept for the coarse accuracy; not a layer


@dataclass
class LayerModel:
    """What extraction needs of a model: `module` (run and put in eval mode), `root` (the module
    layer names refer to: the backbone of a CoarseClassifier, else the model), `head` (its input is
    `penultimate`; a Linear head also gives NC3/NC4 and the coarse accuracy) or None (then
    `penultimate` is the model's output)."""

    module: nn.Module
    root: nn.Module
    head: nn.Module | None = None

    @property
    def linear_head(self) -> nn.Linear | None:
        return self.head if isinstance(self.head, nn.Linear) else None


def as_layer_model(module: nn.Module | LayerModel, head: nn.Module | str | None = None) -> LayerModel:
    """Wrap any `nn.Module`: an ncfine `CoarseClassifier` (layers named inside its backbone, its
    linear head), a timm model (`get_classifier()`), else `head` if given (a module or its name),
    else the model's last registered leaf module when that is an `nn.Linear`."""
    if isinstance(module, LayerModel):
        return module
    if not isinstance(module, nn.Module):
        raise ConfigError(f"analyze needs a torch.nn.Module, got {type(module).__name__}")
    backbone = getattr(module, "backbone", None)
    root = (
        backbone if isinstance(backbone, nn.Module) and isinstance(getattr(module, "head", None), nn.Module) else module
    )
    if isinstance(head, str):
        modules = dict(module.named_modules())
        if head not in modules:
            raise ConfigError(f"head {head!r} is not a module of {type(module).__name__}")
        head = modules[head]
    if head is None and root is not module:
        head = module.head
    if head is None and callable(getattr(module, "get_classifier", None)):
        head = module.get_classifier()
    if head is None:
        leaves = [m for m in module.modules() if not list(m.children())]
        head = leaves[-1] if leaves and isinstance(leaves[-1], nn.Linear) else None
    return LayerModel(module, root, head)


class LayerTaps:
    """Forward hooks that pool the chosen layers' outputs during `run(x)`; use as a context manager.

    `run(x)` returns {layer: (B, D) float32} in the order the layers fired (depth order), with
    `input` first and `penultimate` after the backbone; a layer that does not fire raises.
    """

    def __init__(
        self, model: LayerModel, layers: Sequence[str], pool: str = "avg", flatten_size: int = 4, logits: bool = False
    ):
        check_pool(pool, flatten_size)
        self.model, self.layers, self.pool, self.flatten_size = model, list(layers), pool, flatten_size
        self.logits = logits and model.head is not None
        if PENULTIMATE in self.layers and model.head is None:
            self._penultimate_module = model.module
        else:
            self._penultimate_module = None
        self.prefix_tokens = getattr(model.root, "num_prefix_tokens", None)
        grid = getattr(getattr(model.root, "patch_embed", None), "grid_size", None)
        self.grid = tuple(int(g) for g in grid) if grid is not None else None
        self._handles: list = []
        self._out: dict[str, torch.Tensor] = {}

    def _pool(self, name: str, output) -> None:
        tensor = first_tensor(output)
        if tensor is None:
            raise ConfigError(f"layer {name!r} returned {type(output).__name__}, not a tensor; choose another layer")
        # A module called twice in one forward (a shared block) keeps its last output.
        self._out[name] = pool_output(tensor, self.pool, self.flatten_size, self.prefix_tokens, self.grid)

    def __enter__(self) -> LayerTaps:
        modules = dict(self.model.root.named_modules())
        for name in self.layers:
            if name in (INPUT, PENULTIMATE):
                continue
            self._handles.append(
                modules[name].register_forward_hook(lambda mod, args, out, name=name: self._pool(name, out))
            )
        if PENULTIMATE in self.layers:
            if self._penultimate_module is not None:
                self._handles.append(
                    self._penultimate_module.register_forward_hook(lambda mod, args, out: self._pool(PENULTIMATE, out))
                )
            else:
                self._handles.append(
                    self.model.head.register_forward_pre_hook(lambda mod, args: self._pool(PENULTIMATE, args[0]))
                )
        if self.logits:
            self._handles.append(
                self.model.head.register_forward_hook(
                    lambda mod, args, out: self._out.__setitem__(LOGITS, first_tensor(out).detach().float())
                )
            )
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._out = {}
        if INPUT in self.layers:
            self._out[INPUT] = pool_output(x, self.pool, self.flatten_size)
        self.model.module(x)
        missing = [name for name in self.layers if name not in self._out]
        if missing:
            raise ConfigError(
                f"layer(s) {missing} produced no output in the forward pass (not used by "
                f"{type(self.model.module).__name__}.forward); choose layers that run"
            )
        out, self._out = self._out, {}
        return out


@torch.no_grad()
def extract_layer_features(
    model: nn.Module | LayerModel,
    batches: Iterable,
    device: torch.device | str,
    split: str,
    layers: Sequence[str] | str | None = None,
    pool: str = "avg",
    flatten_size: int = 4,
    autocast_dtype: torch.dtype | None = None,
    logits: bool = False,
) -> dict[str, Features]:
    """{layer: Features} of `split` for every layer, from one pass over `batches` of
    (image, coarse, fine, index) (index optional: the running position), in eval mode; layers
    in depth order, gathered over ranks. With `logits`, the head's output too, under `LOGITS`."""
    model = as_layer_model(model)
    names = resolve_layers(model.root, layers)
    device = torch.device(device)
    module = model.module
    was_training = module.training
    module.eval()
    autocast = torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    rows: dict[str, list[torch.Tensor]] = {}
    coarse, fine, index = [], [], []
    seen = 0
    try:
        with LayerTaps(model, names, pool, flatten_size, logits=logits) as taps:
            for batch in batches:
                image, c, f = batch[0], batch[1], batch[2]
                i = batch[3] if len(batch) > 3 else torch.arange(seen, seen + len(c))
                seen += len(c)
                with autocast:
                    out = taps.run(image.to(device, non_blocking=True))
                for name, h in out.items():
                    rows.setdefault(name, []).append(h)
                coarse.append(c.to(device))
                fine.append(f.to(device))
                index.append(i.to(device))
    finally:
        module.train(was_training)
    if not rows:
        raise ConfigError(f"no {split} batches to analyse")
    c, f, i = torch.cat(coarse).long(), torch.cat(fine).long(), torch.cat(index).long()
    return {name: gather_unique(Features(split, torch.cat(hs), c, f, i)) for name, hs in rows.items()}


def layer_order(features: dict[str, Features]) -> list[str]:
    """The layer names of an `extract_layer_features` result, depth order, without LOGITS."""
    return [name for name in features if name != LOGITS]
