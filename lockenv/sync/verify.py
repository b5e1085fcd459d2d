"""Check an installed environment against its RECORDs and the lock; a portable digest.

`verify_environment` re-hashes every file an installed package placed and checks it
against, first, the lock's own knowledge (each artifact as unpacked in the cache,
`lockenv.sync.expected`), then the sha256 the state file kept of each record, then the
records themselves (RECORD, ``conda-meta``); checks modes (no set-id bit, not writable
by others, executable as placed), symlink targets, and that ``__pycache__`` bytecode is
its source compiled (`lockenv.sync.bytecode`); finds files nothing accounts for; and
compares the installed packages with the lock: names, versions, and the sha256 of the
artifact each came from.  It never follows a symlink where a file was placed and never
blocks on a FIFO.  SECURITY.md describes what it trusts.

`environment_digest` is one sha256 over every installed file, computed so that it is the
same for the same lock and platform in any prefix and on any machine: the prefix path is
replaced by a placeholder in file contents (and the NUL padding of binary replacements
collapsed), symlinks inside the environment count by their text, conda records lose the
fields naming the cache, link type or time, and machine-specific files (``pyvenv.cfg``,
the state file, bytecode) are left out.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import io
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lockenv.fastpath import STAMP_FILE
from lockenv.limits import MAX_METADATA, TooLargeError, read_capped
from lockenv.lockfile import Lockfile
from lockenv.sync.bytecode import BytecodeFile, pyc_source, shadow_bytecode
from lockenv.sync.conda.placeholders import Replace
from lockenv.sync.conda.prefix_record import (
    CONDA_META,
    HISTORY,
    PrefixRecord,
    normalized_history,
    normalized_record,
    read_prefix_records,
)
from lockenv.sync.plan import STATE_FILE, EnvState, InstalledPackage, read_state
from lockenv.sync.pypi.record import parse_record, record_hash_of_digest, resolve_installed_path
from lockenv.sync.reuse import TREE_RECORD

__all__ = ["VerifyReport", "environment_digest", "verify_environment"]

_IS_WINDOWS = sys.platform == "win32"
_PLACEHOLDER = b"<LOCKENV-PREFIX>"
_CHUNK = 1 << 20
# lockenv's own records at the root: the state file, the no-op stamp (`lockenv.fastpath`)
# and the record of the tree a later refresh reads (`lockenv.sync.reuse`).
_RECORDS = frozenset({STATE_FILE, f"{STATE_FILE}.tmp", STAMP_FILE, TREE_RECORD})
_SKELETON_FILES = frozenset({"pyvenv.cfg", "lib64", *_RECORDS})
_SKELETON_SCRIPTS = re.compile(
    r"^(python|python3|python3\.\d+|pythonw?\.exe|activate|activate\.fish)$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """Differences between an environment and what it should be (prefix-relative paths)."""

    prefix: Path
    modified: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    missing_packages: tuple[str, ...] = ()  # locked, not installed ("name==version")
    extra_packages: tuple[str, ...] = ()  # installed, not locked
    mismatched_packages: tuple[str, ...] = ()  # installed, but another version or artifact
    wrong_modes: tuple[str, ...] = ()  # "path: set-user-ID, writable by others"...
    problems: tuple[str, ...] = ()  # anything else (no environment, unsafe RECORD path...)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing differs."""
        return not (
            self.modified
            or self.missing
            or self.extra
            or self.missing_packages
            or self.extra_packages
            or self.mismatched_packages
            or self.wrong_modes
            or self.problems
        )

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "prefix": str(self.prefix),
            "ok": self.ok,
            "modified": list(self.modified),
            "missing": list(self.missing),
            "extra": list(self.extra),
            "missing_packages": list(self.missing_packages),
            "extra_packages": list(self.extra_packages),
            "mismatched_packages": list(self.mismatched_packages),
            "wrong_modes": list(self.wrong_modes),
            "problems": list(self.problems),
            "files_checked": self.files_checked,
        }


