"""The ``lockenv`` command: parse arguments, call one function, print.

Errors reach the user as one line (and a ``hint:`` line when there is a next step) and
an exit code (0 ok, 1 a check failed, 2 bad input, 3 other failures); a traceback only
with ``-v``.  How output looks (stdout for results, stderr for the rest, colour, ``-q``,
``-v``, progress) is `lockenv.console`'s job.  Imports are made inside the commands so
that the no-op ``sync`` starts quickly.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, cast

from lockenv import __version__
from lockenv.console import Console, format_size
from lockenv.errors import EXIT_INPUT_ERROR, LockenvError, UsageError
from lockenv.project import LOCK_NAME

if TYPE_CHECKING:
    import argparse

    from lockenv.cache import Cache
    from lockenv.lock.manifest import Manifest
    from lockenv.lock.resolve import LockOptions
    from lockenv.project import ProjectPaths
    from lockenv.workspace import LockOutcome

Handler = Callable[["argparse.Namespace"], int]


def _paths(args: argparse.Namespace) -> ProjectPaths:
    from lockenv.project import locate

    return locate(Path(args.manifest) if args.manifest else None)


def _lock_options(args: argparse.Namespace) -> LockOptions:
    from packaging.utils import canonicalize_name

    from lockenv.lock.resolve import LockOptions

    return LockOptions(
        update=frozenset(canonicalize_name(n) for n in getattr(args, "update", None) or ()),
        update_all=getattr(args, "update_all", False),
        refresh=getattr(args, "refresh", False),
        offline=getattr(args, "offline", False),
    )


# ------------------------------------------------------------------------- init / add


def cmd_init(args: argparse.Namespace) -> int:
    from lockenv.lock import manifest_edit
    from lockenv.lock.importers import Imported, read_import
    from lockenv.lock.manifest import parse_manifest
    from lockenv.platforms import current_platform, get_platform

    pyproject = _project_pyproject(args)
    if pyproject is not None:
        return _init_pyproject(args, pyproject)
    target = Path(args.manifest or "lockenv.toml")
    if target.is_dir():
        target = target / "lockenv.toml"
    if target.exists():
        raise UsageError(f"{str(target)!r} already exists; edit it or use `lockenv add`")
    imported = read_import(Path(args.from_file)) if args.from_file else Imported()
    platforms = args.platform or list(imported.platforms) or [current_platform()]
    for platform in platforms:
        get_platform(platform)
    if args.requires_python or imported.requires_python:
        requires_python = args.requires_python or imported.requires_python
    else:
        requires_python = f"=={sys.version_info.major}.{sys.version_info.minor}.*"
    name = args.name or imported.name or target.resolve().parent.name or "project"
    text = manifest_edit.init_manifest_text(
        name=name,
        platforms=platforms,
        channels=_unique([*(args.channel or []), *imported.channels]),
        requires_python=requires_python,
        indexes=_unique([*(args.index or []), *imported.indexes]),
        find_links=imported.find_links,
    )
    if imported.conda:
        text = manifest_edit.add_conda_dependencies(
            text, imported.conda, feature=None, in_pyproject=False
        )
    if imported.pypi:
        text = manifest_edit.add_pypi_dependencies(
            text, imported.pypi, feature=None, in_pyproject=False
        )
    for feature, requirements in imported.features:
        # An environment of each feature's name, as pixi imports extras and groups.
        text = manifest_edit.add_pypi_dependencies(
            text, requirements, feature=feature, in_pyproject=False
        )
        text = manifest_edit.add_feature_to_environment(text, feature, feature, in_pyproject=False)
    manifest = parse_manifest(text, path=target)  # never write a manifest lockenv cannot read
    for warning in (*imported.warnings, *manifest.warnings):
        _OUT.warn(warning)
    _write_file(target, text)
    _OUT.note(f"wrote {target}")
    return 0


def _project_pyproject(args: argparse.Namespace) -> Path | None:
    """The pyproject.toml whose [project] `init` configures lockenv in, if any: this
    directory's (unless --manifest names another file), named by `--from` or not."""
    from lockenv.lock.manifest_edit import pyproject_project

    if args.from_file:
        candidate = Path(args.from_file)
        if candidate.name != "pyproject.toml":
            return None
        # The project being set up here: lockenv goes into its own pyproject.toml.  A
        # pyproject.toml elsewhere is imported into a lockenv.toml here (`read_import`).
        here = Path(args.manifest or ".")
        here = here if here.is_dir() else here.parent
        if candidate.resolve().parent != here.resolve():
            return None
    else:
        candidate = Path(args.manifest) if args.manifest else Path("pyproject.toml")
    if candidate.is_dir():
        candidate = candidate / "pyproject.toml"
    if candidate.name != "pyproject.toml" or not candidate.is_file():
        return None
    return candidate if pyproject_project(candidate.read_text(encoding="utf-8")) else None


def _init_pyproject(args: argparse.Namespace, pyproject: Path) -> int:
    """`init` in a project: [tool.lockenv] in its pyproject.toml, the project itself
    locked editable, its extras and dependency groups as features and environments."""
    from lockenv.lock.manifest_edit import init_pyproject_text, pyproject_project
    from lockenv.platforms import current_platform, get_platform

    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {str(pyproject)!r}: {exc.strerror or exc}") from None
    project = pyproject_project(text)
    if project is None:
        raise UsageError(f"{str(pyproject)!r} has no [project] table; nothing to lock")
    platforms = args.platform or [current_platform()]
    for platform in platforms:
        get_platform(platform)
    new = init_pyproject_text(
        text,
        path=pyproject,
        platforms=platforms,
        channels=args.channel or [],
        requires_python=args.requires_python or _python_for(project.get("requires-python")),
        indexes=args.index or [],
    )
    _write_file(pyproject, new)
    _OUT.note(f"wrote [tool.lockenv] into {pyproject} (the project is installed editable)")
    return 0


