"""lockenv.build.builder: real builds of fixture sdists in isolated build environments.

The build backends are wheels in the fixture index: ``tinybackend`` (a small backend of
our own, fast) and real flit_core; setuptools builds are slow and opt-in
(``LOCKENV_SLOW_TESTS=1``).  Every build resolves its requirements from the fixture
index over file:// and installs them with lockenv's own installer.
"""

from __future__ import annotations

import email.parser
import sys
import zipfile
from pathlib import Path

import pytest

from lockenv.build.builder import SourceBuilder
from lockenv.errors import BuildError, UnsafePathError
from lockenv.sync.pypi.sources import BuildRequest
from lockenv.sync.venv import find_interpreter

PYTHON = find_interpreter(f"{sys.version_info.major}.{sys.version_info.minor}")


@pytest.fixture
def builder(fixture_index_dir: Path, tmp_path: Path) -> SourceBuilder:
    with SourceBuilder(
        cache_dir=tmp_path / "cache", index_urls=[(fixture_index_dir / "simple").as_uri()]
    ) as b:
        yield b


def _sdist(fixture_index_dir: Path, name: str) -> Path:
    return fixture_index_dir / "files" / f"{name}-1.0.tar.gz"


def _request(fixture_index_dir: Path, name: str, **kw: object) -> BuildRequest:
    import hashlib

    archive = _sdist(fixture_index_dir, name)
    return BuildRequest(
        name=name,
        version="1.0",
        python=PYTHON.executable,
        python_version=PYTHON.version,
        archive=archive,
        archive_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
        **kw,  # type: ignore[arg-type]
    )


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.HeaderParser().parsestr(zf.read(name).decode())


def test_metadata_of_a_dynamic_sdist(builder: SourceBuilder, fixture_index_dir: Path) -> None:
    # tinydyn's backend asks (get_requires_for_build_wheel) for delta and imports it:
    # the second round of build requirements reached the build environment.
    data = builder.sdist_metadata(_sdist(fixture_index_dir, "tinydyn"), filename="tinydyn-1.0")
    meta = email.parser.HeaderParser().parsestr(data.decode())
    assert (meta["Name"], meta["Version"]) == ("tinydyn", "1.0")
    assert meta.get_all("Requires-Dist") == ["epsilon"]


def test_build_wheel_and_reuse_it(
    builder: SourceBuilder, fixture_index_dir: Path, tmp_path: Path
) -> None:
    wheel = builder.build_wheel(_request(fixture_index_dir, "tinysdist"))
    assert wheel.name == "tinysdist-1.0-py3-none-any.whl"
    assert _metadata(wheel).get_all("Requires-Dist") == ["alpha<2"]
    assert "built" in wheel.parts and str(wheel).startswith(str(tmp_path / "cache"))
    # Built once per sdist sha256, interpreter and platform: no build environment the
    # second time (the index is gone, and the same bytes come back).
    builder.environments.index_urls = ("file:///nonexistent/simple",)
    again = builder.build_wheel(_request(fixture_index_dir, "tinysdist"))
    assert again == wheel
    # A damaged cache entry is never used: it is built again.
    wheel.write_bytes(b"damaged")
    builder.environments.index_urls = ((fixture_index_dir / "simple").as_uri(),)
    rebuilt = builder.build_wheel(_request(fixture_index_dir, "tinysdist"))
    assert zipfile.is_zipfile(rebuilt)


def test_real_flit_core_build(builder: SourceBuilder, fixture_index_dir: Path) -> None:
    data = builder.sdist_metadata(_sdist(fixture_index_dir, "flitsdist"), filename="flitsdist")
    assert b"Requires-Dist: alpha<2" in data
    wheel = builder.build_wheel(_request(fixture_index_dir, "flitsdist"))
    assert wheel.name.startswith("flitsdist-1.0-") and wheel.name.endswith(".whl")
    with zipfile.ZipFile(wheel) as zf:
        assert "flitsdist/__init__.py" in zf.namelist()


def test_build_error_shows_the_log_and_keeps_it(
    builder: SourceBuilder, fixture_index_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(BuildError) as info:
        builder.build_wheel(_request(fixture_index_dir, "brokensdist"))
    message = str(info.value)
    assert "brokensdist 1.0 (brokensdist-1.0.tar.gz)" in message
    assert "failed in build_wheel" in message
    assert any("deliberate test failure" in line for line in info.value.details)
    logs = list((tmp_path / "cache" / "build-logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in message
    assert "deliberate failure in build_wheel" in logs[0].read_text()
    # Work directories are gone.
    assert list((tmp_path / "cache" / "tmp").glob("build-*")) == []


def test_missing_build_backend(builder: SourceBuilder, fixture_index_dir: Path) -> None:
    with pytest.raises(BuildError, match=r"build backend 'no_such_backend' cannot be imported"):
        builder.build_wheel(_request(fixture_index_dir, "nobackend"))


def test_build_requirement_not_on_the_index(
    builder: SourceBuilder, fixture_index_dir: Path, tmp_path: Path
) -> None:
    import tarfile

    sdist = tmp_path / "needy-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        data = (
            b'[build-system]\nrequires = ["no-such-backend-package>=1"]\nbuild-backend = "nsbp"\n'
        )
        info = tarfile.TarInfo("needy-1.0/pyproject.toml")
        info.size = len(data)
        import io

        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BuildError, match=r"no-such-backend-package.*cannot be installed"):
        builder.sdist_metadata(sdist, filename=sdist.name)


def test_hostile_sdist_is_not_unpacked(builder: SourceBuilder, tmp_path: Path) -> None:
    import io
    import tarfile

    sdist = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("../../evil.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UnsafePathError):
        builder.sdist_metadata(sdist, filename=sdist.name)


@pytest.mark.slow
def test_real_setuptools_build(builder: SourceBuilder, fixture_index_dir: Path) -> None:
    # dynsdist: setup.py install_requires, so only setuptools can say what it needs.
    data = builder.sdist_metadata(_sdist(fixture_index_dir, "dynsdist"), filename="dynsdist")
    assert b"Requires-Dist: alpha" in data
    wheel = builder.build_wheel(_request(fixture_index_dir, "dynsdist"))
    assert _metadata(wheel).get_all("Requires-Dist") == ["alpha"]
