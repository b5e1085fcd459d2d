"""The no-op stamp and the entry point's fast path (lockenv/fastpath.py, lockenv/__main__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lockenv import __main__ as entry
from lockenv import fastpath
from lockenv.fastpath import STAMP_FILE, signed, stamp_says_current, write_stamp

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fast path is POSIX only")

_OLD = time.time() - 3600


def _env(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A project with a manifest, a lock (both changed an hour ago, as far as mtime goes)
    and an environment with two dist-infos."""
    root = tmp_path / "proj"
    site = root / ".lockenv/envs/default/lib/python3.11/site-packages"
    (site / "a-1.dist-info").mkdir(parents=True)
    (site / "b-2.dist-info").mkdir()
    (site / "a").mkdir()
    (root / ".lockenv/envs/default/bin").mkdir()
    (root / ".lockenv/envs/default/bin/python").write_text("")
    for name in ("lockenv.toml", "lockenv.lock"):
        (root / name).write_text(name)
        os.utime(root / name, (_OLD, _OLD))
    return root, root / ".lockenv/envs/default", site


def _stamp(
    root: Path,
    prefix: Path,
    site: Path,
    *,
    manifest: bool = True,
    variables: list[tuple[str, str]] | None = None,
) -> None:
    lock = signed(str(root / "lockenv.lock"))
    assert lock is not None
    write_stamp(
        str(prefix),
        environment="default",
        python=str(prefix / "bin/python"),
        listings=[(str(site), ".dist-info", ["a-1.dist-info", "b-2.dist-info"])],
        entries=[],
        lock=lock,
        manifest=signed(str(root / "lockenv.toml")) if manifest else None,
        variables=variables or [],
    )


def _current(root: Path, prefix: Path, *, manifest: bool = True) -> bool:
    return stamp_says_current(
        str(prefix),
        environment="default",
        lock=str(root / "lockenv.lock"),
        manifest=str(root / "lockenv.toml") if manifest else None,
    )


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # ctime cannot be set back: these tests write files and stamps within one second.
    monkeypatch.setattr(fastpath, "_RACY_NS", 0)


def test_stamp_vouches_for_what_it_recorded(tmp_path: Path, no_racy_window: None) -> None:
    root, prefix, site = _env(tmp_path)
    assert not _current(root, prefix)  # no stamp yet
    _stamp(root, prefix, site)
    assert _current(root, prefix)
    assert _current(root, prefix, manifest=False)  # --frozen: the manifest is not asked for


@pytest.mark.parametrize(
    "change",
    [
        "lock rewritten",
        "lock replaced by rename",
        "manifest touched",
        "package added by hand",
        "package removed by hand",
        "interpreter removed",
        "another lockenv",
        "an unknown line",
        "stamp cut short",
    ],
)
def test_any_change_sends_the_command_down_the_full_path(
    tmp_path: Path, no_racy_window: None, change: str
) -> None:
    root, prefix, site = _env(tmp_path)
    _stamp(root, prefix, site)
    stamp = prefix / STAMP_FILE
    if change == "lock rewritten":
        (root / "lockenv.lock").write_text("lockenv.lock")  # same bytes, same size
        os.utime(root / "lockenv.lock", (_OLD, _OLD))  # even the mtime put back
    elif change == "lock replaced by rename":
        (root / "new").write_text("lockenv.lock")
        os.utime(root / "new", (_OLD, _OLD))
        os.replace(root / "new", root / "lockenv.lock")
    elif change == "manifest touched":
        os.utime(root / "lockenv.toml")
    elif change == "package added by hand":
        (site / "c-3.dist-info").mkdir()
    elif change == "package removed by hand":
        (site / "b-2.dist-info").rmdir()
    elif change == "interpreter removed":
        (prefix / "bin/python").unlink()
    elif change == "another lockenv":
        stamp.write_text(stamp.read_text().replace("version\t", "version\t9"))
    elif change == "an unknown line":
        stamp.write_text(stamp.read_text() + "base\t/opt/site-python\tdigest\n")
    elif change == "stamp cut short":
        stamp.write_text(stamp.read_text()[:-5])
    assert not _current(root, prefix)


