"""Helpers shared by the materializer tests: locks over fixture wheels, hand-made wheels.

Locks are built directly as `Lockfile` objects (no resolver): each artifact carries the
real sha256 and size of a fixture wheel and a file:// or http://127.0.0.1 URL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lockenv.lockfile import (
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
    write_lockfile,
)
from lockenv.platforms import current_platform
from lockenv.sync.reuse import TREE_RECORD

PYTHON_XY = f"{sys.version_info.major}.{sys.version_info.minor}"
INDEX = "http://127.0.0.1/simple/"

# A small environment: pure wheels, a console script, .data dir + gui script, a platform wheel.
BASIC = (
    "alpha-2.0-py3-none-any.whl",
    "beta-1.5-py3-none-any.whl",
    "clicky-8.0-py3-none-any.whl",
    "gui_app-1.0-py3-none-any.whl",
    "numfast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
)


def _name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return name.replace("_", "-").lower(), version


def artifact_for(path: Path, url: str, *, index: str | None = INDEX) -> PypiArtifact:
    """A locked artifact for the wheel at ``path`` served at ``url``."""
    data = path.read_bytes()
    name, version = _name_version(path.name)
    return PypiArtifact(
        name=name,
        version=version,
        filename=path.name,
        url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        index=index,
    )


def make_lock(
    artifacts: Iterable[PypiArtifact],
    *,
    env: str = "default",
    requested: Iterable[str] = (),
    python: str = PYTHON_XY,
    extra_envs: Mapping[str, Iterable[PypiArtifact]] | None = None,
) -> Lockfile:
    """A lock with one environment ``env`` pinning ``artifacts`` on this platform."""
    platform = current_platform()
    envs: dict[str, LockedEnvironment] = {}
    every: dict[str, PypiArtifact] = {}
    for env_name, arts in {env: artifacts, **(extra_envs or {})}.items():
        listed = list(arts)
        every.update({a.url: a for a in listed})
        envs[env_name] = LockedEnvironment(
            name=env_name,
            python=python,
            pypi_requirements=tuple(requested),
            packages={platform: tuple(a.url for a in listed)},
        )
    return Lockfile(
        inputs=LockInputs(platforms=(platform,), indexes=(INDEX,)),
        environments=envs,
        artifacts=every,
    )


def fixture_lock(
    index_dir: Path,
    filenames: Iterable[str] = BASIC,
    *,
    base_url: str | None = None,
    requested: Iterable[str] = ("alpha", "clicky", "gui-app"),
) -> Lockfile:
    """A lock over fixture wheels, by file:// URL unless ``base_url`` (``{base}/files/``)."""
    arts = []
    for filename in filenames:
        path = index_dir / "files" / filename
        url = f"{base_url}/files/{filename}" if base_url else path.as_uri()
        arts.append(artifact_for(path, url))
    return make_lock(arts, requested=requested)


def lock_sha(lock: Lockfile) -> str:
    """A stand-in for the sha256 of the lock file's bytes."""
    from lockenv.lockfile import dumps

    return hashlib.sha256(dumps(lock).encode()).hexdigest()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    symlinks: Mapping[str, str] | None = None,
    record_extra: Iterable[str] = (),
    entry_points: str | None = None,
    metadata_extra: str = "",
) -> Path:
    """Write a small wheel ``name-version-py3-none-any.whl`` with ``files`` (archive paths,
    written as given, even hostile ones) and optional symlink members."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members: dict[str, tuple[bytes, int]] = {k: (v, 0o644) for k, v in files.items()}
    for link, target in (symlinks or {}).items():
        members[link] = (target.encode(), stat.S_IFLNK | 0o777)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata_extra}".encode(),
        0o644,
    )
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        0o644,
    )
    if entry_points is not None:
        members[f"{info}/entry_points.txt"] = (entry_points.encode(), 0o644)
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, (d, _) in members.items())
    record += "".join(f"{p},,\n" for p in record_extra)
    record += f"{info}/RECORD,,\n"
    members[f"{info}/RECORD"] = (record.encode(), 0o644)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, (data, mode) in members.items():
            zi = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            zi.create_system = 3
            zi.external_attr = (mode if mode & 0o170000 else stat.S_IFREG | mode) << 16
            zf.writestr(zi, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-{version}-py3-none-any.whl"
    path.write_bytes(buf.getvalue())
    return path


def run_in_env(prefix: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with the environment activated (scripts dir first on PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(prefix)
    return subprocess.run(list(args), capture_output=True, text=True, env=env, check=check)


def tree_snapshot(prefix: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``prefix``: mode and sha256 (symlinks: their target); not the
    record of the tree a refresh reads (`lockenv.sync.reuse`): it names inodes, and only
    a refresh writes it."""
    out: dict[str, tuple[int, str]] = {}
    for root, dirs, files in os.walk(prefix):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, prefix)
            if rel == TREE_RECORD:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (st.st_mode, os.readlink(path))
            else:
                with open(path, "rb") as fh:
                    out[rel] = (st.st_mode, hashlib.sha256(fh.read()).hexdigest())
    return out


