"""Merging locks: git's merge driver, and a lock left with conflict markers.

Two ways a lock meets a merge:

- **The merge driver** (``lockenv merge-driver %O %A %B``, set up as the README shows).
  Git hands it the common ancestor and both sides; `merge_locks` merges them pin by pin,
  three ways, per environment and platform: a pin only one side moved takes that
  side's move (an upgrade, an addition, a removal); a pin both sides moved to different
  artifacts takes the newer version (conda: version, then build number) and says so.
  Inputs and each environment's record of its requirements merge the same way.  The
  result is a lock, never conflict markers; whether it satisfies the merged manifest is
  for ``lockenv lock`` (or ``lock --check`` in CI) to decide afterwards: it re-solves
  only if it must, with the merged pins as preferences.
- **Conflict markers** (git's default driver).  `conflict_sides` cuts the text into our
  side, their side and, with ``merge.conflictStyle = diff3``/``zdiff3``, the base; each
  side is read on its own (a side may reference an artifact the other side describes:
  such references are dropped) and merged as above.  ``lockenv lock`` uses the result
  as the previous lock: its pins are the preferences of a fresh solve.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from packaging.utils import canonicalize_name

from lockenv.errors import LockfileError
from lockenv.lockfile import (
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    from_dict,
    loads,
    sequence_of_urls,
)

__all__ = ["ConflictSides", "MergeOutcome", "conflict_sides", "merge_locks", "read_conflicted"]

_OURS = re.compile(r"^<{7}(?: |$)")
_BASE = re.compile(r"^\|{7}(?: |$)")
_SPLIT = re.compile(r"^={7}$")
_THEIRS = re.compile(r"^>{7}(?: |$)")

T = TypeVar("T")
_Key = tuple[str, str]  # (kind, normalized name): what one environment holds once


@dataclass(frozen=True, slots=True, kw_only=True)
class ConflictSides:
    """A conflicted text cut into whole texts: ours, theirs and (diff3 style) the base."""

    ours: str
    theirs: str
    base: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeOutcome:
    """A merged lock, and one note per place where both sides moved a pin differently."""

    lock: Lockfile
    notes: tuple[str, ...] = ()


# ------------------------------------------------------------------------ conflict markers


def conflict_sides(text: str, *, source: str) -> ConflictSides | None:
    """Cut ``text`` at git's conflict markers; None when it has none.

    Raises `LockfileError` for markers that do not nest as git writes them.
    """
    ours: list[str] = []
    theirs: list[str] = []
    base: list[str] = []
    has_base = False
    state = "both"  # both | ours | base | theirs
    found = False
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        bare = line.rstrip("\r\n")
        if state == "both" and _OURS.match(bare):
            state, found = "ours", True
            continue
        if state == "ours" and _BASE.match(bare):
            state, has_base = "base", True
            continue
        if state in ("ours", "base") and _SPLIT.match(bare):
            state = "theirs"
            continue
        if state == "theirs" and _THEIRS.match(bare):
            state = "both"
            continue
        if state != "both" and (_OURS.match(bare) or _THEIRS.match(bare)):
            raise LockfileError(
                f"{source}: unbalanced git conflict markers at line {number}; restore the "
                "lock from one side (`git checkout --ours lockenv.lock`) and run `lockenv lock`"
            )
        if state in ("both", "ours"):
            ours.append(line)
        if state in ("both", "theirs"):
            theirs.append(line)
        if state in ("both", "base"):
            base.append(line)
    if state != "both":
        raise LockfileError(
            f"{source}: a git conflict is not closed (no '>>>>>>>' line); restore the lock "
            "from one side (`git checkout --ours lockenv.lock`) and run `lockenv lock`"
        )
    if not found:
        return None
    return ConflictSides(
        ours="".join(ours), theirs="".join(theirs), base="".join(base) if has_base else None
    )


def read_conflicted(text: str, *, source: str) -> MergeOutcome | None:
    """The lock a conflicted ``text`` stands for: both sides merged (`merge_locks`).

    None when ``text`` has no conflict markers.  A side that cannot be read at all is
    left out (the other side is the result); `LockfileError` when neither can be.
    """
    sides = conflict_sides(text, source=source)
    if sides is None:
        return None
    ours = read_side(sides.ours, source=f"{source} (our side)")
    theirs = read_side(sides.theirs, source=f"{source} (their side)")
    base = read_side(sides.base, source=f"{source} (base)") if sides.base is not None else None
    if ours is None and theirs is None:
        raise LockfileError(
            f"{source}: neither side of the git conflict is a readable lock; restore one "
            "(`git checkout --ours lockenv.lock`) and run `lockenv lock`"
        )
    if ours is None or theirs is None:
        only = ours or theirs
        assert only is not None
        side = "their" if ours is None else "our"
        return MergeOutcome(lock=only, notes=(f"only {side} side of the conflict was readable",))
    return merge_locks(base, ours, theirs)


def read_side(text: str, *, source: str) -> Lockfile | None:
    """One side of a conflict as a lock, or None when it is not one.

    Git resolves the hunks that do not conflict on its own, so a side may name an
    artifact only the other side describes, or describe one twice: such references are
    dropped and duplicates kept once, rather than losing the whole side.
    """
    try:
        return loads(text, source=source)
    except LockfileError:
        pass
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    _drop_dangling(data)
    try:
        return from_dict(data, source=source)
    except LockfileError:
        return None


def _drop_dangling(data: dict[str, Any]) -> None:
    packages = data.get("packages")
    described: dict[str, Any] = {}
    if isinstance(packages, list):
        for entry in packages:
            if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                described.setdefault(entry["url"], entry)
        data["packages"] = list(described.values())
    environments = data.get("environments")
    if not isinstance(environments, dict):
        return
    for env in environments.values():
        platforms = env.get("packages") if isinstance(env, dict) else None
        if not isinstance(platforms, dict):
            continue
        for platform, refs in platforms.items():
            if isinstance(refs, list):
                platforms[platform] = [
                    ref
                    for ref in refs
                    if isinstance(ref, dict)
                    and len(ref) == 1
                    and next(iter(ref.values())) in described
                ]


# ------------------------------------------------------------------------ three-way merge


def merge_locks(base: Lockfile | None, ours: Lockfile, theirs: Lockfile) -> MergeOutcome:
    """Merge ``ours`` and ``theirs`` (from their common ancestor ``base``, if known).

    Without a base every difference counts as moved by both sides: the newer pin wins.
    """
    notes: list[str] = []
    inputs = _merge_inputs(base.inputs if base else None, ours.inputs, theirs.inputs, notes)
    chosen: dict[str, Artifact] = {}
    environments: dict[str, LockedEnvironment] = {}
    names = sorted(set(ours.environments) | set(theirs.environments))
    for name in names:
        b = base.environments.get(name) if base else None
        o, t = ours.environments.get(name), theirs.environments.get(name)
        merged = _merge_environment(name, (base, b), (ours, o), (theirs, t), chosen, notes)
        if merged is not None:
            environments[name] = merged
    used = {url for env in environments.values() for urls in env.packages.values() for url in urls}
    return MergeOutcome(
        lock=Lockfile(
            inputs=inputs,
            environments=environments,
            artifacts={url: chosen[url] for url in sorted(used)},
        ),
        notes=tuple(notes),
    )


def _pick(base: T, ours: T, theirs: T, *, has_base: bool) -> tuple[bool, T]:
    """The three-way choice: ``(True, value)``, or ``(False, ours)`` when both sides
    moved away from the base, differently."""
    if ours == theirs:
        return True, ours
    if has_base and ours == base:
        return True, theirs
    if has_base and theirs == base:
        return True, ours
    return False, ours


def _merge_inputs(
    base: LockInputs | None, ours: LockInputs, theirs: LockInputs, notes: list[str]
) -> LockInputs:
    values: dict[str, Any] = {}
    for f in fields(LockInputs):
        o, t = getattr(ours, f.name), getattr(theirs, f.name)
        b = getattr(base, f.name) if base is not None else None
        agreed, choice = _pick(b, o, t, has_base=base is not None)
        if not agreed:
            key = f.name.replace("_", "-")
            notes.append(f"inputs.{key}: both sides changed it; kept ours ({o!r}, not {t!r})")
        values[f.name] = choice
    return LockInputs(**values)


def _merge_set(
    base: Iterable[str] | None, ours: Iterable[str], theirs: Iterable[str]
) -> tuple[str, ...]:
    o, t = set(ours), set(theirs)
    b = set(base) if base is not None else o & t
    removed = (b - o) | (b - t)
    return tuple(sorted((o | t) - removed))


def _merge_environment(
    name: str,
    base: tuple[Lockfile | None, LockedEnvironment | None],
    ours: tuple[Lockfile, LockedEnvironment | None],
    theirs: tuple[Lockfile, LockedEnvironment | None],
    chosen: dict[str, Artifact],
    notes: list[str],
) -> LockedEnvironment | None:
    (base_lock, b), (ours_lock, o), (theirs_lock, t) = base, ours, theirs
    has_base = base_lock is not None
    if o is None or t is None:
        present = o or t
        assert present is not None
        present_lock = ours_lock if o is not None else theirs_lock
        if has_base and b is not None and _same_environment(b, base_lock, present, present_lock):
            return None  # removed by one side, untouched by the other
        if has_base and b is not None:
            side = "ours" if o is None else "theirs"
            notes.append(f"environment {name!r}: {side} removed it, the other side changed it")
        for urls in present.packages.values():
            for url in urls:
                chosen[url] = present_lock.artifacts[url]
        return present
    agreed, python = _pick(b.python if b else None, o.python, t.python, has_base=has_base)
    if not agreed:
        notes.append(f"{name}: both sides changed the Python version; kept ours ({o.python})")
    packages: dict[str, tuple[str, ...]] = {}
    base_platforms = set(b.packages) if b is not None else None
    for platform in _merge_set(base_platforms, o.packages, t.packages):
        pins = _merge_pins(
            f"{name} on {platform}",
            _pins(base_lock, b, platform) if has_base else None,
            _pins(ours_lock, o, platform),
            _pins(theirs_lock, t, platform),
            notes,
        )
        for artifact in pins:
            chosen[artifact.key] = artifact
        packages[platform] = sequence_of_urls(pins)
    return LockedEnvironment(
        name=name,
        python=python,
        conda_requirements=_merge_set(
            b.conda_requirements if b else None, o.conda_requirements, t.conda_requirements
        ),
        pypi_requirements=_merge_set(
            b.pypi_requirements if b else None, o.pypi_requirements, t.pypi_requirements
        ),
        packages=packages,
    )


def _same_environment(
    a: LockedEnvironment, a_lock: Lockfile | None, b: LockedEnvironment, b_lock: Lockfile
) -> bool:
    if a_lock is None or a.packages.keys() != b.packages.keys():
        return False
    return replace(a, packages={}) == replace(b, packages={}) and all(
        _pins(a_lock, a, p) == _pins(b_lock, b, p) for p in a.packages
    )


def _pins(lock: Lockfile | None, env: LockedEnvironment | None, platform: str) -> dict[_Key, Any]:
    if lock is None or env is None or platform not in env.packages:
        return {}
    out: dict[_Key, Artifact] = {}
    for url in env.packages[platform]:
        artifact = lock.artifacts[url]
        name = artifact.name if artifact.kind == "conda" else canonicalize_name(artifact.name)
        out[(artifact.kind, name)] = artifact
    return out


def _merge_pins(
    where: str,
    base: Mapping[_Key, Artifact] | None,
    ours: Mapping[_Key, Artifact],
    theirs: Mapping[_Key, Artifact],
    notes: list[str],
) -> list[Artifact]:
    merged: list[Artifact] = []
    for key in sorted(set(ours) | set(theirs) | set(base or ())):
        o, t = ours.get(key), theirs.get(key)
        b = base.get(key) if base is not None else None
        agreed, choice = _pick(b, o, t, has_base=base is not None)
        if not agreed:
            choice = _newer(o, t)
            if base is not None:
                notes.append(
                    f"{where}: {_describe(o)} (ours) and {_describe(t)} (theirs): "
                    f"took {_describe(choice)}"
                )
        if choice is not None:
            merged.append(choice)
    return merged


def _describe(artifact: Artifact | None) -> str:
    if artifact is None:
        return "removed"
    return f"{artifact.name} {artifact.version}"


def _newer(a: Artifact | None, b: Artifact | None) -> Artifact | None:
    """The newer of two pins of one package; a present pin beats a removed one (a pin
    nothing needs any more is dropped by the next `lockenv lock`)."""
    if a is None or b is None:
        return a or b
    return b if _order(b) > _order(a) else a


def _order(artifact: Artifact) -> tuple[Any, ...]:
    if isinstance(artifact, CondaArtifact):
        from lockenv.lock.conda.version import InvalidCondaVersion, VersionOrder

        try:
            return (1, VersionOrder.parse(artifact.version), artifact.build_number)
        except InvalidCondaVersion:
            return (0, artifact.version, artifact.build_number)
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(artifact.version), artifact.filename)
    except InvalidVersion:
        return (0, artifact.version, artifact.filename)