def test_environment_variables_the_check_read_must_keep_their_values(
    tmp_path: Path, no_racy_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, prefix, site = _env(tmp_path)
    monkeypatch.setenv("PIP_INDEX_URL", "https://a.example.invalid/simple")
    monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    variables = [("PIP_INDEX_URL", "https://a.example.invalid/simple"), ("PIP_CONFIG_FILE", "")]
    _stamp(root, prefix, site, variables=variables)
    assert _current(root, prefix)
    monkeypatch.setenv("PIP_INDEX_URL", "https://b.example.invalid/simple")
    assert not _current(root, prefix)
    monkeypatch.setenv("PIP_INDEX_URL", "https://a.example.invalid/simple")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # unset is recorded as ""
    assert not _current(root, prefix)


def test_a_file_changed_just_before_its_signature_is_not_trusted(tmp_path: Path) -> None:
    root, prefix, site = _env(tmp_path)
    (root / "lockenv.lock").write_text("new lock")  # ctime: now
    _stamp(root, prefix, site)
    assert not _current(root, prefix)  # within the same clock tick it could change unseen
    stamp = prefix / STAMP_FILE
    later = time.time() + 5
    os.utime(stamp, (later, later))  # as if the stamp had been written seconds later
    assert _current(root, prefix)


def test_stamp_is_not_rewritten_when_it_already_says_the_same(
    tmp_path: Path, no_racy_window: None
) -> None:
    root, prefix, site = _env(tmp_path)
    _stamp(root, prefix, site)
    stamp = prefix / STAMP_FILE
    later = time.time() + 60
    os.utime(stamp, (later, later))  # safely later than the lock's last change
    before = stamp.stat()
    _stamp(root, prefix, site)
    assert stamp.stat().st_mtime_ns == before.st_mtime_ns  # read-only NFS stays quiet
    (root / "lockenv.lock").write_text("a new lock")
    _stamp(root, prefix, site)
    assert stamp.stat().st_ino != before.st_ino  # replaced, by rename


def test_a_read_only_prefix_gets_no_stamp(tmp_path: Path, no_racy_window: None) -> None:
    root, prefix, site = _env(tmp_path)
    prefix.chmod(0o555)
    try:
        _stamp(root, prefix, site)  # no error
        if os.access(prefix, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert not (prefix / STAMP_FILE).exists()
    finally:
        prefix.chmod(0o755)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sync"], {"command": "sync", "frozen": False, "quiet": 0}),
        (["-q", "sync", "--frozen"], {"command": "sync", "frozen": True, "quiet": 1}),
        (
            ["sync", "-e", "test", "--lock", "L", "--prefix=P", "--offline"],
            {
                "command": "sync",
                "frozen": False,
                "environment": "test",
                "lock": "L",
                "prefix": "P",
                "quiet": 0,
            },
        ),
        (
            ["run", "-etest", "--", "python", "-e", "x"],
            {
                "command": "run",
                "frozen": False,
                "environment": "test",
                "cmd": ["python", "-e", "x"],
                "quiet": 0,
            },
        ),
        (
            ["run", "--locked", "pytest", "-q"],
            {"command": "run", "frozen": False, "cmd": ["pytest", "-q"], "quiet": 0},
        ),
        # Everything else is the full command line's: options it alone knows, errors.
        (["sync", "--python", "/usr/bin/python3"], None),
        (["sync", "--lock", "L"], None),  # needs --prefix
        (["sync", "--locked", "--frozen"], None),
        (["sync", "-e", "a", "-e", "b"], None),
        (["sync", "extra"], None),
        (["run"], None),
        (["run", "--"], None),
        (
            ["run", "--lock", "L", "--prefix", "P", "--frozen", "--", "true"],
            {
                "command": "run",
                "frozen": True,
                "lock": "L",
                "prefix": "P",
                "cmd": ["true"],
                "quiet": 0,
            },
        ),
        (["run", "--lock", "L", "--", "true"], None),  # needs --prefix
        (["run", "--locked", "--frozen", "--", "true"], None),  # refused by the full line
        (["sync", "--prefix", "-q"], None),  # argparse: "expected one argument"
        (["sync", "-e-x"], None),
        (["sync", "--bundle", "/no/such/bundle"], None),
        (["-v", "sync"], None),
        (["--manifest", "x.toml", "sync"], None),
        (["lock"], None),
        ([], None),
    ],
)
def test_only_plain_sync_and_run_take_the_fast_path(
    argv: list[str], expected: dict[str, object] | None
) -> None:
    assert entry._parse(argv) == expected


