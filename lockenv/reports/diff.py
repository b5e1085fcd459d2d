"""``lockenv diff``: what moved between two locks.

Per environment and platform, each package (kind and name) is added, removed or changed
(another version, or the same version from another artifact: a conda rebuild, another
wheel, a file whose hash changed).  Changes to the lock's inputs (channels, indexes,
platforms...) and to each environment's Python and requirements are listed too.  The
same lines are what ``lockenv diff`` prints; ``lockenv lock`` prints `LockDiff.summary`:
one line per package change, wherever it happened.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lockenv.lockfile import (
    Artifact,
    ArtifactKind,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiSource,
)

__all__ = [
    "ChangeKind",
    "LockDiff",
    "PackageChange",
    "SettingChange",
    "SummaryLine",
    "diff_locks",
    "lock_targets",
]

ChangeKind = Literal["added", "removed", "changed"]
Setting = str | tuple[str, ...] | Mapping[str, str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageChange:
    """One package of one environment and platform; ``old_*`` / ``new_*`` None when absent."""

    environment: str
    platform: str
    kind: ArtifactKind
    name: str
    old_version: str | None
    new_version: str | None
    old_filename: str | None = None
    new_filename: str | None = None
    old_sha256: str | None = None
    new_sha256: str | None = None

    @property
    def change(self) -> ChangeKind:
        if self.old_version is None:
            return "added"
        if self.new_version is None:
            return "removed"
        return "changed"

    def render(self) -> str:
        """``+ name 1.0 (env/platform)``, ``- …``, ``~ name 1.0 -> 2.0 (env/platform)``."""
        where = f"({self.environment}/{self.platform})"
        if self.change == "added":
            return f"+ {self.name} {self.new_version} {where}"
        if self.change == "removed":
            return f"- {self.name} {self.old_version} {where}"
        if self.old_version != self.new_version:
            return f"~ {self.name} {self.old_version} -> {self.new_version} {where}"
        if self.old_filename != self.new_filename:
            what = f"{self.old_filename} -> {self.new_filename}"
        else:
            what = "sha256 changed"
        return f"~ {self.name} {self.new_version} ({what}) {where}"

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "platform": self.platform,
            "kind": self.kind,
            "name": self.name,
            "change": self.change,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "old_filename": self.old_filename,
            "new_filename": self.new_filename,
            "old_sha256": self.old_sha256,
            "new_sha256": self.new_sha256,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingChange:
    """A changed input (``inputs.channels``) or environment setting
    (``environments.test.requirements.pypi``); None when absent on that side."""

    key: str
    old: Setting
    new: Setting

    def render(self) -> str:
        if self.old is None:
            return f"+ {self.key}: {_show(self.new)}"
        if self.new is None:
            return f"- {self.key}: {_show(self.old)}"
        if isinstance(self.old, tuple) and isinstance(self.new, tuple):
            gone = [f"-{v}" for v in self.old if v not in self.new]
            came = [f"+{v}" for v in self.new if v not in self.old]
            if gone or came:
                return f"~ {self.key}: {', '.join(gone + came)}"
            # Same items in another order: the order is the meaning (channel priority).
        return f"~ {self.key}: {_show(self.old)} -> {_show(self.new)}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "old": _plain(self.old), "new": _plain(self.new)}


def _plain(value: Setting) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _show(value: Setting) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(none)"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "(none)"
    return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockDiff:
    """Everything that differs between two locks, in a stable order."""

    settings: tuple[SettingChange, ...] = ()
    packages: tuple[PackageChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.settings or self.packages)

    @property
    def added(self) -> tuple[PackageChange, ...]:
        return tuple(p for p in self.packages if p.change == "added")

    @property
    def removed(self) -> tuple[PackageChange, ...]:
        return tuple(p for p in self.packages if p.change == "removed")

    @property
    def changed(self) -> tuple[PackageChange, ...]:
        return tuple(p for p in self.packages if p.change == "changed")

    def render(self, *, settings: bool = True) -> list[str]:
        """One line per change: settings first (unless ``settings=False``), then packages."""
        lines = [s.render() for s in self.settings] if settings else []
        return lines + [p.render() for p in self.packages]

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": [s.to_json() for s in self.settings],
            "packages": [p.to_json() for p in self.packages],
        }

    def summary(self, targets: Collection[tuple[str, str]]) -> list[SummaryLine]:
        """One line per package change, as uv prints them: the same move on several
        environments and platforms is one line, which says where only when that is not
        everywhere.  ``targets``: every (environment, platform) of the new lock."""
        groups: dict[tuple[str, str, str | None, str | None, bool], list[PackageChange]] = {}
        for change in self.packages:
            rebuilt = change.change == "changed" and change.old_version == change.new_version
            key = (change.kind, change.name, change.old_version, change.new_version, rebuilt)
            groups.setdefault(key, []).append(change)
        lines = []
        for (_, name, old, new, rebuilt), changes in groups.items():
            where = _where({(c.environment, c.platform) for c in changes}, set(targets))
            kind: ChangeKind = changes[0].change
            if old is None:
                text = f"+ {name} {new}"
            elif new is None:
                text = f"- {name} {old}"
            elif rebuilt:
                text = f"~ {name} {new} (another artifact)"
            else:
                text = f"~ {name} {old} -> {new}"
            lines.append(SummaryLine(text=f"{text} {where}".rstrip(), change=kind))
        return sorted(lines, key=lambda line: (line.text[2:], line.text))


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryLine:
    """A line of `LockDiff.summary` and what kind of change it is (for colour)."""

    text: str
    change: ChangeKind


def _where(found: set[tuple[str, str]], everywhere: set[tuple[str, str]]) -> str:
    """``(on win-64)``, ``(in test)``, ``(test on win-64)``, or nothing for everywhere."""
    everywhere = everywhere | found
    if found == everywhere:
        return ""
    envs = sorted({env for env, _ in found})
    platforms = sorted({platform for _, platform in found})
    all_envs = {env for env, _ in everywhere}
    whole_envs = all(
        {p for e, p in everywhere if e == env} <= {p for e, p in found if e == env} for env in envs
    )
    if whole_envs:
        return f"(in {', '.join(envs)})"
    if set(envs) == all_envs and found == {(e, p) for e, p in everywhere if p in platforms}:
        return f"(on {', '.join(platforms)})"
    if len(envs) == 1:
        return f"({envs[0]} on {', '.join(platforms)})"
    return "(" + ", ".join(f"{e}/{p}" for e, p in sorted(found)) + ")"


def lock_targets(lock: Lockfile) -> set[tuple[str, str]]:
    """Every (environment, platform) a lock holds."""
    return {(name, p) for name, env in lock.environments.items() for p in env.packages}


def diff_locks(old: Lockfile | None, new: Lockfile) -> LockDiff:
    """What changed from ``old`` to ``new`` (``old`` None: everything in ``new`` is added)."""
    settings: list[SettingChange] = []
    if old is not None:
        settings += _input_changes(old.inputs, new.inputs)
    old_envs = old.environments if old is not None else {}
    packages: list[PackageChange] = []
    for env_name in sorted(set(old_envs) | set(new.environments)):
        old_env = old_envs.get(env_name)
        new_env = new.environments.get(env_name)
        prefix = f"environments.{env_name}"
        if old is not None:
            for key, was, now in (
                ("python", _env_python(old_env), _env_python(new_env)),
                ("requirements.conda", _conda_reqs(old_env), _conda_reqs(new_env)),
                ("requirements.pypi", _pypi_reqs(old_env), _pypi_reqs(new_env)),
                ("base-environment", _base(old_env), _base(new_env)),
            ):
                if was != now:
                    settings.append(SettingChange(key=f"{prefix}.{key}", old=was, new=now))
        old_platforms = old_env.packages if old_env is not None else {}
        new_platforms = new_env.packages if new_env is not None else {}
        for platform in sorted(set(old_platforms) | set(new_platforms)):
            before = _by_name(old, old_platforms.get(platform, ()))
            after = _by_name(new, new_platforms.get(platform, ()))
            for slot in sorted(set(before) | set(after), key=lambda s: (s[1], s[0])):
                change = _package_change(
                    env_name, platform, slot, before.get(slot), after.get(slot)
                )
                if change is not None:
                    packages.append(change)
    return LockDiff(settings=tuple(settings), packages=tuple(packages))


def _input_changes(old: LockInputs, new: LockInputs) -> list[SettingChange]:
    changes: list[SettingChange] = []
    pairs: list[tuple[str, Setting, Setting]] = [
        ("platforms", tuple(sorted(old.platforms)), tuple(sorted(new.platforms))),
        ("channels", old.channels, new.channels),
        ("indexes", old.indexes, new.indexes),
        ("find-links", old.find_links, new.find_links),
        ("requires-python", old.requires_python, new.requires_python),
        (
            "system-requirements",
            dict(sorted(old.system_requirements.items())),
            dict(sorted(new.system_requirements.items())),
        ),
        ("exclude-newer", old.exclude_newer, new.exclude_newer),
        ("exclude-newer-span", old.exclude_newer_span, new.exclude_newer_span),
    ]
    for key, before, after in pairs:
        if before != after:
            changes.append(SettingChange(key=f"inputs.{key}", old=before, new=after))
    return changes


def _env_python(env: LockedEnvironment | None) -> str | None:
    return env.python if env is not None else None


def _base(env: LockedEnvironment | None) -> tuple[str, ...] | None:
    """A base environment as items a diff can compare one by one."""
    base = env.base if env is not None else None
    if base is None:
        return None
    return (
        base.prefix,
        f"python {base.python}",
        *(f"conda {c}" for c in base.conda),
        *(f"pypi {p}" for p in base.pypi),
    )


def _conda_reqs(env: LockedEnvironment | None) -> tuple[str, ...] | None:
    # An absent environment and one asking nothing of conda read the same: no line.
    return tuple(sorted(env.conda_requirements)) or None if env is not None else None


def _pypi_reqs(env: LockedEnvironment | None) -> tuple[str, ...] | None:
    return tuple(sorted(env.pypi_requirements)) or None if env is not None else None


def _by_name(
    lock: Lockfile | None, urls: Sequence[str]
) -> dict[tuple[ArtifactKind, str], Artifact]:
    if lock is None:
        return {}
    found: dict[tuple[ArtifactKind, str], Artifact] = {}
    for url in urls:
        artifact = lock.artifacts[url]
        found[(artifact.kind, artifact.name)] = artifact
    return found


def _package_change(
    env: str,
    platform: str,
    slot: tuple[ArtifactKind, str],
    old: Artifact | None,
    new: Artifact | None,
) -> PackageChange | None:
    if old is not None and new is not None and _pin(old) == _pin(new):
        return None
    kind, name = slot
    return PackageChange(
        environment=env,
        platform=platform,
        kind=kind,
        name=name,
        old_version=old.version if old else None,
        new_version=new.version if new else None,
        old_filename=old.filename if old else None,
        new_filename=new.filename if new else None,
        old_sha256=_digest(old),
        new_sha256=_digest(new),
    )


def _digest(artifact: Artifact | None) -> str | None:
    """An archive's sha256 (a git source's commit; a directory has none)."""
    if artifact is None:
        return None
    if isinstance(artifact, PypiSource):
        return artifact.commit
    return artifact.sha256


def _pin(artifact: Artifact) -> tuple[str, str, str | None]:
    return (artifact.key, artifact.version, _digest(artifact))
