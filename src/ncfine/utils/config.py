"""Where the configs live and the OmegaConf resolvers they use."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from omegaconf import OmegaConf


def _find_config_dir() -> Path:
    override = os.environ.get("NCFINE_CONFIG_DIR")
    if override:
        return Path(override).resolve()
    package = Path(__file__).resolve().parents[1]  # src/ncfine, or site-packages/ncfine
    for candidate in (package.parents[1] / "conf", package / "conf"):  # source checkout, then installed wheel
        if (candidate / "train.yaml").exists():
            return candidate
    raise FileNotFoundError(f"ncfine configs not found next to {package}; set NCFINE_CONFIG_DIR to the conf/ directory")


CONFIG_DIR = _find_config_dir()


# File names are limited to 255 bytes (NAME_MAX); a sweep with many overrides passes that easily.
MAX_DIRNAME_BYTES = 200


def dirname(overrides: str) -> str:
    """A directory name for a run from its overrides ('' -> 'default'); '/' would nest dirs.

    Names longer than MAX_DIRNAME_BYTES are cut to their start plus a short hash of the whole
    name, so they stay deterministic (a re-run finds its dir) and distinct.
    """
    name = re.sub(r"[/\\\s]+", "_", overrides.strip()) or "default"
    raw = name.encode()
    if len(raw) <= MAX_DIRNAME_BYTES:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:12]
    return raw[: MAX_DIRNAME_BYTES - len(digest) - 1].decode(errors="ignore") + "~" + digest


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("ncfine.dirname"):
        OmegaConf.register_new_resolver("ncfine.dirname", dirname)
    # Not `${hydra:runtime.cwd}`: that needs a HydraConfig, which the compose API, notebooks and
    # the launching process of a multirun do not have when the paths are resolved.
    if not OmegaConf.has_resolver("ncfine.cwd"):
        OmegaConf.register_new_resolver("ncfine.cwd", os.getcwd)
    if not OmegaConf.has_resolver("ncfine.on_cuda"):
        OmegaConf.register_new_resolver("ncfine.on_cuda", on_cuda)


def on_cuda(accelerator: str) -> bool:
    """Whether a Trainer with this `accelerator` trains on CUDA GPUs (`auto`: when one is present)."""
    accelerator = str(accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()