_PROBE = """
import sys
before = set(sys.modules)
import lockenv.fastpath
lockenv.fastpath._RACY_NS = 0
from lockenv.__main__ import main
status = main(sys.argv[1:])
heavy = ("json", "re", "hashlib", "pathlib", "dataclasses", "argparse", "typing",
    "lockenv.cli", "lockenv.workspace")
print(status, sorted(m for m in heavy if m in sys.modules and m not in before), file=sys.stderr)
"""


def test_run_and_no_op_sync_import_nothing_but_the_stamp_reader(
    tmp_path: Path, no_racy_window: None
) -> None:
    root, prefix, site = _env(tmp_path)
    _stamp(root, prefix, site)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, "sync"], cwd=root, text=True, capture_output=True, check=True
    )
    assert result.stderr.splitlines() == [
        f"environment 'default' is up to date ({prefix})",
        "0 []",
    ]
    # `run` replaces the process: what it runs sees the environment activated.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, "run", "--", "sh", "-c", 'echo "$VIRTUAL_ENV"'],
        cwd=root,
        text=True,
        capture_output=True,
        check=True,
    )
    assert result.stdout == f"{prefix}\n" and result.stderr == ""


def test_leftovers_of_a_killed_sync_send_sync_down_the_full_path(
    tmp_path: Path, no_racy_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The full path removes them (`materialize.tidy`); the stamp alone would leave a
    # half-made copy of the environment beside it for good.
    root, prefix, site = _env(tmp_path)
    _stamp(root, prefix, site)
    monkeypatch.chdir(root)
    assert entry._fast(["sync", "-q"]) == 0
    (prefix.parent / f".{prefix.name}.staging-1234").mkdir()
    assert entry._fast(["sync", "-q"]) is None


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("", ""),
        ("/etc/pip.conf", "/etc/pip.conf"),
        ("https://host/simple/", "https://host/simple/"),
        ("https://ci:s3cr3t@host:8443/simple/", "https://host:8443/simple/"),
        ("https://tok@host", "https://host"),
    ],
)
def test_the_stamp_keeps_variables_without_credentials(value: str, kept: str) -> None:
    # A stamp is a file: the index it watches is kept without who logs in to it.
    assert fastpath._public(value) == kept


# -- the end of the process -------------------------------------------------------------

_ENDING = """
import atexit, sys, threading, time
atexit.register(lambda: print("atexit ran"))
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread ended"))).start()
    del sys.argv[1]
sys.stdout.write("buffered, ")
from lockenv.__main__ import main
main()
print("not reached")
"""


@pytest.mark.parametrize(
    ("argv", "status", "out"),
    [
        (["--version"], 0, "buffered, lockenv "),
        (["sync", "--frozen"], 2, "buffered, "),  # no project here: an error
        (["thread", "--version"], 0, "buffered, lockenv "),  # the interpreter waits for it
    ],
)
def test_the_process_ends_with_the_command_as_the_interpreter_would_end_it(
    tmp_path: Path, argv: list[str], status: int, out: str
) -> None:
    """`main()` ends the process itself (`lockenv.__main__._end`): the command's exit
    status, what it wrote, and the atexit handlers all there, nothing run after it."""
    result = subprocess.run(
        [sys.executable, "-c", _ENDING, *argv], cwd=tmp_path, text=True, capture_output=True
    )
    assert result.returncode == status, result.stderr
    assert result.stdout.startswith(out)
    assert result.stdout.endswith("atexit ran\n") and "not reached" not in result.stdout
    assert ("thread ended" in result.stdout) == (argv[0] == "thread")