def _python_for(requires_python: object) -> str:
    """``==X.Y.*`` for the running Python when the project admits it, else for the lowest
    Python 3 it admits (a PyPI-only environment is locked for one Python)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        allowed = SpecifierSet(str(requires_python or ""))
    except InvalidSpecifier:
        return f"=={running}.*"
    if allowed.contains(Version(f"{running}.0"), prereleases=True) or not str(allowed):
        return f"=={running}.*"
    for minor in range(8, 20):
        if allowed.contains(Version(f"3.{minor}.0"), prereleases=True):
            return f"==3.{minor}.*"
    return f"=={running}.*"


def _path_requirement(spec: str) -> Any:
    """``name @ file:...`` for a project directory named on the command line (`add --pypi
    .`), its name read from its pyproject.toml (or its build backend, at lock)."""
    from packaging.requirements import Requirement

    from lockenv.lock.manifest_edit import pyproject_project

    directory = Path(spec).resolve()
    try:
        project = pyproject_project((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except OSError:
        project = None
    name = project.get("name") if project else None
    if not isinstance(name, str):
        raise UsageError(
            f"{spec!r}: no pyproject.toml with a [project] name there; add it as "
            "'NAME @ file:///path/to/it' instead"
        )
    from packaging.utils import canonicalize_name

    return Requirement(f"{canonicalize_name(name)} @ {directory.as_uri()}")


def _write_file(path: Path, text: str) -> None:
    # Imported when a file is written: tempfile costs start-up time on the no-op path.
    from lockenv.atomic import write_atomic

    write_atomic(path, text)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _edit_manifest(
    args: argparse.Namespace,
    edit: Callable[[str, bool], str],
    *,
    after_lock: Callable[[str, bool, LockOutcome], str] | None = None,
) -> None:
    """Apply ``edit`` to the manifest, then lock (unless ``--no-lock``), as pixi and uv do:
    a failed lock undoes the edit.  ``after_lock`` may edit again with the new lock in
    hand (``add`` writes lower bounds of what was locked); the lock then only records it."""
    from lockenv import workspace
    from lockenv.lock.manifest import parse_manifest, read_manifest_text

    paths = _paths(args)
    original = read_manifest_text(paths.manifest)
    in_pyproject = paths.manifest.name == "pyproject.toml"
    text = edit(original, in_pyproject)
    manifest = parse_manifest(text, path=paths.manifest)
    for warning in manifest.warnings:
        _OUT.warn(warning)
    _write_file(paths.manifest, text)
    if args.no_lock:
        return
    try:
        outcome = workspace.lock(paths, _lock_options(args), say=_OUT, manifest=manifest)
        if after_lock is not None:
            final = after_lock(text, in_pyproject, outcome)
            if final != text:
                parse_manifest(final, path=paths.manifest)
                _write_file(paths.manifest, final)
                workspace.record_requirements(paths)
    except BaseException:
        try:
            _write_file(paths.manifest, original)
        except OSError as exc:
            _OUT.warn(
                f"could not restore {str(paths.manifest)!r} ({exc.strerror or exc}): it "
                "holds the edited version, whole"
            )
        raise
    _print_changes(outcome.changes)


def cmd_add(args: argparse.Namespace) -> int:
    from lockenv.lock import manifest_edit

    if args.environment and not args.feature:
        raise UsageError("--environment adds a feature to an environment: give --feature too")
    manifest = _load_manifest(args)
    feature = args.feature
    if feature is not None and args.environment is None:
        users = [e for e in manifest.environments.values() if feature in e.features]
        if not users:
            _OUT.warn(
                f"no environment includes feature {feature!r}: what you add there is not "
                "locked or installed"
            )
            _OUT.hint(
                f"`lockenv add --feature {feature} --environment {feature} ...` adds it to "
                f"(or creates) environment {feature!r}"
            )
    specs: list[tuple[str, str]] = []
    unbounded: list[str] = []  # names given without a version: they get >= what is locked
    root = _paths(args).root
    if args.pypi:
        requirements = [
            _path_requirement(spec) if _names_a_directory(spec) else _pypi_requirement(spec)
            for spec in args.specs
        ]
        unbounded = [str(r.name) for r in requirements if not r.specifier and not r.url]
    else:
        specs = [_split_conda_spec(s) for s in args.specs]
        unbounded = [name for name, value in specs if value.rpartition("::")[2] == "*"]
        _require_channels(manifest, feature, args)

    def edit(text: str, in_pyproject: bool) -> str:
        if args.pypi:
            text = manifest_edit.add_pypi_dependencies(
                text,
                requirements,
                feature=feature,
                in_pyproject=in_pyproject,
                root=root,
                editable=args.editable,
            )
        else:
            text = manifest_edit.add_conda_dependencies(
                text, specs, feature=feature, in_pyproject=in_pyproject
            )
        if args.environment:
            text = manifest_edit.add_feature_to_environment(
                text, args.environment, feature, in_pyproject=in_pyproject
            )
        return text

    def bound(text: str, in_pyproject: bool, outcome: LockOutcome) -> str:
        from lockenv.lock.manifest import parse_manifest
        from lockenv.workspace import environments_using, lower_bounds

        edited = parse_manifest(text, path=Path("lockenv.toml"))
        kind = "pypi" if args.pypi else "conda"
        found = lower_bounds(
            outcome.lock, unbounded, kind=kind, environments=environments_using(edited, feature)
        )
        if not found:
            return text
        if args.pypi:
            bounded = [_with_lower_bound(r, found) for r in requirements if r.name in found]
            return manifest_edit.add_pypi_dependencies(
                text, bounded, feature=feature, in_pyproject=in_pyproject
            )
        values = dict(specs)
        bounded_conda = [
            (name, _conda_lower_bound(values[name], version)) for name, version in found.items()
        ]
        return manifest_edit.add_conda_dependencies(
            text, bounded_conda, feature=feature, in_pyproject=in_pyproject
        )

    _edit_manifest(args, edit, after_lock=bound if unbounded else None)
    _OUT.note(f"added {', '.join(args.specs)}")
    return 0


def _names_a_directory(spec: str) -> bool:
    """`add --pypi .`, `../lib`, `/abs/path`: a project directory, not a requirement."""
    return spec in (".", "..") or spec.startswith(("./", "../", "/", "~"))


def _pypi_requirement(spec: str) -> Any:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(spec)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(f"{spec!r} is not a PEP 508 requirement: {reason}") from None


def _with_lower_bound(requirement: Any, found: dict[str, str]) -> Any:
    from packaging.requirements import Requirement

    bounded = Requirement(str(requirement))
    bounded.specifier = Requirement(f"x>={found[requirement.name]}").specifier
    return bounded


def _conda_lower_bound(value: str, version: str) -> str:
    channel, sep, _ = value.rpartition("::")
    return f"{channel}{sep}>={version}"


def _load_manifest(args: argparse.Namespace) -> Manifest:
    from lockenv.lock.manifest import load_manifest

    return load_manifest(_paths(args).manifest)


def _require_channels(manifest: Manifest, feature: str | None, args: argparse.Namespace) -> None:
    """Conda packages need a channel: say so before editing, and point at ``--pypi``."""
    from lockenv.workspace import environments_using

    names = environments_using(manifest, feature) or list(manifest.environments)
    known = manifest.features.get(feature) if feature is not None else None
    feature_channels = known.channels if known is not None else ()
    if manifest.channels or feature_channels:
        return
    if any(manifest.environment(name).channels for name in names):
        return
    specs = " ".join(args.specs)
    raise UsageError(
        f"{specs}: `lockenv add` takes conda packages by default, and this project has no "
        "conda channels"
    ).with_hint(
        f"for PyPI packages run `lockenv add --pypi {specs}`; for conda packages add a "
        'channel to [project] channels (e.g. channels = ["conda-forge"])'
    )


def _split_conda_spec(spec: str) -> tuple[str, str]:
    """A conda MatchSpec from the command line as (name, manifest value)."""
    from lockenv.lock.conda.matchspec import MatchSpec, manifest_parts

    parsed = MatchSpec.parse(spec)
    text, channel = manifest_parts(parsed)
    return parsed.name, f"{channel}::{text}" if channel else text


def cmd_remove(args: argparse.Namespace) -> int:
    from lockenv.lock import manifest_edit

    removed: list[str] = []

    def edit(text: str, in_pyproject: bool) -> str:
        kind: Literal["pypi", "any"] = "pypi" if args.pypi else "any"
        new_text, names = manifest_edit.remove_dependencies(
            text, args.names, feature=args.feature, in_pyproject=in_pyproject, kind=kind
        )
        removed.extend(names)
        return new_text

    _edit_manifest(args, edit)
    _OUT.note(f"removed {', '.join(removed)}")
    return 0


def _print_changes(changes: Sequence[Any]) -> None:
    """The lock's changes, one line per package (uv style); silenced by ``-q``."""
    if _OUT.verbosity < 0:
        return
    for line in changes:
        _OUT.result(line.text, line.change)