def _site_packages_rel(prefix: Path, state: EnvState | None) -> str | None:
    if state is not None:
        return state.site_packages or None  # "": a conda environment without Python
    if _IS_WINDOWS:
        return "Lib/site-packages" if (prefix / "Lib" / "site-packages").is_dir() else None
    found = sorted(
        glob.glob(os.path.join(glob.escape(str(prefix)), "lib", "python*", "site-packages"))
    )
    return Path(found[0]).relative_to(prefix).as_posix() if found else None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_bytecode(rel: str) -> bool:
    return rel.endswith((".pyc", ".pyo")) or "/__pycache__/" in f"/{rel}"


def _is_skeleton_script(rel: str) -> bool:
    head, _, tail = rel.rpartition("/")
    return head == ("Scripts" if _IS_WINDOWS else "bin") and bool(_SKELETON_SCRIPTS.match(tail))


def _walk(prefix: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(prefix-relative POSIX path, entry) of every non-directory under ``prefix``."""
    stack = [("", str(prefix))]
    while stack:
        rel_dir, path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                stack.append((rel + "/", entry.path))
            else:
                yield rel, entry


FileRule = tuple[str, int | None, bool | None]  # RECORD-form hash ("" unknown), size, exec
# Expected link text (None: unknown), and the sha256 the record gives (conda-build hashes
# the file the link leads to as packaged, before any placeholder is replaced: not checked).
LinkRule = tuple[str | None, str | None]


@dataclass(slots=True)
class _Checks:
    """What the environment should hold, from its records, refined by the lock's own
    knowledge (`lockenv.sync.expected`)."""

    accounted: set[str] = field(default_factory=set)
    files: dict[str, FileRule] = field(default_factory=dict)
    links: dict[str, LinkRule] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)  # must be directories
    problems: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    wrong_modes: list[str] = field(default_factory=list)


def _conda_checks(records: list[PrefixRecord], checks: _Checks) -> None:
    checks.accounted.add(HISTORY)
    for record in records:
        checks.problems.extend(record.problems)
        checks.accounted.add(f"{CONDA_META}/{record.file}")
        for entry in record.paths:
            if entry.path_type == "directory":
                checks.directories.append(entry.path)
                continue
            checks.accounted.add(entry.path)
            if entry.path_type == "softlink":
                checks.links[entry.path] = (None, entry.sha256)
            elif entry.sha256:
                try:
                    expected = record_hash_of_digest(bytes.fromhex(entry.sha256))
                except ValueError:
                    checks.problems.append(
                        f"{CONDA_META}/{record.file}: {entry.sha256!r} is not a sha256"
                    )
                    continue
                checks.files[entry.path] = (expected, entry.size, None)
            else:
                checks.files[entry.path] = ("", None, None)


def _apply_lock_knowledge(
    checks: _Checks,
    prefix: Path,
    state: EnvState,
    records: list[PrefixRecord],
    cache_dir: Path | None,
) -> None:
    """Check each package's files against its artifact as unpacked in the cache (what
    the lock pinned), not only against records that live in the environment."""
    if cache_dir is None:
        return
    from lockenv.cache import Cache
    from lockenv.sync.expected import expected_files, layout_of

    cache = Cache(cache_dir)
    layout = layout_of(prefix, state)
    by_record = {r.file: r for r in records}
    for package in state.packages:
        known = expected_files(cache, package, layout)
        if not known:
            continue
        if package.kind == "conda":
            record = by_record.get(package.dist_info)
            # A clobbered file kept aside is listed where it is, known where it was linked.
            placed = [(p.path, p.original_path or p.path) for p in record.paths] if record else []
        else:
            placed = [(dest, dest) for dest in known if dest in checks.accounted]
        for where, dest in placed:
            expected = known.get(dest)
            if expected is None or where not in checks.accounted:
                continue
            if expected.target is not None:
                checks.files.pop(where, None)
                checks.links[where] = (expected.target, None)
                continue
            checks.links.pop(where, None)
            digest = bytes.fromhex(expected.sha256) if expected.sha256 else b""
            checks.files[where] = (
                record_hash_of_digest(digest) if digest else "",
                expected.size if expected.size >= 0 else None,
                expected.executable,
            )


def _record_path(state: EnvState, package: InstalledPackage) -> str:
    if package.kind == "conda":
        return f"{CONDA_META}/{package.dist_info}"
    return f"{state.site_packages}/{package.dist_info}/RECORD"


def _check_records(checks: _Checks, prefix: Path, state: EnvState) -> None:
    """Each package's record is the one the sync wrote (its sha256 is in the state)."""
    for package in state.packages:
        if not package.record_sha256:
            continue
        rel = _record_path(state, package)
        verdict, _mode = _check_file(os.path.join(prefix, rel), None, None, None)
        if verdict is not None:
            continue  # reported with the files (missing) or as not a regular file
        with open(os.path.join(prefix, rel), "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != package.record_sha256:
                checks.modified.append(rel)


def _mode_problem(mode: int, executable: bool | None) -> str | None:
    special = [
        name
        for bit, name in ((stat.S_ISUID, "set-user-ID"), (stat.S_ISGID, "set-group-ID"))
        if mode & bit
    ]
    if mode & stat.S_ISVTX:
        special.append("sticky")
    if mode & 0o022:
        special.append("writable by others")
    if executable is not None and bool(mode & stat.S_IXUSR) != executable:
        special.append("executable" if executable is False else "not executable")
    return ", ".join(special) or None


def _check_file(
    path: str,
    expected: str | None,
    size: int | None,
    executable: bool | None,
    link_roots: tuple[str, ...] | None = None,
) -> tuple[str | None, str | None]:
    """``(verdict, mode problem)`` of the regular file expected at ``path``: verdict
    "missing", "modified" (content, size, or not a regular file: a FIFO, a device, a
    symlink, which is never followed unless ``link_roots`` says where one may lead), or
    None.  Never blocks: a FIFO is opened non-blocking and found not to be a file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if link_roots is None:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return "missing", None
    except OSError as exc:
        # ELOOP: a symlink where a file was placed (to a copy elsewhere, say).
        return ("missing" if exc.errno == errno.ENOENT else "modified"), None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "modified", None
        if link_roots is not None and os.path.islink(path):
            real = os.path.realpath(path)
            if not any(real.startswith(root + os.sep) for root in link_roots):
                return "modified", None  # link mode "symlink": only into the cache
        problem = _mode_problem(stat.S_IMODE(st.st_mode), executable)
        if expected:
            if size is not None and st.st_size != size:
                return "modified", problem
            if record_hash_of_digest(hashlib.file_digest(fh, "sha256").digest()) != expected:
                return "modified", problem
        return None, problem


def _check_link(prefix: Path, rel: str, rule: LinkRule) -> str | None:
    """Verdict for the symlink expected at ``rel``: its text as the package shipped it
    when the lock's knowledge says, and in any case leading inside the environment."""
    path = os.path.join(prefix, rel)
    if not os.path.islink(path):
        return "modified" if os.path.lexists(path) else "missing"
    target, _digest = rule
    if target is not None and os.readlink(path) != target:
        return "modified"
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(prefix) + os.sep):
        return "modified"
    return None


