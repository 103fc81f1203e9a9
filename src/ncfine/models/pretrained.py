"""Fail fast when timm's pretrained weights can be neither found locally nor downloaded.

Without this check, `timm.create_model(name, pretrained=True)` on an offline machine spends
about a minute in Hugging Face Hub retries before it fails with a multi-line traceback. Before
timm is called, `check_pretrained_available` resolves where timm would load the weights from
(the same order as timm: a local `file` in the pretrained config, then the Hugging Face Hub id,
then the URL), looks for them in the local caches (HF_HOME / HF_HUB_CACHE, torch.hub's
checkpoints dir), and if they are not there, checks once that the server can be reached
(HF_HUB_OFFLINE=1 says it cannot; otherwise a TCP connect with a short timeout). If neither, it
raises one line naming the weights and how to pass a local file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ncfine.utils.errors import ConfigError

CONNECT_TIMEOUT_S = 3.0
_HF_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
_TRUE = {"1", "true", "yes", "on"}


def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE from the environment as it is now, else huggingface_hub's
    own setting (read when it was imported; code may also set it)."""
    values = [os.environ[var] for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if var in os.environ]
    if values:
        return any(v.strip().lower() in _TRUE for v in values)
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - no huggingface_hub: timm cannot use the hub either
        return False


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _hf_cached(repo_id: str, filenames) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and os.path.exists(found):
            return True
    return False


def _hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _pretrained_cfg(name: str, kwargs: dict) -> dict:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    cfg = cfg.to_dict() if cfg is not None else {}
    given = kwargs.get("pretrained_cfg")
    if isinstance(given, dict):
        cfg.update(given)
    overlay = kwargs.get("pretrained_cfg_overlay")
    if isinstance(overlay, dict):
        cfg.update(overlay)
    return cfg


def check_pretrained_available(name: str, kwargs: dict | None = None) -> None:
    """Raise a one-line ConfigError, in seconds, when timm could not load `name`'s pretrained weights here."""
    kwargs = kwargs or {}
    if name.startswith(("hf-hub:", "hf_hub:")):
        repo_id = name.split(":", 1)[1].split("@", 1)[0]
        if _hf_cached(repo_id, ("config.json",)) and _hf_cached(repo_id, _HF_WEIGHT_FILES):
            return
        _fail_unless_reachable(name, f"Hugging Face Hub repo {repo_id}", _hf_endpoint(), _hf_cache_dir())
        return
    if name.startswith("local-dir:"):
        return  # timm reads the dir itself and names what is missing
    cfg = _pretrained_cfg(name, kwargs)
    if cfg.get("state_dict") is not None:
        return
    if cfg.get("file"):
        if not Path(cfg["file"]).is_file():
            raise ConfigError(f"pretrained weights file {cfg['file']!r} for backbone {name!r} does not exist")
        return
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    if not hub_id and not url:
        raise ConfigError(
            f"timm has no pretrained weights for backbone {name!r}; set pretrained=false or pass a "
            "local file (ncfine-analyze weights=PATH)"
        )
    if hub_id:
        files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_WEIGHT_FILES
        if _hf_cached(hub_id, files):
            return
    if url and _torch_hub_cached(url):
        return
    if hub_id:
        _fail_unless_reachable(name, f"Hugging Face Hub {hub_id}", _hf_endpoint(), _hf_cache_dir())
    else:
        _fail_unless_reachable(name, url, url, _torch_hub_dir())


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - only used in the message
        return "HF_HOME"


def _torch_hub_dir() -> str:
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _torch_hub_cached(url: str) -> bool:
    return os.path.exists(os.path.join(_torch_hub_dir(), os.path.basename(urlparse(url).path)))


def _fail_unless_reachable(name: str, what: str, server: str, cache: str) -> None:
    if _offline():
        why = "HF_HUB_OFFLINE is set"
    elif _reachable(server):
        return
    else:
        why = f"{urlparse(server).hostname} cannot be reached"
    raise ConfigError(
        f"pretrained weights for backbone {name!r} ({what}) are not in the local cache ({cache}) and {why}; "
        f"pass a local weights file instead (ncfine-analyze model.backbone={name} weights=PATH; ncfine-train "
        f"+model.backbone_kwargs.pretrained_cfg_overlay.file=PATH), download them where there is internet into "
        f"HF_HOME, or set pretrained=false"
    )