# ------------------------------------------------------------------------- lock / list


def cmd_lock(args: argparse.Namespace) -> int:
    from lockenv import workspace

    paths = _paths(args)
    if args.check:
        reasons = workspace.check(paths)
        if reasons:
            for reason in reasons:
                _OUT.note(f"stale: {reason}")
            _OUT.error(f"{LOCK_NAME} is out of date")
            _OUT.hint("run `lockenv lock` and commit the result")
            return 1
        _OUT.note(f"{LOCK_NAME} is up to date")
        return 0
    manifest = workspace.load(paths)
    for warning in manifest.warnings:
        _OUT.warn(warning)
    if (
        not args.update
        and not args.update_all
        and not args.dry_run
        and not args.refresh
        and paths.lock.exists()
        and not workspace.check(paths, manifest)
    ):
        # A lock that satisfies the manifest keeps every pin (no network needed); only
        # its record of what the manifest asks for is brought up to date.
        workspace.record_requirements(paths, manifest)
        _OUT.note(f"{LOCK_NAME} is up to date")
        return 0
    outcome = workspace.lock(
        paths, _lock_options(args), dry_run=args.dry_run, say=_OUT, manifest=manifest
    )
    _show_index(manifest)
    for line in workspace.build_notes(outcome.builds):
        _OUT.note(f"note: {line}")
    if args.json:
        changes = [line.text for line in outcome.changes]
        builds = [
            {"environment": b.environment, "platform": b.platform, "name": b.name}
            | {"version": b.version, "reason": b.reason}
            for b in outcome.builds
        ]
        print(
            json.dumps({"changes": changes, "written": outcome.written, "builds": builds}, indent=2)
        )
    elif outcome.first and not args.dry_run:
        for name, env in sorted(outcome.lock.environments.items()):
            per_platform = ", ".join(
                f"{len(urls)} on {p}" for p, urls in sorted(env.packages.items())
            )
            _OUT.note(f"locked {name!r}: {per_platform}")
        _OUT.note(f"{len(outcome.lock.artifacts)} distinct artifacts")
    else:
        _print_changes(outcome.changes)
    if args.dry_run:
        _OUT.note("dry run: the lock was not written")
    elif outcome.written:
        _OUT.note(f"wrote {paths.lock}")
        if outcome.first:
            _OUT.hint("`lockenv sync` builds the environment; commit lockenv.lock")
    else:
        _OUT.note(f"{LOCK_NAME} is up to date")
    return 0


def _show_index(manifest: Manifest) -> None:
    """Say which package index a lock was made against when the manifest names none:
    pip's (an input of the lock, so where that setting comes from matters)."""
    if manifest.indexes or not any(
        manifest.environment(name).pypi_dependencies for name in manifest.environment_names()
    ):
        return
    from lockenv.pipconfig import default_index_source, default_index_url

    _OUT.note(f"index: {_redacted(default_index_url())} (from {default_index_source()})")


def _redacted(url: str) -> str:
    from lockenv.urls import redact_url

    return redact_url(url)


def _lock_for_reading(args: argparse.Namespace) -> Any:
    from lockenv.lockfile import read_lockfile

    if getattr(args, "lock", None):
        return read_lockfile(Path(args.lock))
    return read_lockfile(_paths(args).lock)


