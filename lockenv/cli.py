"""The ``lockenv`` command: parse arguments, call one function, print.

Errors reach the user as one line and an exit code (0 ok, 1 a check failed, 2 bad
input, 3 other failures); a traceback only with ``-v``.  Imports are made inside the
commands so that the no-op ``sync`` starts quickly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockenv import __version__
from lockenv.errors import EXIT_INPUT_ERROR, LockenvError, UsageError
from lockenv.project import LOCK_NAME

if TYPE_CHECKING:
    from lockenv.lock.resolve import LockOptions
    from lockenv.project import ProjectPaths

Handler = Callable[[argparse.Namespace], int]


class _Output:
    """Where messages go: progress and notes to stderr, results to stdout.

    On a terminal, progress is one status line rewritten in place; elsewhere (CI logs)
    every message is a line of its own.  Progress comes from worker threads too, so
    each write happens whole, under a lock.
    """

    def __init__(self, verbosity: int, *, live: bool | None = None) -> None:
        import threading

        self.verbosity = verbosity
        self.live = sys.stderr.isatty() if live is None else live
        self._status = False  # a status line is showing
        self._lock = threading.Lock()

    def _write(self, message: str, *, status: bool = False) -> None:
        with self._lock:
            if self.live:
                width = shutil.get_terminal_size().columns - 1
                clear = "\r\x1b[K" if self._status else ""
                if status:
                    sys.stderr.write(clear + message[:width])
                else:
                    sys.stderr.write(clear + message + "\n")
                self._status = status
            else:
                sys.stderr.write(message + "\n")
            sys.stderr.flush()

    def note(self, message: str) -> None:
        if self.verbosity >= 0:
            self._write(message)

    def progress(self, message: str) -> None:
        if self.verbosity >= 0:
            self._write(message, status=self.verbosity == 0)

    def debug(self, message: str) -> None:
        if self.verbosity > 0:
            self._write(message)

    def finish(self) -> None:
        """Clear a status line left showing."""
        with self._lock:
            if self._status:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
                self._status = False


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
    from lockenv.lock.manifest_edit import init_manifest_text
    from lockenv.platforms import current_platform, get_platform

    pyproject = _project_pyproject(args)
    if pyproject is not None:
        return _init_pyproject(args, pyproject)
    target = Path(args.manifest or "lockenv.toml")
    if target.is_dir():
        target = target / "lockenv.toml"
    if target.exists():
        raise UsageError(f"{str(target)!r} already exists; edit it or use `lockenv add`")
    platforms = args.platform or [current_platform()]
    for platform in platforms:
        get_platform(platform)
    if args.requires_python:
        requires_python = args.requires_python
    else:
        requires_python = f"=={sys.version_info.major}.{sys.version_info.minor}.*"
    name = args.name or target.resolve().parent.name or "project"
    text = init_manifest_text(
        name=name,
        platforms=platforms,
        channels=args.channel or [],
        requires_python=requires_python,
        indexes=args.index or [],
    )
    if args.from_file:
        from lockenv.lock.importers import import_requirements

        text = import_requirements(text, Path(args.from_file))
    from lockenv.lock.manifest import parse_manifest

    parse_manifest(text, path=target)  # never write a manifest lockenv cannot read
    target.write_text(text, encoding="utf-8")
    _OUT.note(f"wrote {target}")
    return 0


def _project_pyproject(args: argparse.Namespace) -> Path | None:
    """The pyproject.toml whose [project] `init` configures lockenv in, if any: the one
    `--from` names, else the current directory's (unless --manifest names another file)."""
    from lockenv.lock.manifest_edit import pyproject_project

    if args.from_file:
        candidate = Path(args.from_file)
        return candidate if candidate.name == "pyproject.toml" else None
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
    pyproject.write_text(new, encoding="utf-8")
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


