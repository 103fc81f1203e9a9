"""Where `ncfine-analyze` gets its model: an ncfine run dir, or a timm name with local weights.

- `load_run(DIR)`: DIR/config.yaml (the resolved config of `ncfine-train`) rebuilds the
  `CoarseClassifier` and the data, `DIR/checkpoints/last.ckpt` (or a .ckpt path inside the run
  dir) gives its weights.
- `load_weights(backbone, PATH, ...)`: any timm backbone (or ncfine's `mlp`) with weights from a
  local file: an ncfine/Lightning checkpoint (`state_dict` with `backbone.*` and `head.*`, its
  hyper-parameters rebuild the backbone), a timm checkpoint (`state_dict`/`model`/`state_dict_ema`,
  `module.` prefixes removed) or a bare state dict (.pth, .bin, .safetensors). The timm classifier
  (`pretrained_cfg["classifier"]`, e.g. `fc`, `head.fc`) becomes the analysis head.
- neither: `model.backbone` with random (or `model.pretrained=true`: timm's) weights.

The result is an `AnalysisModel` (backbone + optional linear head), so layer names are the
backbone's own (`layer3`, `features.10`, `blocks.5`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from ncfine.utils.errors import ConfigError, first_line

_WRAPPERS = ("state_dict", "model", "state_dict_ema", "model_ema", "module")


class AnalysisModel(nn.Module):
    """logits = head(backbone(x)); `head` is None when the weights had no usable classifier."""

    def __init__(self, backbone: nn.Module, head: nn.Linear | None):
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass
class LoadedModel:
    module: nn.Module
    backbone: str
    source: str  # one line for results.json and the report
    epochs: int = 0  # epochs the model was trained (known for ncfine checkpoints)
    run_cfg: DictConfig | None = None


def read_weights(path: str | Path) -> dict[str, Any]:
    """The mapping stored in a weights file (.safetensors, or anything torch.load reads)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"weights file {str(path)!r} does not exist (weights= takes a local .pth/.pt/.bin/.ckpt/.safetensors file)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a checkpoint with pickled objects (Lightning hparams): the user's own file
            payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad input
        raise ConfigError(f"cannot read weights file {str(path)!r}: {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(payload, dict):
        raise ConfigError(
            f"weights file {str(path)!r} holds a {type(payload).__name__}, not a state dict or checkpoint"
        )
    return payload


def _state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in _WRAPPERS:
        if isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    tensors = {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConfigError("the weights file holds no tensors (expected a state dict or a checkpoint with one)")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel/DDP
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str, backbone: str) -> None:
    """load_state_dict(strict) with a one-line error naming the file, the backbone and what did not fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise ConfigError(
            f"weights {path!r} do not fit backbone {backbone!r}: {'; '.join(parts)}; "
            "is it a checkpoint of another architecture (set model.backbone) or another stem (model.small_input)?"
        )
    module.load_state_dict(state, strict=True)


def _rebuild_kwargs(hparams: dict) -> dict:
    """CoarseClassifier kwargs from a checkpoint's hyper-parameters: no download (the checkpoint
    holds the weights), no compile, no optimizer (inference only)."""
    kwargs = {k: v for k, v in hparams.items() if k not in ("optimizer", "scheduler")}
    kwargs.update(pretrained=False, compile=False)
    return kwargs


def load_run(run: str | Path) -> LoadedModel:
    """The trained CoarseClassifier of an ncfine run dir (or of a .ckpt file inside one)."""
    path = Path(run)
    ckpt = None
    if path.is_file() and path.suffix == ".ckpt":
        ckpt, path = path, path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if not path.is_dir():
        raise ConfigError(
            f"run {str(run)!r} is not a directory (run= takes an ncfine run dir with config.yaml and checkpoints/)"
        )
    config = path / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"run dir {str(path)!r} has no config.yaml (run= takes a dir written by ncfine-train)")
    run_cfg = OmegaConf.load(config)
    payload = None
    if ckpt is None:
        from ncfine.utils.checkpoints import RESUME_ORDER

        # previous.ckpt when last.ckpt is missing or unreadable (a crash while it was written)
        for name in RESUME_ORDER:
            try:
                ckpt, payload = path / "checkpoints" / name, read_weights(path / "checkpoints" / name)
                break
            except ConfigError:
                continue
        if payload is None:
            raise ConfigError(f"run dir {str(path)!r} has no readable checkpoints/last.ckpt or previous.ckpt")
    else:
        payload = read_weights(ckpt)
    hparams = dict(payload.get("hyper_parameters") or {})
    from ncfine.models import CoarseClassifier

    if not hparams.get("backbone"):
        raise ConfigError(f"checkpoint {str(ckpt)!r} has no hyper_parameters.backbone: not an ncfine checkpoint")
    model = CoarseClassifier(**_rebuild_kwargs(hparams))
    _load_into(model, _state_dict(payload), str(ckpt), hparams["backbone"])
    epochs = int(payload.get("epoch", -1)) + 1
    return LoadedModel(model, hparams["backbone"], f"run {path} ({ckpt.name}, {epochs} epochs)", epochs, run_cfg)


def build_model(
    backbone: str | None,
    weights: str | None,
    *,
    num_coarse: int,
    in_chans: int,
    img_size: int,
    small_input: bool = False,
    pretrained: bool = False,
    width: float = 1.0,
    backbone_kwargs: dict | None = None,
) -> LoadedModel:
    """`model.backbone` with `weights` from a local file, or with timm's (pretrained) / random weights."""
    from ncfine.models.backbone import create_backbone

    kwargs = dict(backbone_kwargs or {})
    if weights is None:
        if not backbone:
            raise ConfigError(
                "nothing to analyse: pass run=DIR (an ncfine run dir) or model.backbone=NAME [weights=PATH]"
            )
        module, dim = create_backbone(
            backbone, small_input, pretrained=pretrained, in_chans=in_chans, img_size=img_size, width=width, **kwargs
        )
        # No trained head: the head of a pretrained timm model has other classes than the data.
        what = "timm pretrained weights" if pretrained else "random weights (untrained)"
        return LoadedModel(AnalysisModel(module, None), backbone, f"{backbone} with {what}")
    if pretrained:
        raise ConfigError("pass either weights=PATH or model.pretrained=true, not both")
    payload = read_weights(weights)
    hparams = payload.get("hyper_parameters") if isinstance(payload.get("hyper_parameters"), dict) else None
    state = _state_dict(payload)
    if hparams and hparams.get("backbone") and any(k.startswith("backbone.") for k in state):
        # An ncfine (Lightning) checkpoint: its hyper-parameters rebuild the exact backbone.
        if backbone and backbone != hparams["backbone"]:
            raise ConfigError(
                f"weights {weights!r} are an ncfine checkpoint of backbone {hparams['backbone']!r}, "
                f"not model.backbone={backbone!r}; drop model.backbone or fix it"
            )
        from ncfine.models import CoarseClassifier

        model = CoarseClassifier(**_rebuild_kwargs(hparams))
        _load_into(model, state, weights, hparams["backbone"])
        epochs = int(payload.get("epoch", -1)) + 1
        return LoadedModel(model, hparams["backbone"], f"ncfine checkpoint {weights} ({epochs} epochs)", epochs)
    if not backbone:
        raise ConfigError(f"weights {weights!r} are a plain state dict: name its architecture with model.backbone=NAME")
    module, dim = create_backbone(backbone, small_input, in_chans=in_chans, img_size=img_size, width=width, **kwargs)
    classifier = str((getattr(module, "pretrained_cfg", None) or {}).get("classifier") or "head")
    head = None
    if f"{classifier}.weight" in state:
        w = state.pop(f"{classifier}.weight")
        b = state.pop(f"{classifier}.bias", None)
        if w.ndim == 2 and w.shape[1] == dim:
            head = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                head.weight.copy_(w)
                if b is not None:
                    head.bias.copy_(b)
    _load_into(module, state, weights, backbone)
    note = f"its {head.out_features}-class head" if head is not None else "no classifier head"
    return LoadedModel(AnalysisModel(module, head), backbone, f"{backbone} with weights {weights} ({note})")