def cmd_list(args: argparse.Namespace) -> int:
    from lockenv.platforms import current_platform, get_platform
    from lockenv.workspace import locked_packages

    if args.platform:
        get_platform(args.platform)  # a typo is named as one, never "add it to platforms"
    lock = _lock_for_reading(args)
    platform = args.platform or current_platform()
    rows = locked_packages(lock, args.environment, platform)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    vwidth = max((len(r["version"]) for r in rows), default=7)
    for row in rows:
        print(
            f"{row['name']:<{width}}  {row['version']:<{vwidth}}  {row['kind']:<5}  "
            f"{row['filename']}"
        )
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from lockenv.platforms import current_platform
    from lockenv.reports.tree import dependency_tree, render_tree

    lock = _lock_for_reading(args)
    nodes = dependency_tree(
        lock,
        args.environment,
        args.platform or current_platform(),
        root=args.name,
        invert=args.invert,
    )
    if args.json:
        print(json.dumps([node.to_json() for node in nodes], indent=2))
    else:
        sys.stdout.write(render_tree(nodes))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from lockenv.lockfile import read_lockfile
    from lockenv.reports.diff import diff_locks

    if args.new:
        old, new = read_lockfile(Path(args.old)), read_lockfile(Path(args.new))
    elif args.old:
        # One file: that lock against the project's lock on disk (as `git diff REV`).
        old, new = read_lockfile(Path(args.old)), read_lockfile(_paths(args).lock)
    else:
        path = _paths(args).lock
        new = read_lockfile(path)
        old = _committed_lock(path)
    changes = diff_locks(old, new)
    if args.json:
        print(json.dumps(changes.to_json(), indent=2))
    else:
        for line in changes.render():
            _OUT.result(line, _line_style(line))
    return 0


def _line_style(line: str) -> str | None:
    return {"+": "added", "-": "removed", "~": "changed"}.get(line[:1])