def _edit_manifest(args: argparse.Namespace, edit: Callable[[str, bool], str]) -> int:
    from lockenv import workspace
    from lockenv.lock.manifest import parse_manifest

    paths = _paths(args)
    original = paths.manifest.read_text(encoding="utf-8")
    in_pyproject = paths.manifest.name == "pyproject.toml"
    text = edit(original, in_pyproject)
    parse_manifest(text, path=paths.manifest)
    paths.manifest.write_text(text, encoding="utf-8")
    if paths.lock.exists() and not args.no_lock:
        # Like pixi and uv: the lock follows the manifest; a failed lock undoes the edit.
        try:
            outcome = workspace.lock(paths, _lock_options(args), say=_OUT.progress)
        except BaseException:
            paths.manifest.write_text(original, encoding="utf-8")
            raise
        for line in outcome.changes:
            _OUT.note(line)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from packaging.requirements import InvalidRequirement, Requirement

    from lockenv.lock import manifest_edit

    if args.pypi:
        requirements = []
        for spec in args.specs:
            if spec in (".", "..") or spec.startswith(("./", "../", "/", "~")):
                requirements.append(_path_requirement(spec))
                continue
            try:
                requirements.append(Requirement(spec))
            except InvalidRequirement as exc:
                reason = str(exc).splitlines()[0]
                raise UsageError(f"{spec!r} is not a PEP 508 requirement: {reason}") from None
        root = _paths(args).root

        def edit(text: str, in_pyproject: bool) -> str:
            return manifest_edit.add_pypi_dependencies(
                text,
                requirements,
                feature=args.feature,
                in_pyproject=in_pyproject,
                root=root,
                editable=args.editable,
            )
    else:
        specs = [_split_conda_spec(s) for s in args.specs]

        def edit(text: str, in_pyproject: bool) -> str:
            return manifest_edit.add_conda_dependencies(
                text, specs, feature=args.feature, in_pyproject=in_pyproject
            )

    result = _edit_manifest(args, edit)
    _OUT.note(f"added {', '.join(args.specs)}")
    return result


def _split_conda_spec(spec: str) -> tuple[str, str]:
    text = spec.strip()
    for i, char in enumerate(text):
        if char in " =<>!~[":
            name, rest = text[:i], text[i:].strip()
            return name, rest or "*"
    return text, "*"


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

    result = _edit_manifest(args, edit)
    _OUT.note(f"removed {', '.join(removed)}")
    return result


# ------------------------------------------------------------------------- lock / list


def cmd_lock(args: argparse.Namespace) -> int:
    from lockenv import workspace

    paths = _paths(args)
    if args.check:
        reasons = workspace.check(paths)
        if reasons:
            for reason in reasons:
                _OUT.note(f"stale: {reason}")
            _OUT.note(f"{LOCK_NAME} is out of date; run `lockenv lock`")
            return 1
        _OUT.note(f"{LOCK_NAME} is up to date")
        return 0
    if (
        not args.update
        and not args.update_all
        and not args.dry_run
        and not args.refresh
        and paths.lock.exists()
        and not workspace.check(paths)
    ):
        # A lock that satisfies the manifest keeps every pin (no network needed); only
        # its record of what the manifest asks for is brought up to date.
        workspace.record_requirements(paths)
        _OUT.note(f"{LOCK_NAME} is up to date")
        return 0
    outcome = workspace.lock(paths, _lock_options(args), dry_run=args.dry_run, say=_OUT.progress)
    for line in workspace.build_notes(outcome.builds):
        _OUT.note(f"note: {line}")
    if args.json:
        builds = [
            {"environment": b.environment, "platform": b.platform, "name": b.name}
            | {"version": b.version, "reason": b.reason}
            for b in outcome.builds
        ]
        print(
            json.dumps(
                {"changes": outcome.changes, "written": outcome.written, "builds": builds},
                indent=2,
            )
        )
    elif outcome.first and not args.dry_run:
        for name, env in sorted(outcome.lock.environments.items()):
            per_platform = ", ".join(
                f"{len(urls)} on {p}" for p, urls in sorted(env.packages.items())
            )
            _OUT.note(f"locked {name!r}: {per_platform}")
        _OUT.note(f"{len(outcome.lock.artifacts)} distinct artifacts")
    else:
        for line in outcome.changes:
            print(line)
    if args.dry_run:
        _OUT.note("dry run: the lock was not written")
    elif outcome.written:
        _OUT.note(f"wrote {paths.lock}")
    else:
        _OUT.note(f"{LOCK_NAME} is up to date")
    return 0


