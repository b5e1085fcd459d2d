"""lockenv: reproducible conda + PyPI environments from one lockfile."""

__version__ = "0.1.0"