def _committed_lock(path: Path) -> Any:
    """The lock at git HEAD; None (everything is new) before the first commit of it."""
    import subprocess

    from lockenv.lockfile import loads

    def git(*words: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", *words], cwd=path.parent, capture_output=True, text=True, check=False
            )
        except OSError:
            raise UsageError("git is not available to read the committed lock").with_hint(
                "name the locks to compare: `lockenv diff OLD.lock NEW.lock`"
            ) from None

    if git("rev-parse", "--is-inside-work-tree").returncode != 0:
        raise UsageError(
            f"{str(path.parent)!r} is not in a git repository, so there is no committed lock"
        ).with_hint("name the locks to compare: `lockenv diff OLD.lock [NEW.lock]`")
    shown = git("show", f"HEAD:./{path.name}")
    if shown.returncode == 0:
        return loads(shown.stdout, source=f"HEAD:{path.name}")
    if git("rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        _OUT.note(f"no commit yet: all of {path.name} is new")
    else:
        _OUT.note(f"{path.name} is not in the last commit: all of it is new")
    return None


def cmd_export(args: argparse.Namespace) -> int:
    from lockenv.platforms import current_platform
    from lockenv.reports.export import export

    lock = _lock_for_reading(args)
    text = export(lock, args.environment, args.platform or current_platform(), args.format)
    if args.output:
        _write_file(Path(args.output), text)
        _OUT.note(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_shell_hook(args: argparse.Namespace) -> int:
    from lockenv.sync.shell import default_shell, shell_hook

    args.lock = None
    prefix = _sync(args, announce=False)
    sys.stdout.write(shell_hook(prefix, args.shell or default_shell(os.environ)))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from lockenv.cache import default_cache_dir
    from lockenv.platforms import current_platform

    info: dict[str, Any] = {
        "lockenv-version": __version__,
        "platform": current_platform(),
        "python": sys.version.split()[0],
        "cache-dir": str(default_cache_dir()),
    }
    from lockenv.mirrors import config_files, describe, load_mirrors

    manifest: Path | None = None
    try:
        paths = _paths(args)
        manifest = paths.manifest
        info["manifest"] = str(paths.manifest)
        info["lock"] = str(paths.lock) if paths.lock.exists() else None
    except UsageError:
        info["manifest"] = None
        paths = None
    info["config-files"] = [str(p) for p in config_files() if p.is_file()]
    info["mirrors"] = list(describe(load_mirrors(manifest)))
    info.update(_index_info(paths))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if isinstance(value, list):
                print(f"{key}:" + ("" if value else " none"))
                for item in value:
                    print(f"  {item}")
            else:
                print(f"{key}: {'none' if value in (None, '') else value}")
    return 0


def _index_info(paths: ProjectPaths | None) -> dict[str, Any]:
    """Which indexes and channels a lock here is (and was) made against."""
    from lockenv.lock.manifest import load_manifest
    from lockenv.pipconfig import default_index_source, default_index_url

    info: dict[str, Any] = {}
    manifest = load_manifest(paths.manifest) if paths is not None else None
    if manifest is not None and manifest.indexes:
        info["indexes"] = [_redacted(u) for u in manifest.indexes]
    else:
        try:
            info["indexes"] = [_redacted(default_index_url())]
            info["indexes-from"] = default_index_source()
        except UsageError as exc:
            info["indexes"] = []
            info["indexes-from"] = str(exc)
    if manifest is not None:
        info["channels"] = [_redacted(c) for c in manifest.channels]
    if paths is not None and paths.lock.exists():
        from lockenv.lockfile import read_lockfile

        inputs = read_lockfile(paths.lock).inputs
        info["locked-indexes"] = list(inputs.indexes)
        info["locked-channels"] = list(inputs.channels)
    return info


def cmd_cache(args: argparse.Namespace) -> int:
    from lockenv.cache import default_cache_dir

    cache = default_cache_dir()
    if args.action == "dir":
        print(cache)
    elif args.action == "clean":
        import shutil

        from lockenv.cache import Cache

        spares = _remove_spares(Cache(cache), dry_run=False)
        shutil.rmtree(cache, ignore_errors=True)
        _OUT.note(f"removed {cache}" + (f" and {_spare_count(spares)}" if spares else ""))
    elif args.action == "prune":
        from lockenv.cache import Cache, keep_policy, prune
        from lockenv.sync.usage import environment_uses

        root = Cache(cache)
        # First: their hard links would keep the bytes of pruned cache files.
        spares = _remove_spares(root, dry_run=args.dry_run)
        pruned = prune(
            root,
            older_than_days=args.older_than,
            keep=keep_policy(args.keep),
            environments=environment_uses(root),
            dry_run=args.dry_run,
        )
        for item in pruned.items:
            line = f"{item.path}  {format_size(item.freed_bytes)}  ({item.reason})"
            if args.dry_run:
                print(f"would remove {line}")
            else:
                _OUT.debug(f"removed {line}")
        verb = "would prune" if args.dry_run else "pruned"
        freed = "would be freed" if args.dry_run else "freed"
        kept = pruned.kept_for_environments
        spared = ""
        if spares:
            size = format_size(sum(s for _path, s in spares))
            spared = f"; {_spare_count(spares)} of environments ({size}) " + (
                "would be removed" if args.dry_run else "removed"
            )
        _OUT.note(
            f"{verb} {pruned.entries} cache entries and {pruned.leftovers} leftovers "
            f"({format_size(pruned.freed_bytes)} {freed}) in {cache}"
            + (f"; kept {kept} old entries that environments use" if kept else "")
            + spared
        )
    elif args.action == "size":
        from lockenv.cache import Cache, cache_usage

        usage = cache_usage(Cache(cache))
        total_bytes = sum(u.bytes for u in usage.values())
        total_inodes = sum(u.inodes for u in usage.values())
        for part, u in sorted(usage.items()):
            print(f"{part:<14}{format_size(u.bytes):>12}{u.inodes:>10} inodes")
        print(f"{'total':<14}{format_size(total_bytes):>12}{total_inodes:>10} inodes  ({cache})")
    return 0


def _spare_count(spares: list[tuple[Path, int]]) -> str:
    return f"{len(spares)} spare tree" + ("s" if len(spares) != 1 else "")


def _remove_spares(cache: Cache, *, dry_run: bool) -> list[tuple[Path, int]]:
    """Remove (``dry_run``: list) the spare trees kept beside the environments ``cache``
    knows (`lockenv.sync.reuse`); ``(path, bytes it kept on disk)`` of each, said on a
    line of its own (stdout when dry, -v otherwise).  A spare whose environment is being
    synced is left alone."""
    from lockenv.cache import tree_usage
    from lockenv.sync.materialize import remove_spare
    from lockenv.sync.usage import spare_trees

    done = []
    for prefix, spare in spare_trees(cache):
        size = tree_usage(spare).bytes
        if not dry_run and not remove_spare(prefix):
            continue
        line = (
            f"{spare}  {format_size(size)}  (the tree the last sync of {str(prefix)!r} "
            "replaced, kept for its next sync; its hard links keep cache files on disk)"
        )
        if dry_run:
            print(f"would remove {line}")
        else:
            _OUT.debug(f"removed {line}")
        done.append((spare, size))
    return done


def cmd_bundle(args: argparse.Namespace) -> int:
    from lockenv.reports.bundle import write_bundle

    report = write_bundle(
        Path(args.lock) if args.lock else _paths(args).lock,
        Path(args.out),
        environments=args.environment or (),
        platforms=args.platform or (),
        offline=args.offline,
        progress=_OUT,
        built_wheels=args.built_wheels,
    )
    _OUT.note(
        f"bundled {report.artifacts} artifacts ({format_size(report.size)}, "
        f"{report.downloaded} downloaded) for {', '.join(report.environments)} on "
        f"{', '.join(report.platforms)}: {report.path}"
    )
    if report.built:
        from lockenv.platforms import current_platform

        _OUT.note(f"with {report.built} wheels built here for {current_platform()}")
    if report.sources:
        _OUT.note(
            f"not bundled (source trees, not archives): {', '.join(report.sources)}; a sync "
            "from the bundle builds them from the project directory or git"
        )
    return 0


def cmd_merge_driver(args: argparse.Namespace) -> int:
    from lockenv import workspace

    merged = workspace.merge_driver(
        Path(args.base), Path(args.ours), Path(args.theirs), say=_OUT.note
    )
    return 0 if merged else 1


# ------------------------------------------------------------------------- environments


def _sync(args: argparse.Namespace, *, announce: bool) -> Path:
    from lockenv import workspace
    from lockenv.sync.materialize import SyncOptions

    target = workspace.sync_target(
        manifest=Path(args.manifest) if args.manifest else None,
        lock_file=Path(args.lock) if getattr(args, "lock", None) else None,
        env=args.environment,
        prefix=Path(args.prefix) if args.prefix else None,
    )
    options = SyncOptions(
        bundle=_bundle(target.lock_path, getattr(args, "bundle", None)),
        link_mode=getattr(args, "link_mode", None) or "hardlink",
        # Asked for by name: a cache on another filesystem is an error, not a quiet copy.
        link_mode_strict=getattr(args, "link_mode", None) == "hardlink",
        offline=args.offline,
        python=Path(args.python) if getattr(args, "python", None) else None,
        compile_bytecode=getattr(args, "compile", False),
        manifest=target.paths.manifest if target.paths is not None else None,
        allow_base_drift=getattr(args, "allow_base_drift", False),
        no_build=getattr(args, "no_build", False),
    )
    report = workspace.sync(
        target,
        locked=args.locked,
        frozen=args.frozen,
        lock_options=lambda: _lock_options(args),
        sync_options=options,
        say=_OUT,
    )
    if report is not None and report.copied_across_filesystems:
        _OUT.warn(
            "the cache is on another filesystem than the environment: its files were copied, "
            "not hardlinked (more disk, slower syncs)"
        )
        _OUT.hint(
            "set LOCKENV_CACHE_DIR to a directory on the environment's filesystem, or pass "
            "--link-mode copy to say that copies are meant"
        )
    if report is None or report.no_op:
        # (no_op: another sync, waited for, had just made it so)
        if announce:
            from lockenv.fastpath import up_to_date_message

            _OUT.note(up_to_date_message(args.environment, str(target.prefix)))
    elif announce:
        _OUT.note(
            f"synced {args.environment!r} in {report.seconds:.2f}s: "
            f"{len(report.installed)} installed, {len(report.removed)} removed, "
            f"{len(report.unchanged)} unchanged ({target.prefix})"
        )
    return target.prefix


def _bundle(lock_path: Path, explicit: str | None) -> Path | None:
    if explicit is None and not (lock_path.parent / "bundle.json").is_file():
        return None  # the usual case: no import, the no-op sync stays lean
    from lockenv.sync.bundle_source import bundle_for_lock

    return bundle_for_lock(lock_path, Path(explicit) if explicit else None)


def cmd_sync(args: argparse.Namespace) -> int:
    _sync(args, announce=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import subprocess

    from lockenv.sync.materialize import activation_env

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("nothing to run: use `lockenv run -- CMD [ARG]...`")
    prefix = _sync(args, announce=False)
    env = activation_env(prefix, os.environ)
    if os.name != "nt":
        import shutil

        program = shutil.which(command[0], path=env.get("PATH"))
        if program is None:
            raise UsageError(
                f"{command[0]!r} is not a command in environment {args.environment!r} or on PATH"
            )
        _OUT.finish()
        sys.stdout.flush()
        sys.stderr.flush()
        # exec: signals and the exit status reach the caller as if lockenv were not there.
        os.execve(program, command, env)
    return subprocess.call(command, env=env)


def cmd_verify(args: argparse.Namespace) -> int:
    from lockenv import workspace
    from lockenv.lockfile import read_lockfile
    from lockenv.platforms import current_platform
    from lockenv.sync.verify import environment_digest, verify_environment

    target = workspace.sync_target(
        manifest=Path(args.manifest) if args.manifest else None,
        lock_file=Path(args.lock) if args.lock else None,
        env=args.environment,
        prefix=Path(args.prefix) if args.prefix else None,
    )
    lock = read_lockfile(target.lock_path) if target.lock_path.exists() else None
    from lockenv.cache import default_cache_dir

    report = verify_environment(
        target.prefix, lock, args.environment, current_platform(), cache_dir=default_cache_dir()
    )
    digest = environment_digest(target.prefix) if args.digest and report.ok else None
    if args.json:
        data = report.to_json()
        if digest:
            data["digest"] = digest
        print(json.dumps(data, indent=2))
    else:
        for label, items in (
            ("modified", report.modified),
            ("missing", report.missing),
            ("extra", report.extra),
            ("missing package", report.missing_packages),
            ("extra package", report.extra_packages),
            ("mismatched package", report.mismatched_packages),
            ("mode", report.wrong_modes),
            ("problem", report.problems),
        ):
            for item in items:
                print(f"{label}: {item}")
        if digest:
            print(digest)
        if report.ok:
            _OUT.note(f"{report.files_checked} files verified in {target.prefix}")
    return 0 if report.ok else 1


# ------------------------------------------------------------------------- parser


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _flag(p: Any, *names: str, help_text: str, env: str | None = None) -> None:
    """A store-true option; ``env`` (``LOCKENV_OFFLINE=1``) turns it on too, as uv does."""
    if env is None:
        p.add_argument(*names, action="store_true", help=help_text)
    else:
        p.add_argument(
            *names, action="store_true", default=_env_true(env), help=f"{help_text} [env: {env}]"
        )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; every option says what it does (and the variable it reads).

    With ``command`` (a name in `COMMANDS`), the other commands' parsers are left out:
    what `main` parses with once `command_named` has found the command in the arguments.
    Everything that parse can print (the command's help, its errors, the top usage) is
    what the whole command line prints.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="lockenv",
        description="Reproducible conda + PyPI environments from one lockfile.",
        epilog="Exit codes: 0 success, 1 a check failed (stale lock, drift), 2 bad input "
        "(manifest, lock, arguments, unsatisfiable requirements), 3 other failures.",
    )
    parser.add_argument("--version", action="version", version=f"lockenv {__version__}")
    _global_options(parser, argparse.SUPPRESS, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # The global options work after the command too (`lockenv lock -q`).
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS, top=False)
    for name, (handler, help_text, options) in COMMANDS.items():
        if command is None or name == command:
            p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
            p.set_defaults(handler=handler)
            options(p)
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, when only global options, spelled out, come before it.

    None when that is not certain (``--help``, ``--version``, an abbreviated or unknown
    option, no command): the whole command line parses those, and says what it says.
    """
    args = iter(argv)
    for arg in args:
        if arg in COMMANDS:
            return arg
        if arg in ("--manifest", "--color"):
            value = next(args, "-")
            if value.startswith("-"):
                return None  # argparse's "expected one argument", from the whole parser
        elif arg.startswith(("--manifest=", "--color=")) or arg in ("--verbose", "--quiet"):
            continue
        elif not (len(arg) > 1 and arg[0] == "-" and set(arg[1:]) <= {"v", "q"}):  # -vv, -q
            return None
    return None


def _init_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--platform",
        action="append",
        metavar="P",
        help="a target platform, e.g. linux-64 (repeatable; default: this machine's)",
    )
    p.add_argument(
        "--channel", action="append", metavar="C", help="a conda channel name or URL (repeatable)"
    )
    p.add_argument(
        "--index",
        action="append",
        metavar="URL",
        help="a package index (repeatable; default: pip's, from PIP_INDEX_URL or pip.conf)",
    )
    p.add_argument(
        "--requires-python",
        metavar="SPEC",
        help="the Python of PyPI-only environments (default: this interpreter's minor series)",
    )
    p.add_argument("--name", help="the project name (default: the directory's name)")
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help=(
            "import a requirements.txt, environment.yml, pyproject.toml (extras and "
            "dependency groups become features), pylock.toml or conda explicit file; "
            "this directory's own pyproject.toml is configured in place instead"
        ),
    )


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC",
        help=(
            "conda MatchSpecs (numpy, 'numpy>=1.26', conda-forge::numpy), or with --pypi "
            "PEP 508 (or a project directory such as .)"
        ),
    )
    _dependency_options(p)
    p.add_argument("--editable", action="store_true", help="path dependencies install editable")
    p.add_argument(
        "--environment",
        metavar="ENV",
        help="with --feature: include the feature in environment ENV (created if missing)",
    )


def _remove_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", metavar="NAME", help="package names to remove")
    _dependency_options(p)


def _lock_command_options(p: argparse.ArgumentParser) -> None:
    _flag(p, "--check", help_text="exit 1 if the lock is stale; write nothing")
    p.add_argument(
        "--update",
        action="append",
        metavar="NAME",
        help="let NAME move to the newest version allowed (repeatable); other pins stay",
    )
    _flag(p, "--update-all", help_text="ignore every locked pin: re-resolve from scratch")
    _flag(p, "--dry-run", help_text="resolve and show the changes, but do not write the lock")
    _flag(p, "--refresh", help_text="ask the indexes and channels again, not the HTTP cache")
    _flag(p, "--offline", help_text="no network: use cached index pages only", env=_OFFLINE)
    _flag(p, "--json", help_text="print the changes as JSON")


def _tree_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="start from this package")
    _flag(p, "--invert", help_text="show what depends on NAME")
    _lock_view_options(p)


def _diff_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", nargs="?", metavar="OLD.lock", help="the older lock")
    p.add_argument("new", nargs="?", metavar="NEW.lock", help="the newer lock")
    _flag(p, "--json", help_text="print the changes as JSON")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        required=True,
        choices=["requirements.txt", "pylock.toml", "conda-explicit", "environment.yml"],
        help="the file format to write",
    )
    _lock_view_options(p, json=False)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")


def _shell_hook_options(p: argparse.ArgumentParser) -> None:
    _env_options(p)
    p.add_argument(
        "--shell",
        choices=["bash", "zsh", "fish", "powershell"],
        help="the shell to write for (default: from $SHELL)",
    )
    _sync_mode_options(p)


def _info_options(p: argparse.ArgumentParser) -> None:
    _flag(p, "--json", help_text="print it as JSON")


def _cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["dir", "size", "clean", "prune"],
        help="dir: print where it is; size: its bytes and inodes; clean: remove it all; "
        "prune: remove what no environment uses and no sync used lately",
    )
    p.add_argument(
        "--older-than",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="prune: remove entries no sync used for DAYS days and no known environment "
        "uses (default 30)",
    )
    p.add_argument(
        "--keep",
        choices=["trees", "both", "archives"],
        help="prune: keep only artifacts' sealed trees (trees), their archives too (both), "
        "or only archives (default: $LOCKENV_CACHE_KEEP, else trees)",
    )
    _flag(p, "--dry-run", help_text="prune: list what would go and its size, remove nothing")


def _bundle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="the bundle directory (or OUT.tar: one tar file)")
    p.add_argument("-e", "--environment", action="append", metavar="ENV", help="default: all")
    p.add_argument("--platform", action="append", metavar="P", help="default: every locked one")
    p.add_argument("--lock", metavar="FILE", help="bundle this lockfile (default: the project's)")
    _flag(p, "--offline", help_text="take artifacts from the cache only", env=_OFFLINE)
    p.add_argument(
        "--built-wheels",
        action="store_true",
        help="also bundle the wheels built here from sdists and git sources (for this platform)",
    )


def _merge_driver_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", metavar="BASE", help="the common ancestor (git's %%O)")
    p.add_argument("ours", metavar="OURS", help="our version, overwritten with the result (%%A)")
    p.add_argument("theirs", metavar="THEIRS", help="their version (%%B)")
    p.add_argument(
        "path", nargs="?", metavar="PATH", help="the lock's path in the repository (%%P)"
    )


def _sync_options(p: argparse.ArgumentParser) -> None:
    _env_options(p)
    _sync_mode_options(p)
    p.add_argument("--lock", metavar="FILE", help="materialize this lockfile (needs --prefix)")
    p.add_argument("--bundle", metavar="DIR", help=_BUNDLE_HELP)
    p.add_argument("--python", metavar="PATH", help="the host interpreter to build on")
    p.add_argument(
        "--link-mode",
        choices=["hardlink", "copy", "symlink"],
        default=os.environ.get(_LINK_MODE) or None,
        help="how files get from the cache into the environment (default: hardlink, copying "
        f"where the cache is on another filesystem) [env: {_LINK_MODE}]",
    )
    _flag(
        p,
        "--compile",
        help_text=(
            "write deterministic bytecode, compiled by the Python running lockenv when it is "
            "the environment's version, else by the environment's own interpreter (a conda "
            "environment's locked python), isolated (-I -S: no site, no package code)"
        ),
    )
    _flag(
        p,
        "--allow-base-drift",
        help_text="build on a base environment that changed since the lock (default: refuse)",
    )
    p.add_argument(
        "--no-build",
        action="store_true",
        help="refuse to build the lock's source distributions (wheels only)",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    import argparse

    _env_options(p)
    p.add_argument("--lock", metavar="FILE", help="this lockfile's environment (needs --prefix)")
    _sync_mode_options(p)
    p.add_argument("--bundle", metavar="DIR", help=_BUNDLE_HELP)
    p.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG]...", help="the command to run"
    )


def _verify_options(p: argparse.ArgumentParser) -> None:
    _env_options(p)
    p.add_argument("--lock", metavar="FILE", help="check against this lockfile")
    _flag(p, "--digest", help_text="print one hash of the environment's contents")
    _flag(p, "--json", help_text="print the report as JSON")


_BUNDLE_HELP = "take artifacts from this bundle (default: a bundle.json beside the lock)"
_OFFLINE = "LOCKENV_OFFLINE"
_LINK_MODE = "LOCKENV_LINK_MODE"
_MANIFEST = "LOCKENV_MANIFEST"
_COLOR = "LOCKENV_COLOR"


def _global_options(p: argparse.ArgumentParser, default: Any, *, top: bool) -> None:
    """``--manifest``, ``-v``, ``-q``, ``--color``: before or after the command."""
    p.add_argument(
        "--manifest",
        metavar="PATH",
        default=(os.environ.get(_MANIFEST) or None) if top else default,
        help=f"the manifest (default: found by walking up from here) [env: {_MANIFEST}]",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else default,
        help="say more: -v logs requests, cache hits and resolver decisions (-vv: all)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0 if top else default,
        help="print nothing but errors (and the output asked for)",
    )
    p.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default=(os.environ.get(_COLOR) or "auto") if top else default,
        help="colour the output (auto: on terminals, unless NO_COLOR is set or FORCE_COLOR "
        f"forces it) [env: {_COLOR}]",
    )


def _dependency_options(p: argparse.ArgumentParser) -> None:
    _flag(p, "--pypi", help_text="PyPI packages (PEP 508) rather than conda packages")
    p.add_argument("--feature", metavar="F", help="the feature's tables (default: the top ones)")
    _flag(p, "--no-lock", help_text="edit the manifest only; do not lock", env="LOCKENV_NO_LOCK")


def _lock_view_options(p: argparse.ArgumentParser, *, json: bool = True) -> None:
    p.add_argument("-e", "--environment", default="default", metavar="ENV", help=_ENV_HELP)
    p.add_argument("--platform", metavar="P", help="the platform (default: this machine's)")
    p.add_argument("--lock", metavar="FILE", help="read this lockfile (default: the project's)")
    if json:
        _flag(p, "--json", help_text="print JSON")


def _sync_mode_options(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    _flag(
        mode,
        "--locked",
        help_text="fail (exit 1) if the lock is stale; never write it",
        env="LOCKENV_LOCKED",
    )
    _flag(
        mode,
        "--frozen",
        help_text="use the lock as it is, without reading the manifest",
        env="LOCKENV_FROZEN",
    )
    _flag(p, "--offline", help_text="no network: the cache (and a bundle) only", env=_OFFLINE)


_ENV_HELP = "the environment (default: default)"


def _env_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--environment", default="default", metavar="ENV", help=_ENV_HELP)
    p.add_argument(
        "--prefix", metavar="DIR", help="where the environment lives (default: .lockenv/envs/ENV)"
    )


# Each command: its handler, the help line `lockenv --help` lists, what adds its options.
COMMANDS: dict[str, tuple[Handler, str, Callable[[argparse.ArgumentParser], None]]] = {
    "init": (
        cmd_init,
        "create a lockenv.toml here, or [tool.lockenv] in the pyproject.toml of a project",
        _init_options,
    ),
    "add": (cmd_add, "add dependencies to the manifest and lock", _add_options),
    "remove": (cmd_remove, "remove dependencies from the manifest and lock", _remove_options),
    "lock": (cmd_lock, "resolve the manifest into lockenv.lock", _lock_command_options),
    "list": (cmd_list, "list the locked packages of one environment", _lock_view_options),
    "tree": (cmd_tree, "show the locked dependency tree", _tree_options),
    "diff": (
        cmd_diff,
        "what changed between two locks (default: the lock at git HEAD against the one on "
        "disk; with one file: that file against the one on disk)",
        _diff_options,
    ),
    "export": (cmd_export, "write the locked packages in another format", _export_options),
    "shell-hook": (
        cmd_shell_hook,
        "print the script that activates an environment",
        _shell_hook_options,
    ),
    "info": (
        cmd_info,
        "show what lockenv sees: versions, paths, indexes, channels",
        _info_options,
    ),
    "cache": (
        cmd_cache,
        "the shared cache (LOCKENV_CACHE_DIR, else the user cache)",
        _cache_options,
    ),
    "bundle": (
        cmd_bundle,
        "write a directory with everything needed to sync offline",
        _bundle_options,
    ),
    "merge-driver": (
        cmd_merge_driver,
        "git merge driver for lockenv.lock: merge the pins of both sides (see the README)",
        _merge_driver_options,
    ),
    "sync": (cmd_sync, "build or update an environment from the lock", _sync_options),
    "run": (cmd_run, "run a command in an environment (syncing it first)", _run_options),
    "verify": (cmd_verify, "re-hash an environment against its lock", _verify_options),
}


# -- the plain sync and run, read without argparse ------------------------------------------
#
# What a job array repeats is a plain `sync` or `run`; when `lockenv.__main__` cannot answer
# it from the stamp, it comes here.  Importing argparse and building a parser would cost it
# more than the reading does, so these few forms are read by hand, into the very namespace
# argparse makes of them (tests/test_cli_parser.py compares the two, argument by argument).
# Anything else, even a repeated or abbreviated option, goes to argparse.


def plain_arguments(argv: Sequence[str]) -> argparse.Namespace | None:
    """The namespace `build_parser` makes of ``argv`` when it is a plain ``sync`` or ``run``
    (``-q``; ``--frozen`` or ``--locked``, ``--offline``, ``-e``, ``--prefix``, ``--lock``;
    ``run``'s command), read without argparse (`lockenv.fastpath.read_plain`); None for
    anything else."""
    from lockenv.fastpath import read_plain

    given = read_plain(argv)
    if given is None or "bundle" in given:
        return None
    command = given["command"]
    values: dict[str, Any] = {
        "manifest": os.environ.get(_MANIFEST) or None,
        "verbose": 0,
        # The command's own -q replace those before it (argparse's sub-parser count).
        "quiet": given["quiet_after"] or given["quiet"],  # ints
        "color": os.environ.get(_COLOR) or "auto",
        "command": command,
        "environment": given.get("environment", "default"),
        "prefix": given.get("prefix"),
        "lock": given.get("lock"),
        "bundle": None,
        "locked": bool(given.get("locked")) or _env_true("LOCKENV_LOCKED"),
        "frozen": bool(given.get("frozen")) or _env_true("LOCKENV_FROZEN"),
        "offline": bool(given.get("offline")) or _env_true(_OFFLINE),
    }
    if command == "run":
        values.update(handler=cmd_run, cmd=given.get("cmd", []))
    else:
        values.update(
            handler=cmd_sync,
            python=None,
            link_mode=os.environ.get(_LINK_MODE) or None,
            compile=False,
            allow_base_drift=False,
            no_build=False,
        )
    # The handlers read attributes only: a SimpleNamespace serves as argparse's Namespace.
    return cast("argparse.Namespace", SimpleNamespace(**values))


_OUT = Console(0)


def main(argv: Sequence[str] | None = None) -> int:
    global _OUT
    argv = sys.argv[1:] if argv is None else argv
    # One command's parser at most: building all of them costs a sync more than parsing.
    args = plain_arguments(argv) or build_parser(command_named(argv)).parse_args(argv)
    _OUT = Console(args.verbose - args.quiet, color=args.color)
    if args.verbose:
        _OUT.install_logging()
    try:
        result: int = args.handler(args)
        _OUT.finish()
        return result
    except LockenvError as exc:
        _OUT.finish()
        if args.verbose:
            _print_traceback()
        if exc.details:  # e.g. the tail of a build log, before the verdict
            from lockenv.urls import redact_text

            for line in exc.details:
                print(f"  | {redact_text(line)}", file=sys.stderr)
        # One line, whatever a library put into the message.
        _OUT.error(re.sub(r"\s*\n\s*", " ", str(exc)))
        if exc.hint:
            _OUT.hint(exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        _OUT.finish()
        _OUT.error("interrupted")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        _OUT.finish()
        if args.verbose:
            _print_traceback()
        _OUT.error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 3
    except Exception as exc:  # a bug: still one line unless -v
        _OUT.finish()
        if args.verbose:
            _print_traceback()
        _OUT.error(
            f"internal error ({type(exc).__name__}: {exc}); run with -v for the traceback "
            "and report it"
        )
        return 3


def _print_traceback() -> None:
    # Through the same scrubbing as every message: a traceback quotes URLs too.
    import traceback

    from lockenv.urls import redact_text

    sys.stderr.write(redact_text(traceback.format_exc()))


def output() -> Console:
    return _OUT


__all__ = [
    "COMMANDS",
    "EXIT_INPUT_ERROR",
    "build_parser",
    "command_named",
    "main",
    "output",
    "plain_arguments",
]