def _interpreter(prefix: Path, conda_env: bool) -> str | None:
    if _IS_WINDOWS:
        path = prefix / ("python.exe" if conda_env else "Scripts/python.exe")
    else:
        path = prefix / "bin" / "python"
    return str(path) if os.path.exists(path) else None


def _compare_conda(
    records: list[PrefixRecord],
    lock: Lockfile | None,
    env_name: str | None,
    platform: str,
    state: EnvState | None,
) -> tuple[list[str], list[str], list[str]]:
    """(missing, extra, mismatched) conda packages."""
    by_name = {r.name: r for r in records}
    missing: list[str] = []
    mismatched: list[str] = []
    if lock is not None and env_name is not None:
        from lockenv.lockfile import CondaArtifact

        locked = [a for a in lock.packages_for(env_name, platform) if isinstance(a, CondaArtifact)]
        for artifact in locked:
            record = by_name.get(artifact.name)
            if record is None:
                missing.append(f"{artifact.name}=={artifact.version}")
            elif (record.version, record.build) != (artifact.version, artifact.build):
                mismatched.append(
                    f"{artifact.name}: locked {artifact.version}-{artifact.build}, installed "
                    f"{record.version}-{record.build}"
                )
            elif record.sha256 != artifact.sha256:
                mismatched.append(
                    f"{artifact.name}: installed from {record.fn} (sha256 {record.sha256}), "
                    f"locked {artifact.filename} (sha256 {artifact.sha256})"
                )
        names = {a.name for a in locked}
    elif state is not None:
        wanted = [p for p in state.packages if p.kind == "conda"]
        files = {r.file for r in records}
        missing = [f"{p.name}=={p.version}" for p in wanted if p.dist_info not in files]
        names = {p.name for p in wanted}
    else:
        names = set(by_name)
    extra = [f"{r.name}=={r.version}" for r in records if r.name not in names]
    return missing, extra, mismatched


