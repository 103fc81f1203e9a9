"""The numeric path a run trains on: bf16 mixed precision + channels_last where the hardware has
bf16 units, float32 elsewhere.

`trainer.precision: auto` and `model.channels_last: auto` resolve here, from what torch reports
about the device, never from a list of models:

| device | bf16 units (what torch reports) | precision | channels_last |
| --- | --- | --- | --- |
| CUDA | `torch.cuda.is_bf16_supported()` (Ampere and newer) | bf16-mixed | on |
| CUDA | none | 32-true | on |
| CPU | AMX-BF16 or AVX512-BF16 (`torch.cpu.get_capabilities()`) | bf16-mixed | on |
| CPU | none (e.g. AVX2 only) | 32-true | off |
| other (MPS, ...) | - | 32-true | off |

On a CPU without bf16 units oneDNN emulates bf16, reported slower than float32 (not measured
here), hence the rule. Measured (plain PyTorch training step, batch 64, 32x32, 2 threads;
benchmarks/README.md, "The CPU fast path"): bf16 + channels_last over float32 is 1.8-2.0x for
ResNet-18 x 0.25, 1.5-1.8x for VGG-16-bn x 0.25 and 1.4-1.6x for DenseNet-121 g8 on a 2-core AMD
EPYC with AVX512-BF16 only; an Intel box with AMX-BF16 gave 2.75x, 2x and 1.3-1.75x (issue #29).
An explicit `trainer.precision` or `model.channels_last` is kept as given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

AUTO = "auto"
# What `trainer.accelerator` names -> torch device type (Lightning's names; "auto" is resolved below).
ACCELERATOR_DEVICES = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}
# torch.cpu.get_capabilities() flags that mean oneDNN runs bf16 convolutions and matmuls natively,
# best first: the name goes into the log line and results.json.
CPU_BF16_UNITS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


@dataclass(frozen=True)
class ComputePath:
    """Where and how a run computes: device type, Lightning precision, NHWC layout, and why."""

    device: str
    precision: str
    channels_last: bool
    reason: str

    def describe(self) -> str:
        """One line, e.g. `cpu: bf16-mixed + channels_last (AVX512-BF16)`."""
        layout = " + channels_last" if self.channels_last else ""
        return f"{self.device}: {self.precision}{layout} ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_bf16_units() -> str | None:
    """The CPU's bf16 matrix/vector units as torch reports them ("AMX-BF16", "AVX512-BF16"), or None."""
    capabilities = _cpu_capabilities()
    return next((name for flag, name in CPU_BF16_UNITS.items() if capabilities.get(flag)), None)


def _cpu_capabilities() -> dict[str, Any]:
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    # torch < 2.6 has no get_capabilities, only these two probes.
    return {"amx_bf16": torch.cpu._is_amx_tile_supported(), "avx512_bf16": torch.cpu._is_avx512_bf16_supported()}


def device_of_accelerator(accelerator: str) -> str:
    """The torch device type a Lightning `accelerator` lands on ("auto": CUDA, else MPS, else CPU)."""
    accelerator = str(accelerator).lower()
    if accelerator != AUTO:
        return ACCELERATOR_DEVICES.get(accelerator, accelerator)
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def bf16_units(device: str) -> str | None:
    """What makes bf16 fast on `device` (a short name for the log), or None where it is not."""
    if device == "cuda":
        return "CUDA bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    if device == "cpu":
        return cpu_bf16_units()
    return None


def _without_bf16(device: str) -> str:
    if device == "cpu":
        return f"no bf16 units, {torch.backends.cpu.get_cpu_capability()}"
    return "no bf16 on this GPU" if device == "cuda" else f"{device}: float32"


def channels_last_auto(device: str) -> bool:
    """`channels_last: auto`: NHWC on CUDA and on CPUs with bf16 units (oneDNN's fast NHWC kernels;
    measured faster there in float32 too), NCHW elsewhere."""
    return device == "cuda" or (device == "cpu" and cpu_bf16_units() is not None)


def resolve_compute_path(accelerator: str, precision: str, channels_last: bool | str) -> ComputePath:
    """The concrete path for a run's `trainer.accelerator`, `trainer.precision` and `model.channels_last`.

    `auto` values follow the table in this module's docstring; anything else is kept as given, and
    the reason says so (e.g. `trainer.precision=32-true`).
    """
    device = device_of_accelerator(accelerator)
    units = bf16_units(device)
    given = []
    if str(precision) == AUTO:
        precision = "bf16-mixed" if units else "32-true"
    else:
        precision = str(precision)
        given.append(f"trainer.precision={precision}")
    if channels_last == AUTO:
        channels_last = channels_last_auto(device)
    else:
        given.append(f"model.channels_last={str(bool(channels_last)).lower()}")
    found = units or _without_bf16(device)
    reason = "; ".join([found, *[f"{g} as given" for g in given]])
    return ComputePath(device=device, precision=precision, channels_last=bool(channels_last), reason=reason)
