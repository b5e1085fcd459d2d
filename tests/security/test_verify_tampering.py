"""verify finds every tampering of issue 8, checking the environment against the lock's
own knowledge (each artifact as unpacked in the cache) and the state file, not only
against records that live in the environment."""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lockenv.lockfile import Lockfile
from lockenv.sync.pypi.record import parse_record, record_hash, render_record
from lockenv.sync.verify import VerifyReport, verify_environment

from hostile import PLATFORM, PYTHON_XY, PayloadFile, Sandbox, conda_package, lock_of, sync
from materializer_support import artifact_for, build_wheel

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes, links, FIFOs")
SOURCE = b"VALUE = 'genuine'\n"


def _wheel_env(tmp_path: Path, link_mode: str = "copy") -> tuple[Sandbox, Lockfile, Path]:
    box = Sandbox.make(tmp_path / "box")
    wheel = build_wheel(
        tmp_path / "wheels",
        "demo",
        "1.0",
        {"demo/__init__.py": SOURCE, "demo/tool.sh": b"#!/bin/sh\necho hi\n"},
    )
    lock = lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY)
    sync(lock, box, link_mode=link_mode)
    sp = box.prefix / "lib" / f"python{PYTHON_XY}" / "site-packages"
    return box, lock, sp


def _verify(box: Sandbox, lock: Lockfile, *, cache: bool = True) -> VerifyReport:
    return verify_environment(
        box.prefix, lock, "default", PLATFORM, cache_dir=box.cache if cache else None
    )


def _rel(box: Sandbox, path: Path) -> str:
    return path.relative_to(box.prefix).as_posix()


def test_a_clean_environment_verifies_with_the_lock_knowledge(tmp_path: Path) -> None:
    for mode in ("copy", "hardlink", "symlink"):
        box, lock, _sp = _wheel_env(tmp_path / mode, mode)
        report = _verify(box, lock)
        assert report.ok, report.to_json()


def test_an_added_sitecustomize_pyc_is_extra(tmp_path: Path) -> None:
    box, lock, sp = _wheel_env(tmp_path)
    code = compile("import os; os.system('echo pwned')", "sitecustomize.py", "exec")
    pyc = sp / "sitecustomize.pyc"
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code))
    report = _verify(box, lock)
    assert _rel(box, pyc) in report.extra