def _check_base(
    prefix: Path,
    sp_rel: str | None,
    lock: Lockfile | None,
    env_name: str | None,
    state: EnvState | None,
) -> tuple[str | None, tuple[str, bytes] | None]:
    """(a drift problem, (the base .pth file, its expected bytes)) of an environment built
    on a base environment; (None, None) for others."""
    from lockenv.base_environment import base_drift, read_base_environment
    from lockenv.errors import LockenvError
    from lockenv.sync.venv import BASE_PTH, base_pth_text

    locked = lock.environments.get(env_name) if lock is not None and env_name else None
    base = locked.base if locked is not None else None
    base_prefix = base.prefix if base is not None else (state.base_prefix if state else "")
    if not base_prefix:
        return None, None
    problem = None
    try:
        current = read_base_environment(Path(base_prefix))
    except LockenvError as exc:
        return str(exc), None
    expected_digest = base.digest if base is not None else state.base_digest if state else ""
    if current.digest != expected_digest:
        against = base_drift(base, current) if base is not None else "its package set differs"
        problem = (
            f"base environment {base_prefix!r} changed since the "
            f"{'lock' if base is not None else 'environment was built'} ({against})"
        )
    if sp_rel is None:
        return problem, None
    pth = base_pth_text(Path(current.prefix, current.site_packages)).encode()
    return problem, (f"{sp_rel}/{BASE_PTH}", pth)


