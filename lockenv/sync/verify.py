"""Check an installed environment against its RECORDs and the lock; a portable digest.

`verify_environment` re-hashes every file each distribution's RECORD lists and, in a
conda environment, every file each ``conda-meta`` record lists (the hash in the prefix
for files whose placeholder was replaced); finds files no record (nor the environment's
skeleton) accounts for; and compares the installed packages with the lock: names,
versions, and the sha256 of the artifact each came from (recorded in the state file, or
in the conda record).

`environment_digest` is one sha256 over every installed file, computed so that it is the
same for the same lock and platform in any prefix and on any machine: the prefix path is
replaced by a placeholder in file contents (and the NUL padding of binary replacements
collapsed), symlinks inside the environment count by their text, conda records lose the
fields naming the cache, link type or time, and machine-specific files (``pyvenv.cfg``,
the state file, bytecode) are left out.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockenv.fastpath import STAMP_FILE
from lockenv.lockfile import Lockfile
from lockenv.sync.conda.prefix_record import (
    CONDA_META,
    HISTORY,
    PrefixRecord,
    normalized_history,
    normalized_record,
    read_prefix_records,
)
from lockenv.sync.plan import STATE_FILE, EnvState, read_state
from lockenv.sync.pypi.record import parse_record, record_hash_of_digest, resolve_installed_path

__all__ = ["VerifyReport", "environment_digest", "verify_environment"]

_IS_WINDOWS = sys.platform == "win32"
_PLACEHOLDER = b"<LOCKENV-PREFIX>"
_PADDED_STRING = re.compile(b"(" + re.escape(_PLACEHOLDER) + rb"[^\0]*)\0+")
# lockenv's own records at the root: the state file and the no-op stamp (`lockenv.fastpath`).
_RECORDS = frozenset({STATE_FILE, f"{STATE_FILE}.tmp", STAMP_FILE})
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


def _file_hash(path: str) -> tuple[str, int] | None:
    """RECORD hash and size of ``path``; None when it is missing or not a file."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            digest = hashlib.file_digest(fh, "sha256").digest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return record_hash_of_digest(digest), size


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


@dataclass(slots=True)
class _Checks:
    """What the environment's records say should be there."""

    accounted: set[str] = field(default_factory=set)
    to_hash: list[tuple[str, str, int | None]] = field(default_factory=list)  # rel, hash, size
    links: list[str] = field(default_factory=list)  # must be symlinks
    directories: list[str] = field(default_factory=list)  # must be directories
    problems: list[str] = field(default_factory=list)


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
                checks.links.append(entry.path)
            elif entry.sha256:
                try:
                    expected = record_hash_of_digest(bytes.fromhex(entry.sha256))
                except ValueError:
                    checks.problems.append(
                        f"{CONDA_META}/{record.file}: {entry.sha256!r} is not a sha256"
                    )
                    continue
                checks.to_hash.append((entry.path, expected, entry.size))
            else:
                checks.to_hash.append((entry.path, "", None))


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
    prefix: Path, lock: Lockfile | None, env_name: str | None, platform: str
) -> VerifyReport:
    """Verify the environment at ``prefix``; against ``lock``'s ``env_name`` if given.

    Re-hashes every file in every RECORD and, in a conda environment, every file of every
    ``conda-meta`` record (``sha256_in_prefix`` for files whose prefix placeholder was
    replaced); reports modified, missing and extra files (bytecode is ignored unless a
    record lists it), and packages missing, extra, or installed from an artifact other
    than the locked one.
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
    to_hash = checks.to_hash
    installed: dict[str, tuple[str, str]] = {}  # normalized name -> (version, dist_info)
    for dist_info in dist_infos:
        assert sp_rel is not None and site_packages is not None
        name, _, version = dist_info[: -len(".dist-info")].rpartition("-")
        installed[_normalize(name)] = (version, dist_info)
        record_file = site_packages / dist_info / "RECORD"
        try:
            rows = parse_record(record_file.read_text(encoding="utf-8"))
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
                to_hash.append((rel, row.hash, row.size))
            elif not os.path.lexists(prefix / rel):
                to_hash.append((rel, "", None))

    def check(item: tuple[str, str, int | None]) -> tuple[str, str | None]:
        rel, expected, size = item
        got = _file_hash(os.path.join(prefix, rel))
        if got is None:
            return rel, "missing"
        if expected and (got[0] != expected or (size is not None and got[1] != size)):
            return rel, "modified"
        return rel, None

    modified, missing = [], []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        for rel, verdict in pool.map(check, to_hash, chunksize=64):
            if verdict == "missing":
                missing.append(rel)
            elif verdict == "modified":
                modified.append(rel)
    for rel in checks.links:
        path = os.path.join(prefix, rel)
        if not os.path.islink(path):
            (modified if os.path.lexists(path) else missing).append(rel)
    for rel in checks.directories:
        if not os.path.isdir(os.path.join(prefix, rel)):
            missing.append(rel)

    skeleton = _SKELETON_FILES if not conda_env else _RECORDS
    base_problem, base_pth = _check_base(prefix, sp_rel, lock, env_name, state)
    if base_problem is not None:
        problems.append(base_problem)
    if base_pth is not None:
        skeleton = skeleton | {base_pth[0]}
        if not os.path.exists(prefix / base_pth[0]):
            missing.append(base_pth[0])
        elif (prefix / base_pth[0]).read_bytes() != base_pth[1]:
            modified.append(base_pth[0])
    extra = [
        rel
        for rel, _entry in _walk(prefix)
        if not (
            rel in accounted
            or rel in skeleton
            or _is_bytecode(rel)
            or (not conda_env and _is_skeleton_script(rel))
        )
    ]

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
        modified=tuple(sorted(modified)),
        missing=tuple(sorted(missing)),
        extra=tuple(sorted(extra)),
        missing_packages=tuple(sorted(missing_packages)),
        extra_packages=tuple(sorted(extra_packages)),
        mismatched_packages=tuple(sorted(mismatched)),
        problems=tuple(problems),
        files_checked=len(to_hash) + len(checks.links),
    )


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
        with open(entry.path, "rb") as fh:
            data = fh.read()
        if rel.endswith(".dist-info/RECORD"):
            # RECORD holds hashes of prefix-dependent launchers; every file it lists is
            # in the digest on its own, so the list of paths is what counts here.
            data = "\n".join(sorted(r.path for r in parse_record(data.decode("utf-8")))).encode()
        elif rel == HISTORY:
            data = normalized_history(data)
        elif rel.startswith(f"{CONDA_META}/") and rel.endswith(".json"):
            data = normalized_record(data)
        replaced = False
        for spelling in spellings:
            if spelling in data:
                data = data.replace(spelling, _PLACEHOLDER)
                replaced = True
        if replaced and b"\0" in data:
            # A binary placeholder replacement pads each string with NUL bytes, as many as
            # the prefix is shorter than the placeholder: count the string, not the padding.
            data = _PADDED_STRING.sub(rb"\1\0", data)
        executable = int(bool(st.st_mode & stat.S_IXUSR))
        return f"{rel}\0file\0{hashlib.sha256(data).hexdigest()}\0{executable}\n"

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
