"""sync_environment end to end: install, exactness, integrity, offline, atomicity, concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fixtures.server import IndexServer
from lockenv.cache import default_cache_dir
from lockenv.errors import BuildError, InstallError, IntegrityError, OfflineError
from lockenv.lockfile import Lockfile, PypiArtifact, write_lockfile
from lockenv.platforms import current_platform
from lockenv.sync import materialize, prepare
from lockenv.sync.materialize import (
    SyncOptions,
    activation_env,
    is_up_to_date,
    sync_environment,
)
from lockenv.sync.pypi.sources import BuildRequest
from lockenv.sync.verify import environment_digest, verify_environment

from materializer_support import (
    BASIC,
    PYTHON_XY,
    SYNC_WORKER,
    artifact_for,
    build_wheel,
    fixture_lock,
    interrupt_at_random_moments,
    interrupt_at_stage,
    lock_sha,
    make_lock,
    run_in_env,
    state_of,
    sync_worker,
    tree_snapshot,
)

PLATFORM = current_platform()
ROOT = Path(__file__).resolve().parents[2]


def _fresh_process_says(code: str) -> str:
    """What ``code`` prints, run by a new interpreter (whose ``sys.modules`` then shows what
    the code imported)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()


def _sync_code(
    lock_path: Path, prefix: Path, *, lock_sha256: str | None = None, options: str = ""
) -> str:
    """Python source syncing the lock at ``lock_path`` into ``prefix`` (``lock`` is the
    parsed lock after it), with ``SyncOptions(<options>)``."""
    sha = repr(lock_sha256) if lock_sha256 else "hashlib.sha256(p.read_bytes()).hexdigest()"
    return (
        "import sys, hashlib\n"
        "from pathlib import Path\n"
        "from lockenv.lockfile import read_lockfile\n"
        "from lockenv.sync.materialize import sync_environment, SyncOptions\n"
        f"p = Path({str(lock_path)!r})\n"
        "lock = read_lockfile(p)\n"
        f"sync_environment(lock, {sha}, 'default', Path({str(prefix)!r}),"
        f" SyncOptions({options}))\n"
    )