def state_of(prefix: Path) -> dict[str, object]:
    """The environment's state file as data."""
    data: dict[str, object] = json.loads((prefix / ".lockenv-state.json").read_text())
    return data


# -- syncs in another process, and interrupting them at known moments ----------------------

ROOT = Path(__file__).resolve().parent.parent

SYNC_WORKER = """
import hashlib, sys
from pathlib import Path
from lockenv.sync import materialize
from lockenv.lockfile import read_lockfile
lock_path, prefix = Path(sys.argv[1]), Path(sys.argv[2])
if len(sys.argv) > 3 and sys.argv[3] == "no-exchange":
    materialize._exchange = lambda a, b: False  # the two-rename swap of other systems
materialize.sync_environment(
    read_lockfile(lock_path), hashlib.sha256(lock_path.read_bytes()).hexdigest(), "default",
    prefix, materialize.SyncOptions())
"""


def sync_worker(
    lock_path: Path,
    prefix: Path,
    *,
    env: Mapping[str, str] | None = None,
    no_exchange: bool = False,
) -> subprocess.Popen[bytes]:
    """``sync_environment`` of ``lock_path`` into ``prefix`` in a new process."""
    argv = [sys.executable, "-c", SYNC_WORKER, str(lock_path), str(prefix)]
    if no_exchange:
        argv.append("no-exchange")
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_sync_at(
    lock_path: Path,
    prefix: Path,
    stage: str,
    *,
    cache_dir: Path,
    no_exchange: bool = False,
) -> None:
    """Run a sync until it reaches ``stage`` (`lockenv.sync.checkpoints`), then SIGKILL it.

    The sync stops itself there (SIGSTOP), so the kill always lands at that moment, on a
    fast machine or a loaded one.  Fails the test when the sync ends without reaching it.
    """
    from lockenv.sync.checkpoints import STOP_AT_ENV

    proc = sync_worker(
        lock_path,
        prefix,
        env={STOP_AT_ENV: stage, "LOCKENV_CACHE_DIR": str(cache_dir)},
        no_exchange=no_exchange,
    )
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        proc.stderr.close() if proc.stderr else None
        raise AssertionError(f"the sync ended (exit {proc.returncode}) before {stage!r}: {err}")
    proc.kill()
    proc.wait()
    if proc.stderr:
        proc.stderr.close()


def _sync_and_verify(lock: Lockfile, prefix: Path) -> bool:
    from lockenv.sync.materialize import SyncOptions, sync_environment

    report = sync_environment(lock, lock_sha(lock), "default", prefix, SyncOptions())
    _assert_verifies(prefix, lock)
    return report.no_op


def _assert_verifies(prefix: Path, lock: Lockfile) -> None:
    from lockenv.sync.verify import verify_environment

    report = verify_environment(prefix, lock, "default", current_platform())
    assert report.ok, report.to_json()


def _no_leftovers(prefix: Path) -> None:
    stem = f".{prefix.name}."
    found = [p.name for p in prefix.parent.iterdir() if p.name.startswith(stem)]
    # The spare tree a sync keeps on purpose (`lockenv.sync.reuse`) is not a leftover.
    assert [name for name in found if not name.endswith((".lock", ".spare"))] == []


def interrupt_at_stage(
    tmp_path: Path,
    old: Lockfile,
    new: Lockfile,
    stage: str,
    left: str | None,
    *,
    no_exchange: bool = False,
) -> None:
    """Sync ``old``, kill a sync to ``new`` at ``stage``, check what it ``left`` ("old",
    "new", or None: no prefix until the next sync restores the old), then sync ``new``."""
    new_path = tmp_path / "new.lock"
    write_lockfile(new, new_path)
    prefix = tmp_path / "envs" / "default"
    _sync_and_verify(old, prefix)
    # An empty cache, so the sync downloads and unpacks and reaches every stage.
    kill_sync_at(
        new_path, prefix, stage, cache_dir=tmp_path / "cold-cache", no_exchange=no_exchange
    )
    if left is None:
        assert not prefix.exists()
        assert _sync_and_verify(old, prefix)  # a no-op: the moved-away environment is back
    else:
        _assert_verifies(prefix, {"old": old, "new": new}[left])
    _sync_and_verify(new, prefix)
    _no_leftovers(prefix)


