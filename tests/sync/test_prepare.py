"""lockenv.sync.prepare: each locked artifact unpacked in the cache, checked by its seal."""

from __future__ import annotations

import os
from pathlib import Path

from lockenv.cache import Cache
from lockenv.lockfile import PypiArtifact
from lockenv.sync.fetch import Fetcher
from lockenv.sync.prepare import Prepared, prepare_artifacts
from lockenv.sync.pypi.wheel import UnpackedWheel

from materializer_support import artifact_for, build_wheel


def _prepare(cache: Cache, artifacts: list[PypiArtifact], **options: bool) -> Prepared:
    fetcher = Fetcher(cache)
    try:
        return prepare_artifacts(artifacts, fetcher, **options)
    finally:
        fetcher.close()


def _artifacts(tmp_path: Path) -> list[PypiArtifact]:
    found = []
    for name in ("alpha", "beta"):
        files = {f"{name}/__init__.py": b"", f"{name}/sub/m.py": f"x = {name!r}\n".encode()}
        wheel = build_wheel(tmp_path / "wheels", name, "1.0", files)
        found.append(artifact_for(wheel, wheel.as_uri(), index=None))
    return found


def test_inodes_of_sealed_trees_only_when_asked_for(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    artifacts = _artifacts(tmp_path)
    cold = _prepare(cache, artifacts)
    assert not cold.inodes  # unpacked by this sync: not seen by a seal check
    warm = _prepare(cache, artifacts)
    files = {
        str(path)
        for a in artifacts
        for path in cache.unpacked_dir(a.sha256).rglob("*")
        if path.is_file() and path.name != "seal.json"
    }
    assert set(warm.inodes) == files
    for path, (dev, ino) in warm.inodes.items():
        st = os.lstat(path)
        assert (st.st_dev, st.st_ino) == (dev, ino)
    without = _prepare(cache, artifacts, want_inodes=False)
    assert without.inodes == {}
    assert without.unpacked == warm.unpacked
    assert all(isinstance(u, UnpackedWheel) for u in without.unpacked.values())
