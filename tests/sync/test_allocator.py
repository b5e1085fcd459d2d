"""lockenv.sync.allocator: freed buffers of a few MB are reused, not mapped anew."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lockenv.sync import allocator

# Reads of 1 MiB that get 300 KiB, as socket reads during a download do: each buffer is
# allocated whole and shrunk to what came.  Prints the page faults taken by 200 of them.
_READS = textwrap.dedent(
    """
    import os, resource, sys
    from lockenv.sync.allocator import keep_freed_buffers
    if sys.argv[2] == "keep":
        assert keep_freed_buffers()
    path = sys.argv[1]
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with open(path, "rb", buffering=0) as fh:
        fh.read(1 << 20)
        before = faults()
        for _ in range(200):
            fh.seek(0)
            data = fh.read(1 << 20)
    print(faults() - before)
    """
)


def _faults(tmp_path: Path, mode: str) -> int:
    data = tmp_path / "data"
    data.write_bytes(b"x" * (300 << 10))
    out = subprocess.run(
        [sys.executable, "-c", _READS, str(data), mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="the setting is glibc's (elsewhere it does nothing)")
def test_freed_read_buffers_are_reused(tmp_path: Path) -> None:
    default = _faults(tmp_path, "default")
    if default < 200 * 50:
        pytest.skip(f"this glibc maps no buffer anew here ({default} page faults): nothing to fix")
    # 200 reads x 75 pages of 4 KiB faulted in and zeroed without the setting; with it
    # the same heap memory is reused.
    assert _faults(tmp_path, "keep") < default // 10


@pytest.mark.skipif(not _glibc(), reason="the setting is glibc's")
def test_setting_it_twice_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_done", False)
    assert allocator.keep_freed_buffers()
    assert allocator.keep_freed_buffers()


def test_elsewhere_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert not allocator.keep_freed_buffers()