def interrupt_at_random_moments(
    tmp_path: Path, old: Lockfile, new: Lockfile, *, seed: int, trials: int
) -> None:
    """Kill syncs alternating between ``old`` and ``new`` after random delays.

    Wherever the kills land (before, inside or after a sync: that depends on the
    machine's speed, so nothing is counted), the prefix verifies as old or new.
    """
    import random
    import time

    from lockenv.sync.verify import verify_environment

    locks = {"old": old, "new": new}
    paths = {}
    for name, lock in locks.items():
        paths[name] = tmp_path / f"{name}.lock"
        write_lockfile(lock, paths[name])
    prefix = tmp_path / "envs" / "default"
    _sync_and_verify(old, prefix)
    rng = random.Random(seed)
    for i in range(trials):
        proc = sync_worker(paths["new" if i % 2 == 0 else "old"], prefix)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.communicate()
        assert prefix.is_dir(), f"trial {i}: no environment at the prefix"
        platform = current_platform()
        reports = [verify_environment(prefix, lock, "default", platform) for lock in (old, new)]
        assert any(r.ok for r in reports), [r.to_json() for r in reports]
    _sync_and_verify(new, prefix)
    _no_leftovers(prefix)


def _repodata(channel: Path, subdir: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((channel / subdir / "repodata.json").read_text())
    return data


def conda_artifact(channel: Path, stem: str, *, fmt: str = ".conda") -> CondaArtifact:
    """The locked artifact of fixture package ``stem`` ("name-version"), from repodata."""
    for subdir in (current_platform(), "noarch"):
        repodata = _repodata(channel, subdir)
        key = "packages.conda" if fmt == ".conda" else "packages"
        for filename, record in sorted(repodata[key].items()):
            if filename.startswith(stem + "-") and filename.endswith(fmt):
                return CondaArtifact(
                    name=record["name"],
                    version=record["version"],
                    build=record["build"],
                    build_number=record["build_number"],
                    subdir=subdir,
                    filename=filename,
                    url=(channel / subdir / filename).as_uri(),
                    sha256=record["sha256"],
                    size=record["size"],
                    md5=record["md5"],
                    depends=tuple(record.get("depends", ())),
                    constrains=tuple(record.get("constrains", ())),
                    timestamp=record.get("timestamp"),
                    channel=channel.as_uri(),
                    noarch=record.get("noarch"),
                    license=record.get("license"),
                )
    raise AssertionError(f"no fixture package {stem}")


def custom_conda_package(
    directory: Path, name: str, files: Iterable[Any], *, fmt: str = ".conda", **spec: Any
) -> CondaArtifact:
    """A hand-made conda package (the fixture builder's code) written into ``directory``
    and locked by file:// URL; ``files`` are `fixtures.build_channel.PayloadFile`s, ``spec``
    overrides version, subdir, noarch, depends, entry_points."""
    from fixtures.build_channel import PackageSpec, build_package, placeholder_prefix

    depends = tuple(spec.pop("depends", ()))
    package = PackageSpec(
        name=name,
        version=spec.pop("version", "1.0"),
        build="h_test_0",
        build_number=0,
        subdir=spec.pop("subdir", "noarch"),
        noarch=spec.pop("noarch", "generic"),
        depends=depends,
        constrains=(),
        track_features=(),
        license="MIT",
        summary="test package",
        timestamp=1704067200000,
        entry_points=tuple(spec.pop("entry_points", ())),
        files=tuple(sorted(files, key=lambda f: f.path)),
        placeholder=placeholder_prefix(),
    )
    assert not spec, spec
    built = build_package(package)
    data = built.conda if fmt == ".conda" else built.tar_bz2
    path = directory / f"{package.stem}{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return conda_archive_artifact(
        path,
        package.name,
        package.version,
        package.build,
        subdir=package.subdir,
        depends=depends,
        noarch=package.noarch,
    )


def conda_archive_artifact(
    path: Path,
    name: str,
    version: str,
    build: str,
    *,
    subdir: str = "noarch",
    depends: Iterable[str] = (),
    noarch: str | None = None,
) -> CondaArtifact:
    """The locked artifact of the conda archive at ``path``, by file:// URL."""
    data = path.read_bytes()
    return CondaArtifact(
        name=name,
        version=version,
        build=build,
        build_number=0,
        subdir=subdir,
        filename=path.name,
        url=path.as_uri(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        noarch=noarch,
        depends=tuple(depends),
    )


def abandoned_work_dir(cache_root: Path, purpose: str = "unpack") -> Path:
    """A work directory in the cache's ``tmp/`` as a killed process leaves it: made by
    `Cache.make_temp_dir` in another process that then died without releasing it."""
    code = (
        "import os, sys\n"
        "from lockenv.cache import Cache\n"
        "print(Cache(__import__('pathlib').Path(sys.argv[1])).make_temp_dir(sys.argv[2]))\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cache_root), purpose],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return Path(out.stdout.strip())
