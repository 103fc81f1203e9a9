"""File helpers shared by the on-disk sources: archive download, pickle reading."""

from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
import tarfile
import urllib.request
from pathlib import Path

from ncfine.utils.errors import DataError

log = logging.getLogger(__name__)


def download_and_extract(url: str, dest_dir: Path, md5: str | None = None) -> None:
    """Fetch the archive at `url` into `dest_dir` and unpack it there.

    A checksum mismatch only warns: re-encoded copies of a dataset have other md5 sums.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / url.rsplit("/", 1)[-1]
    if not archive.exists():
        partial = archive.with_name(archive.name + ".part")
        log.info(f"downloading {url} -> {archive}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"could not download {url} ({exc}); fetch it by hand and extract it into {dest_dir}"
            ) from None
        partial.replace(archive)
    if md5 is not None:
        digest = _md5(archive)
        if digest != md5:
            log.warning(f"{archive} has md5 {digest}, not the published {md5}; using it anyway")
    try:
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(dest_dir, filter="data")
            except TypeError:  # Python < 3.12 without extraction filters
                tar.extractall(dest_dir)
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"could not extract {archive} ({exc}); delete it and try again") from None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_pickle_dict(path: Path) -> dict[str, object]:
    """A CIFAR-style pickled dict with str keys, whether the file has str or bytes keys.

    encoding="latin1" reads the published Python-2 pickles (numpy arrays included); bytes keys
    (pickles written with encoding="bytes" in mind) are decoded here.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing dataset file {path}")
    try:
        with open(path, "rb") as handle:
            obj = pickle.load(handle, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a data problem
        raise DataError(f"could not read {path} as a pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a dict (got {type(obj).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def require_key(d: dict, key: str, path: Path):
    if key not in d:
        raise DataError(f"{path} has no {key!r} entry (keys: {sorted(d)})")
    return d[key]


def as_names(values) -> list[str]:
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]
