"""Installing artifacts into an environment: wheels (unpack once, link), launchers, RECORD."""

from __future__ import annotations

from lockenv.install.wheel import InstalledDist, UnpackedWheel, install_wheel, unpack_wheel

__all__ = ["InstalledDist", "UnpackedWheel", "install_wheel", "unpack_wheel"]
