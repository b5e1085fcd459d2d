"""What the environments a cache knows about need of it: the input of `lockenv.cache.prune`.

Every sync registers the environment it builds with its cache
(`lockenv.cache.Cache.register_environment`).  Here each registration is checked against
the environment's own record (``.lockenv-state.json``, `lockenv.sync.plan`): an
environment counts as present when its state file is there and names the registered
prefix (an environment moved or deleted, or a prefix on another node's scratch, is not),
and it needs the artifacts its state lists, and their unpacked trees when its files are
symlinks into them.  Beside a registered prefix there may be the spare tree its last sync
kept (`lockenv.sync.reuse`): `spare_trees` finds them for prune and clean, whose hard
links would keep pruned cache files on disk.

Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

from lockenv.cache import Cache
from lockenv.cache_upkeep import EnvironmentUse
from lockenv.sync.plan import read_state

__all__ = ["environment_uses", "spare_trees"]


def environment_uses(cache: Cache) -> list[EnvironmentUse]:
    """One `EnvironmentUse` per environment registered with ``cache``."""
    uses = []
    for registration, prefix in cache.registered_environments():
        state = read_state(prefix)
        if state is None or os.path.abspath(state.prefix) != os.path.abspath(prefix):
            uses.append(EnvironmentUse(registration=registration, present=False))
            continue
        uses.append(
            EnvironmentUse(
                registration=registration,
                present=True,
                artifacts=frozenset(p.sha256 for p in state.packages),
                needs_trees=state.link_mode == "symlink",
            )
        )
    return uses


def spare_trees(cache: Cache) -> list[tuple[Path, Path]]:
    """``(prefix, spare tree)`` of every environment registered with ``cache`` — there or
    not: a deleted environment's spare stays — that has a spare tree beside it."""
    from lockenv.sync.reuse import is_spare, spare_path

    found = []
    for _registration, prefix in cache.registered_environments():
        spare = spare_path(prefix)
        if is_spare(spare):
            found.append((prefix, spare))
    return found