def verify_environment(
    prefix: Path,
    lock: Lockfile | None,
    env_name: str | None,
    platform: str,
    *,
    cache_dir: Path | None = None,
) -> VerifyReport:
    """Verify the environment at ``prefix``; against ``lock``'s ``env_name`` if given.

    What each file should be comes, first, from the lock's own knowledge: each package's
    artifact as unpacked in the cache at ``cache_dir`` (sealed, `lockenv.sync.expected`);
    then from the records in the environment (RECORD, ``conda-meta``), themselves checked
    against the sha256 the state file kept of each.  Every file is re-hashed (never
    following a symlink, never blocking on a FIFO), its mode checked (no set-id or sticky
    bit, not writable by others, executable as placed), every symlink's target compared;
    bytecode in ``__pycache__`` must be the compiled form of its source; files nothing
    accounts for are extra; packages missing, extra, or installed from an artifact other
    than the locked one are reported.
    """
    prefix = Path(os.path.abspath(prefix))
    if not prefix.is_dir():
        return VerifyReport(prefix=prefix, problems=(f"no environment at {str(prefix)!r}",))
    state = read_state(prefix)
    checks = _Checks()
    problems = checks.problems
    if state is None:
        problems.append(f"{STATE_FILE} is missing or unreadable: not synced by this lockenv")
    conda_env = state.kind == "conda" if state is not None else (prefix / CONDA_META).is_dir()
    records = read_prefix_records(prefix) if conda_env else []
    if conda_env:
        _conda_checks(records, checks)
        python = prefix / ("python.exe" if _IS_WINDOWS else "bin/python")
        if any(r.name == "python" for r in records) and not os.path.exists(python):
            problems.append("the environment's interpreter is missing")
    elif not os.path.exists(prefix / ("Scripts/python.exe" if _IS_WINDOWS else "bin/python")):
        problems.append("the environment's interpreter is missing (its base Python was removed?)")
    sp_rel = _site_packages_rel(prefix, state)
    if sp_rel is None and not conda_env:
        return VerifyReport(prefix=prefix, problems=(*problems, "no site-packages directory"))
    from_conda: set[str] = set()
    if sp_rel is not None:
        head = sp_rel + "/"
        from_conda = {
            rel[len(head) :].split("/", 1)[0]
            for rel in checks.accounted
            if rel.startswith(head) and rel[len(head) :].split("/", 1)[0].endswith(".dist-info")
        }
    site_packages = prefix / sp_rel if sp_rel is not None else None
    dist_infos = (
        sorted(
            n for n in os.listdir(site_packages) if n.endswith(".dist-info") and n not in from_conda
        )
        if site_packages is not None and site_packages.is_dir()
        else []
    )

    accounted = checks.accounted
    installed: dict[str, tuple[str, str]] = {}  # normalized name -> (version, dist_info)
    for dist_info in dist_infos:
        assert sp_rel is not None and site_packages is not None
        name, _, version = dist_info[: -len(".dist-info")].rpartition("-")
        installed[_normalize(name)] = (version, dist_info)
        record_file = os.path.join(site_packages, dist_info, "RECORD")
        if _check_file(record_file, None, None, None)[0] is not None:
            problems.append(f"{sp_rel}/{dist_info}/RECORD is missing or not a file")
            continue
        try:
            rows = parse_record(read_capped(record_file, MAX_METADATA, "RECORD").decode("utf-8"))
        except (OSError, UnicodeDecodeError):
            problems.append(f"{sp_rel}/{dist_info}/RECORD is missing or unreadable")
            continue
        for row in rows:
            rel = resolve_installed_path(row.path, sp_rel)
            if rel is None:
                problems.append(
                    f"{sp_rel}/{dist_info}/RECORD lists {row.path!r}, outside the prefix"
                )
                continue
            accounted.add(rel)
            if row.hash:
                checks.files[rel] = (row.hash, row.size, None)
            elif not os.path.lexists(prefix / rel):
                checks.files[rel] = ("", None, None)

    if state is not None:
        _apply_lock_knowledge(checks, prefix, state, records, cache_dir)
        _check_records(checks, prefix, state)
    link_roots = None
    if state is not None and state.link_mode == "symlink":
        link_roots = tuple(os.path.realpath(e) for e in state.cache_entries)

    def check(item: tuple[str, FileRule]) -> tuple[str, str | None, str | None]:
        rel, (expected, size, executable) = item
        verdict, mode = _check_file(
            os.path.join(prefix, rel), expected, size, executable, link_roots
        )
        return rel, verdict, mode

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        for rel, verdict, mode in pool.map(check, checks.files.items(), chunksize=64):
            if verdict == "missing":
                checks.missing.append(rel)
            elif verdict == "modified":
                checks.modified.append(rel)
            if mode is not None:
                checks.wrong_modes.append(f"{rel}: {mode}")
    for rel, rule in checks.links.items():
        verdict = _check_link(prefix, rel, rule)
        if verdict == "missing":
            checks.missing.append(rel)
        elif verdict == "modified":
            checks.modified.append(rel)
    for rel in checks.directories:
        if not os.path.isdir(os.path.join(prefix, rel)):
            checks.missing.append(rel)

    skeleton = _SKELETON_FILES if not conda_env else _RECORDS
    base_problem, base_pth = _check_base(prefix, sp_rel, lock, env_name, state)
    if base_problem is not None:
        problems.append(base_problem)
    if base_pth is not None:
        skeleton = skeleton | {base_pth[0]}
        if not os.path.exists(prefix / base_pth[0]):
            checks.missing.append(base_pth[0])
        elif (prefix / base_pth[0]).read_bytes() != base_pth[1]:
            checks.modified.append(base_pth[0])
    extra: list[str] = []
    bytecode: list[BytecodeFile] = []
    for rel, _entry in _walk(prefix):
        if rel in accounted or rel in skeleton or (not conda_env and _is_skeleton_script(rel)):
            continue
        source = pyc_source(rel)
        if source is not None and source[0] in accounted:
            # Python's own cache of a listed source: allowed, if it is that source compiled.
            bytecode.append((os.path.join(prefix, rel), os.path.join(prefix, source[0]), source[1]))
        else:
            extra.append(rel)
    interpreter = _interpreter(prefix, conda_env)
    if interpreter is None:
        extra += [os.path.relpath(pyc, prefix).replace(os.sep, "/") for pyc, _s, _o in bytecode]
    else:
        for pyc in shadow_bytecode(interpreter, bytecode):
            checks.modified.append(os.path.relpath(pyc, prefix).replace(os.sep, "/"))

    missing_packages: list[str] = []
    extra_packages: list[str] = []
    mismatched: list[str] = []
    by_dist_info = {p.dist_info: p for p in state.packages} if state is not None else {}
    if lock is not None and env_name is not None:
        from lockenv.lockfile import PypiArtifact, PypiSource

        locked = [
            a
            for a in lock.packages_for(env_name, platform)
            if isinstance(a, PypiArtifact | PypiSource)
        ]
        locked_names = {a.name for a in locked}
        for artifact in locked:
            found = installed.get(artifact.name)
            if found is None:
                missing_packages.append(f"{artifact.name}=={artifact.version}")
                continue
            version, dist_info = found
            recorded = by_dist_info.get(dist_info)
            if version != artifact.version:
                mismatched.append(
                    f"{artifact.name}: locked {artifact.version}, installed {version}"
                )
            elif recorded is None:
                mismatched.append(
                    f"{artifact.name}: not installed by lockenv (no artifact record); "
                    f"locked {artifact.filename}"
                )
            elif isinstance(artifact, PypiSource):
                if recorded.sha256 != artifact.identity:
                    mismatched.append(
                        f"{artifact.name}: installed from {recorded.filename}, locked "
                        f"{artifact.filename}"
                    )
            elif recorded.sha256 != artifact.sha256:
                mismatched.append(
                    f"{artifact.name}: installed from {recorded.filename} "
                    f"(sha256 {recorded.sha256}), locked {artifact.filename} "
                    f"(sha256 {artifact.sha256})"
                )
        extra_packages = [
            f"{n}=={v}" for n, (v, _) in sorted(installed.items()) if n not in locked_names
        ]
    elif state is not None:
        pypi = [p for p in state.packages if p.kind == "pypi"]
        recorded_names = {p.name for p in pypi}
        missing_packages = [f"{p.name}=={p.version}" for p in pypi if p.dist_info not in dist_infos]
        extra_packages = [
            f"{n}=={v}" for n, (v, _) in sorted(installed.items()) if n not in recorded_names
        ]
    if conda_env:
        more_missing, more_extra, more_mismatched = _compare_conda(
            records, lock, env_name, platform, state
        )
        missing_packages += more_missing
        extra_packages += more_extra
        mismatched += more_mismatched

    return VerifyReport(
        prefix=prefix,
        modified=tuple(sorted(set(checks.modified))),
        missing=tuple(sorted(set(checks.missing))),
        extra=tuple(sorted(extra)),
        missing_packages=tuple(sorted(missing_packages)),
        extra_packages=tuple(sorted(extra_packages)),
        mismatched_packages=tuple(sorted(mismatched)),
        wrong_modes=tuple(sorted(checks.wrong_modes)),
        problems=tuple(problems),
        files_checked=len(checks.files) + len(checks.links) + len(bytecode),
    )


