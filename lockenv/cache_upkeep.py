"""What looking after a cache reports: what `lockenv.cache.prune` is given and removes, and
what `lockenv.cache.cache_usage` finds on disk.

Apart from `lockenv.cache`, which every sync imports: a sync makes none of these records,
and a dataclass costs the importing process about a millisecond to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DiskUsage", "EnvironmentUse", "PruneReport", "PrunedItem"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class EnvironmentUse:
    """What one environment this cache knows about (`Cache.register_environment`) needs
    of it: worked out by the sync side from the environment's state file."""

    registration: Path
    present: bool  # its state file was found and names this prefix
    artifacts: frozenset[str] = frozenset()  # sha256 of every artifact it was built from
    needs_trees: bool = False  # its files are symlinks into the unpacked trees


@dataclass(frozen=True, slots=True, kw_only=True)
class PrunedItem:
    """One thing `prune` removed (or, dry, would remove)."""

    path: str  # relative to the cache root
    reason: str
    freed_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class PruneReport:
    """What `prune` removed: cache entries (archives and unpacked trees), leftovers of
    killed processes (partial downloads, work directories), and the bytes freed (files
    whose last link went: a tree still hardlinked into an environment frees nothing).
    ``kept_for_environments``: entries kept only because a known environment uses them."""

    entries: int
    leftovers: int
    freed_bytes: int
    items: tuple[PrunedItem, ...] = ()
    kept_for_environments: int = 0
    dry_run: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskUsage:
    """What part of a cache takes on disk: what quotas count."""

    bytes: int  # allocated blocks
    inodes: int  # files, links and directories