def test_a_shadow_pyc_with_the_sources_size_and_mtime_is_found(tmp_path: Path) -> None:
    box, lock, sp = _wheel_env(tmp_path)
    source = sp / "demo" / "__init__.py"
    st = source.stat()
    evil = compile("VALUE = 'pwned!!'\n", str(source), "exec", dont_inherit=True)
    header = (
        importlib.util.MAGIC_NUMBER
        + (0).to_bytes(4, "little")
        + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    )
    cache_dir = source.parent / "__pycache__"
    cache_dir.mkdir()
    shadow = cache_dir / f"__init__.{sys.implementation.cache_tag}.pyc"
    shadow.write_bytes(header + marshal.dumps(evil))
    # Python itself takes it for the source's bytecode:
    ran = subprocess.run(
        [str(box.prefix / "bin" / "python"), "-c", "import demo; print(demo.VALUE)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == "pwned!!"
    report = _verify(box, lock)
    assert _rel(box, shadow) in report.modified
    # Genuine bytecode (as Python writes it on import) verifies.
    shadow.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run([str(box.prefix / "bin" / "python"), "-c", "import demo"], check=True, env=env)
    assert shadow.is_file()
    assert _verify(box, lock).ok


@pytest.mark.parametrize("link_mode", ["copy", "hardlink"])
def test_a_file_edited_with_its_record_row_is_found(tmp_path: Path, link_mode: str) -> None:
    box, lock, sp = _wheel_env(tmp_path, link_mode)
    target = sp / "demo" / "__init__.py"
    evil = b"VALUE = 'pwned'\n"
    os.chmod(target, 0o644)
    target.write_bytes(evil)  # through the hardlink too, as root could
    record = next(sp.glob("demo-1.0.dist-info")) / "RECORD"
    rows = parse_record(record.read_text())
    fixed = [
        r
        if r.path != "demo/__init__.py"
        else type(r)(path=r.path, hash=record_hash(evil), size=len(evil))
        for r in rows
    ]
    record.write_bytes(render_record(fixed))
    for use_cache in (True, False):
        report = _verify(box, lock, cache=use_cache)
        # The state kept the RECORD's sha256; the cache keeps the file's.
        assert _rel(box, record) in report.modified
        if use_cache and link_mode == "copy":
            assert _rel(box, target) in report.modified


def test_a_conda_file_edited_with_its_record_is_found(tmp_path: Path) -> None:
    import json

    box = Sandbox.make(tmp_path / "box")
    pkg = conda_package(
        tmp_path / "pkgs",
        "p1",
        [
            PayloadFile(path="share/p1/data.txt", kind="hardlink", data=b"genuine\n"),
            PayloadFile(path="share/p1/other.txt", kind="hardlink", data=b"other\n"),
            PayloadFile(path="share/p1/link", kind="softlink", data=b"data.txt"),
        ],
    )
    lock = lock_of([pkg])
    sync(lock, box, link_mode="copy")
    assert _verify(box, lock).ok
    target = box.prefix / "share" / "p1" / "data.txt"
    target.write_bytes(b"pwned!!\n")
    meta = next((box.prefix / "conda-meta").glob("p1-*.json"))
    doc = json.loads(meta.read_text())
    for entry in doc["paths_data"]["paths"]:
        if entry["_path"] == "share/p1/data.txt":
            entry["sha256"] = hashlib.sha256(b"pwned!!\n").hexdigest()
    meta.write_text(json.dumps(doc))
    report = _verify(box, lock)
    assert {"share/p1/data.txt", _rel(box, meta)} <= set(report.modified)
    # A symlink retargeted, to another file of the package (inside the prefix).
    link = box.prefix / "share" / "p1" / "link"
    link.unlink()
    link.symlink_to("other.txt")
    assert "share/p1/link" in _verify(box, lock).modified
    # ... or out of it: found even without the cache.
    link.unlink()
    link.symlink_to(box.outside / "keep.txt")
    assert "share/p1/link" in _verify(box, lock, cache=False).modified


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        (0o4644, "set-user-ID"),
        (0o2644, "set-group-ID"),
        (0o646, "writable by others"),
        (0o664, "writable by others"),
        (0o755, "executable"),
    ],
)
def test_mode_changes_are_found(tmp_path: Path, mode: int, problem: str) -> None:
    box, lock, sp = _wheel_env(tmp_path)
    target = sp / "demo" / "__init__.py"
    os.chmod(target, mode)
    report = _verify(box, lock)
    assert not report.ok
    assert any(m.startswith(_rel(box, target)) and problem in m for m in report.wrong_modes)


def test_a_file_swapped_for_a_link_to_an_identical_copy_is_found(tmp_path: Path) -> None:
    box, lock, sp = _wheel_env(tmp_path)
    target = sp / "demo" / "__init__.py"
    copy = box.outside / "copy.py"
    shutil.copyfile(target, copy)
    target.unlink()
    target.symlink_to(copy)
    for use_cache in (True, False):
        assert _rel(box, target) in _verify(box, lock, cache=use_cache).modified


def _verify_in_subprocess(box: Sandbox) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lockenv",
            "verify",
            "--prefix",
            str(box.prefix),
            "--lock",
            str(box.root / "lockenv.lock"),
        ],
        capture_output=True,
        text=True,
        timeout=120,  # the hang this test is about would end here, as a failure
        env={**os.environ, "LOCKENV_CACHE_DIR": str(box.cache)},
    )


@pytest.mark.parametrize("where", ["demo/__init__.py", "demo-1.0.dist-info/RECORD"])
def test_a_fifo_at_a_recorded_path_does_not_hang(tmp_path: Path, where: str) -> None:
    from lockenv.lockfile import write_lockfile

    box, lock, sp = _wheel_env(tmp_path)
    write_lockfile(lock, box.root / "lockenv.lock")
    target = sp / where
    target.unlink()
    os.mkfifo(target)
    result = _verify_in_subprocess(box)
    assert result.returncode == 1, result.stderr
    assert _rel(box, target) in result.stdout
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