def _normalized_record(rel: str, fh: BinaryIO) -> bytes | None:
    """A record's content as the digest counts it (None: ``rel`` is no record).  Records
    are read whole, at most `lockenv.limits.MAX_METADATA` bytes of them."""
    if rel.endswith(".dist-info/RECORD"):
        # RECORD holds hashes of prefix-dependent launchers; every file it lists is
        # in the digest on its own, so the list of paths is what counts here.
        text = _read_record(fh).decode("utf-8", "surrogateescape")
        return "\n".join(sorted(r.path for r in parse_record(text))).encode()
    if rel == HISTORY:
        return normalized_history(_read_record(fh))
    if rel.startswith(f"{CONDA_META}/") and rel.endswith(".json"):
        return normalized_record(_read_record(fh))
    return None


def _read_record(fh: BinaryIO) -> bytes:
    data = fh.read(MAX_METADATA + 1)
    if len(data) > MAX_METADATA:
        raise TooLargeError("record", MAX_METADATA)
    return data


def _content_digest(fh: BinaryIO, spellings: list[bytes]) -> str:
    """The sha256 of ``fh``'s content with the prefix (each of ``spellings``) replaced by
    a placeholder and the NUL padding of binary replacements collapsed, read a chunk at a
    time: once to see whether the prefix is there at all (most files: the digest then),
    a second time to replace it."""
    digest = hashlib.sha256()
    keep = max(map(len, spellings)) - 1
    tail = b""
    while chunk := fh.read(_CHUNK):
        window = tail + chunk
        if any(spelling in window for spelling in spellings):
            break
        digest.update(chunk)
        tail = window[max(0, len(window) - keep) :]
    else:
        return digest.hexdigest()
    fh.seek(0)
    stream: Iterable[bytes] = iter(lambda: fh.read(_CHUNK), b"")
    for spelling in spellings:
        stream = Replace(spelling, _PLACEHOLDER)(stream)
    digest = hashlib.sha256()
    for piece in _collapse_padding(stream):
        digest.update(piece)
    return digest.hexdigest()