def _lock_for_reading(args: argparse.Namespace) -> Any:
    from lockenv.lockfile import read_lockfile

    if getattr(args, "lock", None):
        return read_lockfile(Path(args.lock))
    return read_lockfile(_paths(args).lock)


def cmd_list(args: argparse.Namespace) -> int:
    from lockenv.platforms import current_platform
    from lockenv.workspace import locked_packages

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
    import subprocess

    from lockenv.lockfile import loads, read_lockfile
    from lockenv.reports.diff import diff_locks

    if args.new:
        old, new = read_lockfile(Path(args.old)), read_lockfile(Path(args.new))
    else:
        # Without two files: the committed lock (git HEAD) against the one on disk.
        path = Path(args.old) if args.old else _paths(args).lock
        new = read_lockfile(path)
        shown = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"],
            cwd=path.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode != 0:
            raise UsageError(
                f"cannot read {path.name} at git HEAD; name two lock files: "
                "`lockenv diff OLD.lock NEW.lock`"
            )
        old = loads(shown.stdout, source=f"HEAD:{path.name}")
    changes = diff_locks(old, new)
    if args.json:
        print(json.dumps(changes.to_json(), indent=2))
    else:
        for line in changes.render():
            print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lockenv.platforms import current_platform
    from lockenv.reports.export import export

    lock = _lock_for_reading(args)
    text = export(lock, args.environment, args.platform or current_platform(), args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
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
    info["config-files"] = [str(p) for p in config_files() if p.is_file()]
    info["mirrors"] = list(describe(load_mirrors(manifest)))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if isinstance(value, list):
                print(f"{key}:" + ("" if value else " none"))
                for item in value:
                    print(f"  {item}")
            else:
                print(f"{key}: {value}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from lockenv.cache import default_cache_dir

    cache = default_cache_dir()
    if args.action == "dir":
        print(cache)
    elif args.action == "clean":
        shutil.rmtree(cache, ignore_errors=True)
        _OUT.note(f"removed {cache}")
    elif args.action == "prune":
        from lockenv.cache import Cache, prune

        pruned = prune(Cache(cache), older_than_days=args.older_than)
        _OUT.note(
            f"pruned {pruned.entries} cache entries and {pruned.leftovers} leftovers "
            f"({_size(pruned.freed_bytes)} freed) in {cache}"
        )
    return 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def cmd_bundle(args: argparse.Namespace) -> int:
    from lockenv.reports.bundle import write_bundle

    report = write_bundle(
        Path(args.lock) if args.lock else _paths(args).lock,
        Path(args.out),
        environments=args.environment or (),
        platforms=args.platform or (),
        offline=args.offline,
        progress=_OUT.progress,
        built_wheels=args.built_wheels,
    )
    _OUT.note(
        f"bundled {report.artifacts} artifacts ({_size(report.size)}, "
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
        link_mode=getattr(args, "link_mode", "hardlink"),
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
        say=_OUT.progress,
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
    report = verify_environment(target.prefix, lock, args.environment, current_platform())
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockenv",
        description="Reproducible conda + PyPI environments from one lockfile.",
    )
    parser.add_argument("--version", action="version", version=f"lockenv {__version__}")
    parser.add_argument(
        "--manifest",
        metavar="PATH",
        help="the manifest (default: found by walking up from the current directory)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="count", default=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # The global options work after the command too (`lockenv lock -q`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--manifest", metavar="PATH", default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = command(
        "init",
        cmd_init,
        "create a lockenv.toml here, or [tool.lockenv] in the pyproject.toml of a project",
    )
    p.add_argument("--platform", action="append", metavar="P")
    p.add_argument("--channel", action="append", metavar="C")
    p.add_argument("--index", action="append", metavar="URL")
    p.add_argument("--requires-python", metavar="SPEC")
    p.add_argument("--name")
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="import requirements.txt or environment.yml, or lock a pyproject.toml project",
    )

    for name, handler, text in (
        ("add", cmd_add, "add dependencies to the manifest"),
        ("remove", cmd_remove, "remove dependencies from the manifest"),
    ):
        p = command(name, handler, text)
        p.add_argument("specs" if name == "add" else "names", nargs="+", metavar="SPEC")
        p.add_argument(
            "--pypi",
            action="store_true",
            help="PyPI packages (PEP 508, or a project directory such as .)",
        )
        if name == "add":
            p.add_argument(
                "--editable", action="store_true", help="path dependencies install editable"
            )
        p.add_argument("--feature", metavar="F")
        p.add_argument("--no-lock", action="store_true", help="edit the manifest only")

    p = command("lock", cmd_lock, "resolve the manifest into lockenv.lock")
    p.add_argument("--check", action="store_true", help="exit 1 if the lock is stale")
    p.add_argument("--update", action="append", metavar="NAME")
    p.add_argument("--update-all", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--refresh", action="store_true", help="ignore cached index pages")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--json", action="store_true")

    p = command("list", cmd_list, "list the locked packages of one environment")
    p.add_argument("-e", "--environment", default="default")
    p.add_argument("--platform")
    p.add_argument("--lock", metavar="FILE")
    p.add_argument("--json", action="store_true")

    p = command("tree", cmd_tree, "show the locked dependency tree")
    p.add_argument("name", nargs="?", help="start from this package")
    p.add_argument("--invert", action="store_true", help="show what depends on NAME")
    p.add_argument("-e", "--environment", default="default")
    p.add_argument("--platform")
    p.add_argument("--lock", metavar="FILE")
    p.add_argument("--json", action="store_true")

    p = command("diff", cmd_diff, "what changed between two locks (default: git HEAD vs disk)")
    p.add_argument("old", nargs="?", metavar="OLD.lock")
    p.add_argument("new", nargs="?", metavar="NEW.lock")
    p.add_argument("--json", action="store_true")

    p = command("export", cmd_export, "write the locked packages in another format")
    p.add_argument(
        "--format",
        required=True,
        choices=["requirements.txt", "pylock.toml", "conda-explicit", "environment.yml"],
    )
    p.add_argument("-e", "--environment", default="default")
    p.add_argument("--platform")
    p.add_argument("--lock", metavar="FILE")
    p.add_argument("-o", "--output", metavar="FILE")

    p = command("shell-hook", cmd_shell_hook, "print the script that activates an environment")
    _env_options(p)
    p.add_argument("--shell", choices=["bash", "zsh", "fish", "powershell"])
    p.add_argument("--frozen", action="store_true")
    p.add_argument("--locked", action="store_true")
    p.add_argument("--offline", action="store_true")

    p = command("info", cmd_info, "show what lockenv sees")
    p.add_argument("--json", action="store_true")

    p = command("cache", cmd_cache, "the shared cache")
    p.add_argument("action", choices=["dir", "clean", "prune"])
    p.add_argument(
        "--older-than",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="prune: remove entries no sync used for DAYS days (default 30)",
    )

    p = command("bundle", cmd_bundle, "write a directory with everything needed to sync offline")
    p.add_argument("out", metavar="OUT", help="the bundle directory (or OUT.tar: one tar file)")
    p.add_argument("-e", "--environment", action="append", metavar="ENV", help="default: all")
    p.add_argument("--platform", action="append", metavar="P", help="default: every locked one")
    p.add_argument("--lock", metavar="FILE", help="bundle this lockfile (default: the project's)")
    p.add_argument("--offline", action="store_true", help="take artifacts from the cache only")
    p.add_argument(
        "--built-wheels",
        action="store_true",
        help="also bundle the wheels built here from sdists and git sources (for this platform)",
    )

    p = command(
        "merge-driver",
        cmd_merge_driver,
        "git merge driver for lockenv.lock: merge the pins of both sides (see the README)",
    )
    p.add_argument("base", metavar="BASE", help="the common ancestor (git's %%O)")
    p.add_argument("ours", metavar="OURS", help="our version, overwritten with the result (%%A)")
    p.add_argument("theirs", metavar="THEIRS", help="their version (%%B)")
    p.add_argument(
        "path", nargs="?", metavar="PATH", help="the lock's path in the repository (%%P)"
    )

    p = command("sync", cmd_sync, "build or update an environment from the lock")
    _env_options(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--locked", action="store_true", help="fail (exit 1) if the lock is stale; never write it"
    )
    mode.add_argument(
        "--frozen", action="store_true", help="use the lock as it is, without reading the manifest"
    )
    p.add_argument("--lock", metavar="FILE", help="materialize this lockfile (needs --prefix)")
    p.add_argument("--offline", action="store_true", help="use the cache (and a bundle) only")
    p.add_argument("--bundle", metavar="DIR", help=_BUNDLE_HELP)
    p.add_argument("--python", metavar="PATH", help="the host interpreter to build on")
    p.add_argument("--link-mode", choices=["hardlink", "copy", "symlink"], default="hardlink")
    p.add_argument("--compile", action="store_true", help="write deterministic bytecode")
    p.add_argument(
        "--allow-base-drift",
        action="store_true",
        help="build on a base environment that changed since the lock (default: refuse)",
    )
    p.add_argument(
        "--no-build",
        action="store_true",
        help="refuse to build the lock's source distributions (wheels only)",
    )

    p = command("run", cmd_run, "run a command in an environment (syncing it first)")
    _env_options(p)
    p.add_argument("--lock", metavar="FILE", help="this lockfile's environment (needs --prefix)")
    p.add_argument("--frozen", action="store_true")
    p.add_argument("--locked", action="store_true")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--bundle", metavar="DIR", help=_BUNDLE_HELP)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG]...")

    p = command("verify", cmd_verify, "re-hash an environment against its lock")
    _env_options(p)
    p.add_argument("--lock", metavar="FILE")
    p.add_argument(
        "--digest", action="store_true", help="print one hash of the environment's contents"
    )
    p.add_argument("--json", action="store_true")
    return parser


_BUNDLE_HELP = "take artifacts from this bundle (default: a bundle.json beside the lock)"


def _env_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--environment", default="default", metavar="ENV")
    p.add_argument("--prefix", metavar="DIR", help="where the environment lives")


_OUT = _Output(0)


def main(argv: Sequence[str] | None = None) -> int:
    global _OUT
    parser = build_parser()
    args = parser.parse_args(argv)
    _OUT = _Output(args.verbose - args.quiet)
    try:
        result: int = args.handler(args)
        _OUT.finish()
        return result
    except LockenvError as exc:
        _OUT.finish()
        if args.verbose:
            import traceback

            traceback.print_exc()
        for line in exc.details:  # e.g. the tail of a build log, before the verdict
            print(f"  | {line}", file=sys.stderr)
        # One line, whatever a library put into the message.
        print("error: " + re.sub(r"\s*\n\s*", " ", str(exc)), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if args.verbose:
            raise
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 3
    except Exception as exc:  # a bug: still one line unless -v
        if args.verbose:
            raise
        print(
            f"error: internal error ({type(exc).__name__}: {exc}); run with -v for the "
            "traceback and report it",
            file=sys.stderr,
        )
        return 3


def output() -> _Output:
    return _OUT


__all__ = ["EXIT_INPUT_ERROR", "build_parser", "main", "output"]
