"""lockenv.atomic: new names made exclusively, replacing writes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockenv import atomic

_URANDOM = os.urandom


def _urandom_giving(*values: bytes) -> Iterator[bytes]:
    yield from values
    while True:
        yield _URANDOM(6)


def test_private_dir_is_new_empty_and_private(tmp_path: Path) -> None:
    made = atomic.private_dir(tmp_path, ".env.staging-")
    other = atomic.private_dir(tmp_path, ".env.staging-")
    assert made != other
    for path in (made, other):
        assert path.parent == tmp_path and path.name.startswith(".env.staging-")
        assert path.is_dir() and not any(path.iterdir())
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_private_dir_takes_another_name_when_one_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p-000000000000").mkdir()
    (tmp_path / "p-000000000000" / "kept").write_text("x")
    names = _urandom_giving(bytes(6), bytes(6))
    monkeypatch.setattr(atomic.os, "urandom", lambda n: next(names))
    made = atomic.private_dir(tmp_path, "p-")
    assert made.name != "p-000000000000"
    assert (tmp_path / "p-000000000000" / "kept").read_text() == "x"


def test_private_dir_gives_up_when_every_name_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p-000000000000").mkdir()
    monkeypatch.setattr(atomic.os, "urandom", lambda n: bytes(n))
    with pytest.raises(FileExistsError, match="no free name"):
        atomic.private_dir(tmp_path, "p-")


def test_temp_file_never_writes_through_a_planted_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    # The name the first random draw gives is a link to another file: it is not opened.
    (tmp_path / ".lockenv.lock.000000000000.tmp").symlink_to(victim)
    names = _urandom_giving(bytes(6))
    monkeypatch.setattr(atomic.os, "urandom", lambda n: next(names))
    target = tmp_path / "lockenv.lock"
    atomic.write_atomic(target, "new", durable=False)
    assert target.read_text() == "new"
    assert victim.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lockenv.lock.000000000000.tmp",
        "lockenv.lock",
        "victim",
    ]


def test_temp_file_beside_is_removed_when_not_renamed(tmp_path: Path) -> None:
    dest = tmp_path / "state.json"
    with atomic.temp_file_beside(dest, mode=0o640) as (tmp, fh):
        fh.write(b"partial")
        assert tmp.parent == tmp_path and tmp.name.startswith(".state.json.")
        assert tmp.name.endswith(".tmp")
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o640
    assert list(tmp_path.iterdir()) == []