def _collapse_padding(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` with each run of NULs that ends a C string starting at the placeholder
    cut to one NUL (what ``re.sub(b"(P[^\\0]*)\\0+", b"\\1\\0", data)`` does whole): a binary
    replacement pads each string with as many NULs as the prefix is shorter than the
    placeholder, which must not count."""
    keep = len(_PLACEHOLDER) - 1
    state = "scan"  # "scan" for the placeholder, "string" up to its NUL, "padding" after
    buf = b""
    for chunk in chunks:
        buf += chunk
        while buf:
            if state == "scan":
                found = buf.find(_PLACEHOLDER)
                if found < 0:
                    cut = max(0, len(buf) - keep)
                    yield buf[:cut]
                    buf = buf[cut:]
                    break
                end = found + len(_PLACEHOLDER)
                yield buf[:end]
                buf, state = buf[end:], "string"
            elif state == "string":
                nul = buf.find(b"\0")
                if nul < 0:
                    yield buf
                    buf = b""
                    break
                yield buf[: nul + 1]
                buf, state = buf[nul + 1 :], "padding"
            else:
                buf = buf.lstrip(b"\0")
                if buf:
                    state = "scan"
    yield buf


def environment_digest(prefix: Path) -> str:
    """One sha256 over every installed file (path, content, executable bit).

    The same for the same lock and platform in any prefix, on any machine, and after
    the cache is deleted and the environment synced again.
    """
    prefix = Path(os.path.abspath(prefix))
    spellings = sorted(
        {os.fsencode(str(prefix)), os.fsencode(os.path.realpath(prefix))}, key=len, reverse=True
    )

    def entry_line(item: tuple[str, os.DirEntry[str]]) -> str:
        rel, entry = item
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(entry.path)
            if rel == "lib64" or _is_skeleton_script(rel):
                if os.path.isabs(target):
                    inside = any(os.fsencode(target).startswith(s + b"/") for s in spellings)
                    target = "<inside>" if inside else "<external>"
                return f"{rel}\0link\0{target}\n"
            if not os.path.isabs(target):  # a conda package's own symlink: its text counts
                return f"{rel}\0link\0{target}\n"
            try:  # link mode "symlink": the file it points at counts
                st = os.stat(entry.path)
            except OSError:
                return f"{rel}\0link\0<dangling>\n"
        fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # never read a FIFO or a device
                return f"{rel}\0special\0{stat.S_IFMT(st.st_mode)}\n"
            record = _normalized_record(rel, fh)
            digest = _content_digest(io.BytesIO(record) if record is not None else fh, spellings)
        executable = int(bool(st.st_mode & stat.S_IXUSR))
        return f"{rel}\0file\0{digest}\0{executable}\n"

    items = [
        (rel, entry)
        for rel, entry in _walk(prefix)
        if rel not in _RECORDS and rel != "pyvenv.cfg" and not _is_bytecode(rel)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        lines = sorted(pool.map(entry_line, items, chunksize=64))
    total = hashlib.sha256()
    for line in lines:
        total.update(line.encode("utf-8", "surrogateescape"))
    return total.hexdigest()
