"""ncfine's Hydra launchers made known to Hydra by the entry points that can sweep."""

from __future__ import annotations


def register_launchers() -> None:
    """Register ncfine's Hydra launchers (hydra_plugins.ncfine_launcher) with Hydra directly.

    Hydra finds plugins by listing the modules of the `hydra_plugins` namespace package, which
    cannot see packages served by setuptools' editable-install finder (`pip install -e .`), so
    `hydra/launcher=slurm` (and ncfine-train's default launcher) would fail with "Unknown plugin class" there. Registering twice is harmless.
    """
    from hydra.core.plugins import Plugins

    from hydra_plugins.ncfine_launcher.launcher import NcfineBasicLauncher, NcfineLocalLauncher, NcfineSlurmLauncher

    for launcher in (NcfineBasicLauncher, NcfineLocalLauncher, NcfineSlurmLauncher):
        Plugins.instance().register(launcher)
