"""A built wheel holds every module and every config, and works without the source checkout."""

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def test_setup_cfg_declares_every_package_and_config_group():
    code = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src").rglob("__init__.py")}
    conf = {
        ".".join(("ncfine", "conf") + d.relative_to(REPO / "conf").parts)
        for d in [REPO / "conf", *(REPO / "conf").rglob("*")]
        if d.is_dir()
    }
    assert _declared_packages() == code | conf


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools leaves build/ and *.egg-info in the tree it builds.
    source = out / "source"
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        cwd=out,
        capture_output=True,
    )
    (wheel,) = out.glob("ncfine-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(site)
    return site, names


def test_wheel_holds_every_module_and_config(unpacked_wheel):
    _, names = unpacked_wheel
    for py in (REPO / "src").rglob("*.py"):
        assert py.relative_to(REPO / "src").as_posix() in names
    for yaml in (REPO / "conf").rglob("*.yaml"):
        assert "ncfine/conf/" + yaml.relative_to(REPO / "conf").as_posix() in names


def test_installed_wheel_composes_its_own_configs(unpacked_wheel, tmp_path):
    site, _ = unpacked_wheel
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NCFINE_CONFIG_DIR", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import ncfine.utils.config as c; print(c.__file__); print(c.CONFIG_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, config_dir = probe.stdout.split()
    assert Path(module_file).is_relative_to(site) and Path(config_dir) == site / "ncfine" / "conf"
    job = subprocess.run(
        [sys.executable, "-m", "ncfine.train", "--cfg", "job", "experiment=paper_cifar10"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert job.returncode == 0, job.stderr
    assert "backbone: resnet18" in job.stdout
