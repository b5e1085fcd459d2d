"""verify_environment and environment_digest."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.lockfile import Lockfile
from lockenv.platforms import current_platform
from lockenv.sync.materialize import SyncOptions, sync_environment
from lockenv.sync.verify import VerifyReport, environment_digest, verify_environment

from materializer_support import artifact_for, fixture_lock, lock_sha, make_lock

PLATFORM = current_platform()


@pytest.fixture
def synced(tmp_path: Path, fixture_index_dir: Path) -> tuple[Path, Lockfile]:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    sync_environment(lock, lock_sha(lock), "default", prefix, SyncOptions(link_mode="copy"))
    return prefix, lock


def _sp(prefix: Path) -> Path:
    return next(prefix.glob("lib/python*/site-packages"))


def _rel(prefix: Path, path: Path) -> str:
    return path.relative_to(prefix).as_posix()


def test_clean_environment_verifies(synced: tuple[Path, Lockfile]) -> None:
    prefix, lock = synced
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert report.ok
    assert report.files_checked > 20
    json.dumps(report.to_json())
    assert verify_environment(prefix, None, None, PLATFORM).ok


def test_modified_missing_and_extra_files(synced: tuple[Path, Lockfile]) -> None:
    prefix, lock = synced
    sp = _sp(prefix)
    modified = sp / "alpha" / "__init__.py"
    modified.write_text(modified.read_text() + "# edited\n")
    missing = sp / "beta" / "__init__.py"
    missing.unlink()
    extra = sp / "alpha" / "sneaky.py"
    extra.write_text("")
    launcher = prefix / "bin" / "clicky"
    launcher.write_text(launcher.read_text().replace("main", "other"))
    (prefix / "bin" / "stray").write_text("")
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert not report.ok
    assert report.modified == tuple(sorted([_rel(prefix, modified), "bin/clicky"]))
    assert report.missing == (_rel(prefix, missing),)
    assert report.extra == tuple(sorted([_rel(prefix, extra), "bin/stray"]))
    data = report.to_json()
    assert data["ok"] is False and data["missing"] == [_rel(prefix, missing)]


def test_bytecode_is_ignored(synced: tuple[Path, Lockfile]) -> None:
    prefix, lock = synced
    cache = _sp(prefix) / "alpha" / "__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-311.pyc").write_bytes(b"junk")
    assert verify_environment(prefix, lock, "default", PLATFORM).ok


def test_packages_compared_with_the_lock(
    synced: tuple[Path, Lockfile], fixture_index_dir: Path
) -> None:
    prefix, lock = synced
    files = fixture_index_dir / "files"
    arts = {a.name: a for a in lock.artifacts.values()}
    # The lock now wants another alpha, no beta, an extra delta, and clicky from other bytes.
    other_alpha = artifact_for(files / "alpha-1.0-py3-none-any.whl", "file:///a1.whl")
    delta = artifact_for(files / "delta-1.0-py3-none-any.whl", "file:///d.whl")
    clicky = replace(arts["clicky"], sha256="0" * 64)
    wanted = [other_alpha, delta, clicky, arts["gui-app"], arts["numfast"]]
    report = verify_environment(prefix, make_lock(wanted), "default", PLATFORM)
    assert report.missing_packages == ("delta==1.0",)
    assert report.extra_packages == ("beta==1.5",)
    assert len(report.mismatched_packages) == 2
    alpha_line, clicky_line = report.mismatched_packages
    assert "locked 1.0, installed 2.0" in alpha_line
    assert "0" * 64 in clicky_line and arts["clicky"].sha256 in clicky_line
    assert report.modified == report.missing == report.extra == ()


def test_without_lock_the_state_file_is_the_reference(synced: tuple[Path, Lockfile]) -> None:
    prefix, _lock = synced
    shutil.rmtree(_sp(prefix) / "beta-1.5.dist-info")
    report = verify_environment(prefix, None, None, PLATFORM)
    assert report.missing_packages == ("beta==1.5",)
    assert "lib" in report.extra[0]  # beta's files are no longer accounted for


def test_not_an_environment(tmp_path: Path) -> None:
    report = verify_environment(tmp_path / "nothing", None, None, PLATFORM)
    assert not report.ok
    assert "no environment" in report.problems[0]
    (tmp_path / "empty").mkdir()
    assert not verify_environment(tmp_path / "empty", None, None, PLATFORM).ok


def test_record_escaping_the_prefix_is_a_problem(synced: tuple[Path, Lockfile]) -> None:
    prefix, lock = synced
    record = _sp(prefix) / "alpha-2.0.dist-info" / "RECORD"
    record.write_text(record.read_text() + "../../../../etc/passwd,,\n")
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert any("outside the prefix" in p for p in report.problems)


def test_removed_base_interpreter_is_a_problem(synced: tuple[Path, Lockfile]) -> None:
    prefix, lock = synced
    python = prefix / "bin" / "python"
    python.unlink()
    os.symlink("/nonexistent/python3", python)
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert any("interpreter" in p for p in report.problems)


def test_digest_ignores_prefix_and_machine_files(
    tmp_path: Path, synced: tuple[Path, Lockfile]
) -> None:
    prefix, _lock = synced
    digest = environment_digest(prefix)
    moved = tmp_path / "elsewhere"
    shutil.copytree(prefix, moved, symlinks=True)
    # A copied tree still names the old prefix in its scripts: the digest sees that.
    assert environment_digest(moved) != digest
    (prefix / "pyvenv.cfg").write_text("home = /another/machine\n")
    assert environment_digest(prefix) == digest
    (prefix / "bin" / "clicky").chmod(0o644)
    assert environment_digest(prefix) != digest


def test_report_ok_property() -> None:
    assert VerifyReport(prefix=Path("/x")).ok
    assert not VerifyReport(prefix=Path("/x"), extra=("a",)).ok
    assert not VerifyReport(prefix=Path("/x"), problems=("p",)).ok


# -- the digest reads files a chunk at a time ----------------------------------------------------


def _reference_content(data: bytes, spellings: list[bytes]) -> bytes:
    """The digest's normalisation of a whole file, as it was done in memory."""
    import re

    placeholder = b"<LOCKENV-PREFIX>"
    replaced = False
    for spelling in spellings:
        if spelling in data:
            data = data.replace(spelling, placeholder)
            replaced = True
    if replaced and b"\0" in data:
        data = re.sub(b"(" + re.escape(placeholder) + rb"[^\0]*)\0+", rb"\1\0", data)
    return data


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"/env/pre", b"/real/env/pre", b"<LOCKENV-PREFIX>", b"\0", b"\0\0", b"x", b"/"]
        ),
        max_size=25,
    ),
    st.integers(1, 12),
)
def test_the_digest_of_a_file_streamed_equals_the_whole_file(
    parts: list[bytes], chunk: int
) -> None:
    import hashlib
    import io

    from lockenv.sync import verify

    data = b"".join(parts)
    spellings = [b"/real/env/pre", b"/env/pre"]  # longest first, as environment_digest does
    old = verify._CHUNK
    verify._CHUNK = chunk
    try:
        got = verify._content_digest(io.BytesIO(data), spellings)
    finally:
        verify._CHUNK = old
    assert got == hashlib.sha256(_reference_content(data, spellings)).hexdigest()


def test_the_digest_of_a_big_file_with_the_prefix_is_computed_in_bounded_memory(
    tmp_path: Path,
) -> None:
    import tracemalloc

    prefix = tmp_path / "env"
    prefix.mkdir()
    block = b"y" * ((1 << 20) - 64) + os.fsencode(prefix) + b"/lib\0" + b"\0" * 20
    with open(prefix / "big.bin", "wb") as fh:
        for _ in range(64):
            fh.write(block)
    tracemalloc.start()
    try:
        first = environment_digest(prefix)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"peak {peak >> 20} MiB"
    # The same file made for another prefix (another length of padding): the same digest.
    other = tmp_path / "elsewhere" / "env2"
    other.mkdir(parents=True)
    moved = block.replace(
        os.fsencode(prefix) + b"/lib\0" + b"\0" * 20, os.fsencode(other) + b"/lib\0\0"
    )
    with open(other / "big.bin", "wb") as fh:
        for _ in range(64):
            fh.write(moved)
    assert environment_digest(other) == first