OLD = ("alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "clicky-8.0-py3-none-any.whl")
NEW = (
    "alpha-2.0-py3-none-any.whl",
    "beta-1.5-py3-none-any.whl",
    "delta-1.1-py3-none-any.whl",
    "gui_app-1.0-py3-none-any.whl",
    "numfast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
)


def _sync(lock: Lockfile, prefix: Path, **options: object) -> materialize.SyncReport:
    return sync_environment(lock, lock_sha(lock), "default", prefix, SyncOptions(**options))  # type: ignore[arg-type]


def _verify_ok(prefix: Path, lock: Lockfile) -> None:
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert report.ok, report.to_json()


def _leftovers(prefix: Path) -> list[str]:
    """Trees beside the prefix other than its lock file and the spare a sync keeps on
    purpose (`lockenv.sync.reuse`)."""
    return sorted(
        p.name
        for p in prefix.parent.iterdir()
        if p.name.startswith(f".{prefix.name}.") and not p.name.endswith((".lock", ".spare"))
    )


# -- install and run ------------------------------------------------------------------------


def test_sync_installs_and_entry_points_run(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    report = _sync(lock, prefix)
    assert not report.no_op
    assert report.installed == (
        "alpha==2.0",
        "beta==1.5",
        "clicky==8.0",
        "gui-app==1.0",
        "numfast==1.0",
    )
    assert report.prefix == prefix
    assert run_in_env(prefix, "clicky").stdout.strip() == "clicky ok"
    assert run_in_env(prefix, "gui-app-tool").stdout.strip() == "gui-app-tool ok"
    run_in_env(prefix, "gui-app-cli")
    code = (
        "import sys, alpha, numfast._wheel_tag as t; "
        "print(sys.prefix, alpha.__version__, t.WHEEL_TAG)"
    )
    out = run_in_env(prefix, "python", "-c", code).stdout.split()
    assert out[0] == str(prefix)
    assert out[1] == "2.0"
    assert out[2].startswith("cp311-cp311-manylinux")
    _verify_ok(prefix, lock)
    sp = (
        prefix
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    assert (sp / "alpha-2.0.dist-info" / "REQUESTED").exists()
    assert not (sp / "beta-1.5.dist-info" / "REQUESTED").exists()


def test_sync_is_exact_and_reports_changes(tmp_path: Path, fixture_index_dir: Path) -> None:
    prefix = tmp_path / "env"
    _sync(fixture_lock(fixture_index_dir, OLD), prefix)
    lock = fixture_lock(fixture_index_dir, NEW)
    report = _sync(lock, prefix)
    assert report.removed == ("alpha==1.0", "beta==1.0", "clicky==8.0")
    assert "delta==1.1" in report.installed
    assert not (prefix / "bin" / "clicky").exists()
    _verify_ok(prefix, lock)
    assert _leftovers(prefix) == []


def _pip_install_by_hand(prefix: Path, wheel: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(prefix / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )


def test_hand_installed_package_is_removed(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    _pip_install_by_hand(prefix, fixture_index_dir / "files" / "epsilon-0.9-py3-none-any.whl")
    assert not is_up_to_date(prefix, lock_sha(lock), "default")
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert report.extra_packages == ("epsilon==0.9",)
    again = _sync(lock, prefix)
    assert not again.no_op
    assert again.removed == ("epsilon==0.9",)
    assert run_in_env(prefix, "python", "-c", "import epsilon", check=False).returncode != 0
    _verify_ok(prefix, lock)
    assert is_up_to_date(prefix, lock_sha(lock), "default")


def test_hand_removed_package_is_restored(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    sp = Path(state_of(prefix)["site_packages"])  # type: ignore[arg-type]
    import shutil

    shutil.rmtree(prefix / sp / "beta-1.5.dist-info")
    assert not is_up_to_date(prefix, lock_sha(lock), "default")
    report = _sync(lock, prefix)
    assert "beta==1.5" in report.installed
    _verify_ok(prefix, lock)


# -- no-op ----------------------------------------------------------------------------------


def test_no_op_sync(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    assert is_up_to_date(prefix, lock_sha(lock), "default")
    assert not is_up_to_date(prefix, "0" * 64, "default")
    assert not is_up_to_date(prefix, lock_sha(lock), "other")
    assert not is_up_to_date(tmp_path / "nowhere", lock_sha(lock), "default")
    before = tree_snapshot(prefix)
    report = _sync(lock, prefix)
    assert report.no_op
    assert report.installed == () and report.removed == ()
    assert len(report.unchanged) == len(BASIC)
    assert tree_snapshot(prefix) == before


def test_new_lock_bytes_with_same_packages_is_a_no_op(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    report = sync_environment(lock, "f" * 64, "default", prefix, SyncOptions())
    assert report.no_op
    assert is_up_to_date(prefix, "f" * 64, "default")


def test_is_up_to_date_imports_nothing_heavy(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lockenv.sync.materialize import is_up_to_date\n"
        f"ok = is_up_to_date(Path({str(prefix)!r}), {lock_sha(lock)!r}, 'default')\n"
        "heavy = ['httpx', 'yaml', 'tomlkit', 'packaging', 'zipfile', 'lockenv.lock',\n"
        "         'lockenv.sync.pypi', 'lockenv.http', 'concurrent.futures']\n"
        "print(ok, [m for m in heavy if m in sys.modules])\n"
    )
    assert _fresh_process_says(code) == "True []"


def test_materializer_never_imports_resolver_or_index_clients(
    tmp_path: Path, fixture_index_dir: Path, index_server: IndexServer
) -> None:
    lock = fixture_lock(fixture_index_dir, base_url=index_server.base)
    lock_path = tmp_path / "lockenv.lock"
    write_lockfile(lock, lock_path)
    code = _sync_code(lock_path, tmp_path / "env") + (
        "from lockenv.sync.verify import verify_environment, environment_digest\n"
        f"verify_environment(Path({str(tmp_path / 'env')!r}), lock, 'default', {PLATFORM!r})\n"
        f"environment_digest(Path({str(tmp_path / 'env')!r}))\n"
        "bad = [m for m in sys.modules\n"
        "       if m.startswith(('lockenv.lock.', 'tomlkit', 'resolvelib', 'tomllib'))]\n"
        "print(bad, [m for m in ('httpx', 'httpcore') if m in sys.modules])\n"
    )
    # Downloads go through http.client (`lockenv.transport`): httpx is not even imported.
    assert _fresh_process_says(code) == "[] []"


def test_a_sync_runs_without_the_cyclic_collector_and_restores_it(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tuples by the ten thousand on a large sync, none in a cycle (`lockenv.gcpause`)."""
    import gc

    seen: list[bool] = []
    prepare_artifacts = prepare.prepare_artifacts

    def spying(*args: object, **kwargs: object) -> prepare.Prepared:
        seen.append(gc.isenabled())
        return prepare_artifacts(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare, "prepare_artifacts", spying)
    gc.enable()
    try:
        _sync(fixture_lock(fixture_index_dir, OLD), tmp_path / "env")
        assert seen == [False]
        assert gc.isenabled()
    finally:
        gc.enable()


def test_a_sync_without_path_dependencies_never_imports_the_source_builds_nor_csv(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    lock = fixture_lock(fixture_index_dir, OLD)
    lock_path = tmp_path / "lockenv.lock"
    write_lockfile(lock, lock_path)
    _sync(lock, tmp_path / "first")  # the cache made warm: the next sync links from it
    # csv: RECORDs without anything to quote are rendered without it (`render_record_rows`).
    code = _sync_code(lock_path, tmp_path / "env") + (
        "print([m for m in sys.modules if m.startswith(('lockenv.sync.pypi.sources',"
        " 'lockenv.build')) or m == 'csv'])\n"
    )
    assert _fresh_process_says(code) == "[]"
    _verify_ok(tmp_path / "env", lock)


# -- integrity ------------------------------------------------------------------------------


def test_tampered_cache_archive_is_refused_and_env_unchanged(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    old, new = fixture_lock(fixture_index_dir, OLD), fixture_lock(fixture_index_dir, NEW)
    prefix = tmp_path / "env"
    _sync(old, prefix)
    # Fills the cache with NEW's archives (kept: not the default policy).
    _sync(new, tmp_path / "other", cache_keep="both")
    before = tree_snapshot(prefix)
    victim = next(a for a in new.artifacts.values() if a.name == "delta")
    archive = default_cache_dir() / "archives" / victim.sha256[:2] / victim.sha256 / victim.filename
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes
    archive.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    # The archive is read only to make its unpacked tree: remove that tree.
    shutil.rmtree(default_cache_dir() / "unpacked" / victim.sha256[:2] / victim.sha256)
    with pytest.raises(IntegrityError) as info:
        _sync(new, prefix)
    message = str(info.value)
    assert victim.filename in message
    assert victim.sha256 in message and actual in message
    assert "corrupt" in message
    assert tree_snapshot(prefix) == before
    _verify_ok(prefix, old)
    assert not archive.exists()
    assert _leftovers(prefix) == []
    _sync(new, prefix)  # downloads it again
    _verify_ok(prefix, new)


def test_a_sealed_tree_is_used_without_its_archive(tmp_path: Path, fixture_index_dir: Path) -> None:
    # Trees are trusted by their seals: the archive is not needed (nor read) once its tree
    # is made, so a cache that keeps only trees still syncs, and a damaged archive next to
    # an intact tree harms nothing (it is refused if it is ever needed again).
    lock = fixture_lock(fixture_index_dir, OLD)
    _sync(lock, tmp_path / "first", cache_keep="both")
    archives = default_cache_dir() / "archives"
    tampered = next(archives.glob("*/*/*.whl"))
    tampered.write_bytes(b"not the archive any more")
    other = next(p for p in archives.glob("*/*/*.whl") if p != tampered)
    shutil.rmtree(other.parent)
    _sync(lock, tmp_path / "second")
    _verify_ok(tmp_path / "second", lock)
    assert tampered.read_bytes() == b"not the archive any more"  # never read, never used
    assert not other.parent.exists()  # not downloaded again


def test_server_serving_other_bytes_is_refused_and_env_unchanged(
    tmp_path: Path, fixture_index_dir: Path, make_index_server: Callable[..., IndexServer]
) -> None:
    server = make_index_server()
    old = fixture_lock(fixture_index_dir, OLD, base_url=server.base)
    new = fixture_lock(fixture_index_dir, NEW, base_url=server.base)
    prefix = tmp_path / "env"
    _sync(old, prefix)
    before = tree_snapshot(prefix)
    victim = next(a for a in new.artifacts.values() if a.name == "alpha")
    evil = (fixture_index_dir / "files" / victim.filename).read_bytes()
    evil = evil[:-1] + bytes([evil[-1] ^ 1])
    server.corrupt(victim.filename, evil)
    with pytest.raises(IntegrityError) as info:
        _sync(new, prefix)
    message = str(info.value)
    assert victim.filename in message
    assert victim.sha256 in message
    assert hashlib.sha256(evil).hexdigest() in message
    assert tree_snapshot(prefix) == before
    archive_dir = default_cache_dir() / "archives" / victim.sha256[:2] / victim.sha256
    assert not any(archive_dir.glob("*.whl"))
    server.reset()
    _sync(new, prefix)
    _verify_ok(prefix, new)


def test_size_mismatch_in_lock_is_refused(tmp_path: Path, fixture_index_dir: Path) -> None:
    path = fixture_index_dir / "files" / "alpha-1.0-py3-none-any.whl"
    good = artifact_for(path, path.as_uri())
    from dataclasses import replace

    lock = make_lock([replace(good, size=good.size + 1)])
    with pytest.raises(IntegrityError, match="size"):
        _sync(lock, tmp_path / "env")
    assert not (tmp_path / "env").exists()


# -- offline --------------------------------------------------------------------------------


def test_offline_lists_every_missing_artifact(
    tmp_path: Path, fixture_index_dir: Path, index_server: IndexServer
) -> None:
    lock = fixture_lock(fixture_index_dir, base_url=index_server.base)
    with pytest.raises(OfflineError) as info:
        _sync(lock, tmp_path / "env", offline=True)
    # How many are missing, how big they are, the first five names: one readable line.
    artifacts = sorted(lock.artifacts.values(), key=lambda a: a.filename)
    message = str(info.value)
    assert f"--offline: {len(artifacts)} artifacts are (" in message
    assert sum(a.filename in message for a in artifacts) == min(5, len(artifacts))
    if len(artifacts) > 5:
        assert f"and {len(artifacts) - 5} more" in message
    assert not (tmp_path / "env").exists()


def test_offline_sync_from_cache_without_httpx(
    tmp_path: Path, fixture_index_dir: Path, index_server: IndexServer
) -> None:
    lock = fixture_lock(fixture_index_dir, base_url=index_server.base)
    _sync(lock, tmp_path / "first")
    lock_path = tmp_path / "lockenv.lock"
    write_lockfile(lock, lock_path)
    prefix = tmp_path / "second"
    code = _sync_code(lock_path, prefix, lock_sha256="x" * 64, options="offline=True") + (
        "print('httpx' in sys.modules, 'lockenv.http' in sys.modules)\n"
    )
    assert _fresh_process_says(code) == "False False"
    _verify_ok(prefix, lock)


# -- refusals -------------------------------------------------------------------------------


def _sdist_artifact(fixture_index_dir: Path, requires: tuple[str, ...] = ()) -> PypiArtifact:
    path = fixture_index_dir / "files" / "sdistonly-1.0.tar.gz"
    return replace(
        artifact_for(path, path.as_uri()), name="sdistonly", version="1.0", requires_dist=requires
    )


class FakeBuilder:
    """A WheelBuilder that hands out a prepared wheel (or fails) and records requests."""

    def __init__(self, wheel: Path | None, error: Exception | None = None) -> None:
        self.wheel = wheel
        self.error = error
        self.requests: list[BuildRequest] = []

    def build_wheel(self, request: BuildRequest) -> Path:
        self.requests.append(request)
        assert request.archive is not None and request.archive.is_file()
        if self.error is not None:
            raise self.error
        assert self.wheel is not None
        return self.wheel


def _sdistonly_wheel(tmp_path: Path, metadata_extra: str = "") -> Path:
    return build_wheel(
        tmp_path / "built",
        "sdistonly",
        "1.0",
        {"sdistonly/__init__.py": b"BUILT = True\n"},
        entry_points=None,
        metadata_extra=metadata_extra,
    )


def test_sdist_is_built_by_the_builder_and_installed(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    sdist = _sdist_artifact(fixture_index_dir, ("alpha",))
    alpha = fixture_index_dir / "files" / "alpha-1.1-py3-none-any.whl"
    lock = make_lock([artifact_for(alpha, alpha.as_uri()), sdist], requested=["sdistonly"])
    builder = FakeBuilder(_sdistonly_wheel(tmp_path, "Requires-Dist: alpha\n"))
    prefix = tmp_path / "env"
    report = _sync(lock, prefix, builder=builder)
    assert report.installed == ("alpha==1.1", "sdistonly==1.0")
    ((request,),) = [builder.requests]
    assert request.archive is not None and request.archive.name == "sdistonly-1.0.tar.gz"
    assert request.archive_sha256 == sdist.sha256 and request.python_version.startswith(PYTHON_XY)
    out = run_in_env(prefix, "python", "-c", "import sdistonly; print(sdistonly.BUILT)")
    assert out.stdout.strip() == "True"
    # The state records the locked sdist: the next sync is a no-op, verify is clean.
    assert {p["filename"] for p in state_of(prefix)["packages"]} == {  # type: ignore[union-attr]
        "alpha-1.1-py3-none-any.whl",
        "sdistonly-1.0.tar.gz",
    }
    assert _sync(lock, prefix, builder=builder).no_op and len(builder.requests) == 1
    _verify_ok(prefix, lock)


def test_sdist_without_a_builder_is_refused(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = make_lock([_sdist_artifact(fixture_index_dir)])
    with pytest.raises(InstallError, match=r"sdistonly 1.0 \(sdistonly-1.0.tar.gz\).*cannot build"):
        _sync(lock, tmp_path / "env")
    builder = FakeBuilder(_sdistonly_wheel(tmp_path))
    with pytest.raises(InstallError, match="--no-build forbids building them"):
        _sync(lock, tmp_path / "env", builder=builder, no_build=True)
    assert builder.requests == [] and not (tmp_path / "env").exists()


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ("Requires-Dist: beta\n", "the build adds beta; drops alpha"),
        ("", "the build adds nothing; drops alpha"),
        ("Requires-Dist: alpha\nRequires-Python: <3\n", "requires Python <3"),
    ],
)
def test_built_wheel_that_disagrees_with_the_lock_is_refused(
    tmp_path: Path, fixture_index_dir: Path, metadata: str, error: str
) -> None:
    good = make_lock([_sdist_artifact(fixture_index_dir, ("alpha",))])
    prefix = tmp_path / "env"
    _sync(good, prefix, builder=FakeBuilder(_sdistonly_wheel(tmp_path, "Requires-Dist: alpha\n")))
    before = tree_snapshot(prefix)
    lying = make_lock(
        [replace(_sdist_artifact(fixture_index_dir, ("alpha",)), requires_python=">=3")]
    )
    builder = FakeBuilder(_sdistonly_wheel(tmp_path / "other", metadata))
    with pytest.raises(BuildError, match=re.escape(error)):
        _sync(lying, prefix, builder=builder, compile_bytecode=True)
    assert tree_snapshot(prefix) == before and _leftovers(prefix) == []


def test_failed_build_leaves_the_environment_as_it_was(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    prefix = tmp_path / "env"
    _sync(fixture_lock(fixture_index_dir), prefix)
    before = tree_snapshot(prefix)
    lock = make_lock([_sdist_artifact(fixture_index_dir)])
    failing = FakeBuilder(None, BuildError("sdistonly 1.0: the build backend failed"))
    with pytest.raises(BuildError, match="the build backend failed"):
        _sync(lock, prefix, builder=failing)
    assert tree_snapshot(prefix) == before and _leftovers(prefix) == []


def test_refuses_to_replace_a_directory_that_is_not_an_environment(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    prefix = tmp_path / "precious"
    prefix.mkdir()
    (prefix / "thesis.tex").write_text("years of work")
    with pytest.raises(InstallError, match="not an environment"):
        _sync(fixture_lock(fixture_index_dir), prefix)
    assert (prefix / "thesis.tex").read_text() == "years of work"


def test_missing_interpreter_names_version_and_option(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fixture_index_dir / "files" / "alpha-1.0-py3-none-any.whl"
    lock = make_lock([artifact_for(path, path.as_uri())], python="3.99")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    with pytest.raises(InstallError, match=r"3\.99.*--python PATH"):
        _sync(lock, tmp_path / "env")


# -- link modes, bytecode, digests ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["hardlink", "copy", "symlink"])
def test_link_modes_verify_and_share_one_digest(
    tmp_path: Path, fixture_index_dir: Path, mode: str
) -> None:
    lock = fixture_lock(fixture_index_dir)
    reference = tmp_path / "reference"
    _sync(lock, reference)
    prefix = tmp_path / mode
    _sync(lock, prefix, link_mode=mode)
    _verify_ok(prefix, lock)
    assert environment_digest(prefix) == environment_digest(reference)
    assert run_in_env(prefix, "clicky").stdout.strip() == "clicky ok"
    init = next(prefix.glob("lib/python*/site-packages/alpha/__init__.py"))
    assert init.is_symlink() == (mode == "symlink")
    assert (os.stat(init).st_nlink > 1) == (mode in ("hardlink", "symlink"))


def test_digest_same_in_any_prefix_and_after_cache_loss(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    lock = fixture_lock(fixture_index_dir)
    first, second = tmp_path / "a", tmp_path / "some" / "deeper" / "b"
    _sync(lock, first)
    _sync(lock, second)
    digest = environment_digest(first)
    assert environment_digest(second) == digest
    import shutil

    shutil.rmtree(default_cache_dir())
    shutil.rmtree(first)
    _sync(lock, first)
    assert environment_digest(first) == digest
    # Content changes change it.
    (next(first.glob("lib/python*/site-packages/alpha")) / "extra.py").write_text("x = 1\n")
    assert environment_digest(first) != digest


def test_compile_bytecode(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    digest = environment_digest(prefix)
    report = _sync(lock, prefix, compile_bytecode=True)
    assert not report.no_op  # bytecode was asked for and is not there yet
    pycs = sorted(prefix.glob("lib/python*/site-packages/clicky/__pycache__/*.pyc"))
    assert pycs
    # Unchecked-hash pycs: flags word 0b01 (hash-based, not checked).
    assert int.from_bytes(pycs[0].read_bytes()[4:8], "little") == 1
    _verify_ok(prefix, lock)
    assert environment_digest(prefix) == digest
    code = "import clicky.cli as c; print(c.__spec__.cached); print(c.main.__code__.co_filename)"
    cached, source = run_in_env(prefix, "python", "-c", code).stdout.split()
    assert Path(cached).exists()
    assert source.startswith(str(prefix)), source  # not the staging directory
    assert _sync(lock, prefix, compile_bytecode=True).no_op


def test_activation_env(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "PYTHONHOME": "/x", "HOME": "/h"}
    env = activation_env(tmp_path / "env", base)
    assert env["PATH"] == f"{tmp_path / 'env' / 'bin'}{os.pathsep}/usr/bin"
    assert env["VIRTUAL_ENV"] == str(tmp_path / "env")
    assert "PYTHONHOME" not in env
    assert env["HOME"] == "/h"
    assert base["PYTHONHOME"] == "/x"


def test_activate_script_in_bash(tmp_path: Path, fixture_index_dir: Path) -> None:
    prefix = tmp_path / "env"
    _sync(fixture_lock(fixture_index_dir), prefix)
    script = (
        f"source {prefix}/bin/activate && echo $VIRTUAL_ENV && command -v clicky && "
        "deactivate && echo ${VIRTUAL_ENV:-gone}"
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(prefix), str(prefix / "bin" / "clicky"), "gone"]


# -- atomicity ------------------------------------------------------------------------------


def test_failed_build_leaves_env_and_no_leftovers(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "env"
    old = fixture_lock(fixture_index_dir, OLD)
    _sync(old, prefix)
    before = tree_snapshot(prefix)

    def boom(*args: object, **kwargs: object) -> None:
        raise InstallError("injected failure")

    monkeypatch.setattr(materialize, "_install_all", boom)
    with pytest.raises(InstallError, match="injected"):
        _sync(fixture_lock(fixture_index_dir, NEW), prefix)
    assert tree_snapshot(prefix) == before
    assert _leftovers(prefix) == []


def test_swap_without_rename_exchange(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materialize, "_exchange", lambda a, b: False)
    prefix = tmp_path / "env"
    _sync(fixture_lock(fixture_index_dir, OLD), prefix)
    new = fixture_lock(fixture_index_dir, NEW)
    _sync(new, prefix)
    _verify_ok(prefix, new)
    assert _leftovers(prefix) == []


def test_recovery_after_a_kill_between_the_two_renames(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    prefix = tmp_path / "env"
    old = fixture_lock(fixture_index_dir, OLD)
    _sync(old, prefix)
    # What the fallback swap leaves when killed after `rename(prefix, backup)`.
    os.rename(prefix, tmp_path / ".env.old-abc123")
    (tmp_path / ".env.staging-partial").mkdir()
    (tmp_path / ".env.staging-partial" / "junk").write_text("x")
    assert _sync(old, prefix).no_op  # the old environment is back, and it is current
    _verify_ok(prefix, old)
    assert _leftovers(prefix) == []


# Every moment of a sync at which it can be killed; the state it must leave is the old
# environment before the swap and the new one after it (`lockenv.sync.checkpoints`).
_KILL_POINTS = [
    ("fetch:downloaded", False, "old"),
    ("unpack:working", False, "old"),
    ("unpack:published#2", False, "old"),
    ("prepare:done", False, "old"),
    ("staging:created", False, "old"),
    ("staging:linked", False, "old"),
    ("staging:linked#3", False, "old"),
    ("staging:complete", False, "old"),
    ("swap:done", False, "new"),
    ("staging:complete", True, "old"),
    ("swap:halfway", True, None),  # no prefix until the next sync puts the old one back
    ("swap:done", True, "new"),
]


@pytest.mark.parametrize(("stage", "no_exchange", "left"), _KILL_POINTS)
def test_kill_9_at_each_stage_leaves_old_or_new(
    tmp_path: Path, fixture_index_dir: Path, stage: str, no_exchange: bool, left: str | None
) -> None:
    old, new = fixture_lock(fixture_index_dir, OLD), fixture_lock(fixture_index_dir, NEW)
    interrupt_at_stage(tmp_path, old, new, stage, left, no_exchange=no_exchange)


def test_kill_9_at_random_moments_leaves_old_or_new(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    old, new = fixture_lock(fixture_index_dir, OLD), fixture_lock(fixture_index_dir, NEW)
    interrupt_at_random_moments(tmp_path, old, new, seed=1234, trials=6)


def test_concurrent_syncs_share_one_cache(
    tmp_path: Path, fixture_index_dir: Path, make_index_server: Callable[..., IndexServer]
) -> None:
    server = make_index_server()
    lock = fixture_lock(fixture_index_dir, BASIC + NEW[2:3], base_url=server.base)
    lock_path = tmp_path / "lockenv.lock"
    write_lockfile(lock, lock_path)
    prefixes = [tmp_path / f"env{i}" for i in range(4)]
    procs = [sync_worker(lock_path, p) for p in prefixes]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    digests = set()
    for prefix in prefixes:
        _verify_ok(prefix, lock)
        digests.add(environment_digest(prefix))
    assert len(digests) == 1
    cache = default_cache_dir()
    assert not any((cache / "tmp").iterdir()) if (cache / "tmp").exists() else True
    unpacked = sorted(p.name for p in (cache / "unpacked").glob("*/*"))
    assert unpacked == sorted({a.sha256 for a in lock.artifacts.values()})


def test_concurrent_syncs_of_one_prefix_are_serialised(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    lock = fixture_lock(fixture_index_dir)
    lock_path = tmp_path / "lockenv.lock"
    write_lockfile(lock, lock_path)
    prefix = tmp_path / "env"
    procs = [sync_worker(lock_path, prefix) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    _verify_ok(prefix, lock)
    assert _leftovers(prefix) == []
    assert json.loads((prefix / ".lockenv-state.json").read_text())["environment"] == "default"


def test_an_entry_published_by_another_sync_meanwhile_is_used_not_discarded(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race seen with concurrent syncs on one cache: this sync finds no entry, another
    # publishes one, and this sync then took the complete entry for a damaged one and
    # removed it from under the other sync ("the unpacked cache entry ... is unusable").
    from lockenv.cache import Cache, seal_entry
    from lockenv.sync.pypi.wheel import unpack_wheel

    lock = fixture_lock(fixture_index_dir, OLD[:1])
    (artifact,) = lock.artifacts.values()
    archive = fixture_index_dir / "files" / artifact.filename
    cache = Cache(tmp_path / "cache")
    final = cache.unpacked_dir(artifact.sha256)
    assert prepare.trusted_entry(cache, artifact) == (final, "missing")  # our look
    # The other sync publishes its complete, sealed entry now.
    work = cache.make_temp_dir("other-sync")
    unpack_wheel(archive, work, filename=artifact.filename, project=artifact.name)
    seal_entry(work)
    cache.publish_dir(work, final)
    discarded: list[Path] = []
    real_discard = Cache.discard

    def discard(self: Cache, path: Path) -> None:
        discarded.append(path)
        real_discard(self, path)

    monkeypatch.setattr(Cache, "discard", discard)
    prepare.ensure_unpacked(cache, artifact, archive, final)
    assert discarded == []  # the other sync's complete entry was left in place
    assert prepare.trusted_entry(cache, artifact) == (final, "ok")
    assert list((cache.root / "tmp").iterdir()) == []


def test_unpacking_in_a_process_pool(tmp_path: Path, fixture_index_dir: Path) -> None:
    # Large downloads are unpacked by forked workers; force that path on the small fixtures
    # in a fresh process (no server threads, so fork is allowed).
    lock = fixture_lock(fixture_index_dir)
    lock_path = tmp_path / "lockenv.lock"
    write_lockfile(lock, lock_path)
    code = (
        "import sys\n"
        "import lockenv.sync.prepare as m\n"
        "m._PROCESS_UNPACK_BYTES = 0\n"
        "assert m._can_fork()\n"
        f"sys.argv = ['x', {str(lock_path)!r}, {str(tmp_path / 'env')!r}]\n" + SYNC_WORKER
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    _verify_ok(tmp_path / "env", lock)
    assert environment_digest(tmp_path / "env") == environment_digest(
        _sync_and_return(lock, tmp_path / "threads")
    )


def _sync_and_return(lock: Lockfile, prefix: Path) -> Path:
    _sync(lock, prefix)
    return prefix
