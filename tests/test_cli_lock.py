"""End to end: the real `lockenv` command on fixture projects (init, add, remove, lock, list).

Every run is a subprocess, as a user would run it; the index is the fixture index served
over HTTP on 127.0.0.1 (or read through file://).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli_support import lockenv, write_manifest

SCHEMAS = Path(__file__).parent.parent / "schemas"


def test_new_user_flow(tmp_path: Path, index_server: Any) -> None:
    lockenv(
        tmp_path,
        "init",
        "--platform",
        "linux-64",
        "--platform",
        "osx-arm64",
        "--platform",
        "win-64",
        "--index",
        index_server.url,
    )
    manifest = (tmp_path / "lockenv.toml").read_text()
    assert 'requires-python = "==' in manifest
    lockenv(tmp_path, "add", "--pypi", "clicky", "numfast", "alpha")
    lockenv(tmp_path, "lock")
    lock_bytes = (tmp_path / "lockenv.lock").read_bytes()

    rows = {
        p: json.loads(lockenv(tmp_path, "list", "--platform", p, "--json").stdout)
        for p in ("linux-64", "osx-arm64", "win-64")
    }
    for listed in rows.values():
        for row in listed:
            assert {"name", "version", "kind", "filename", "url", "sha256"} <= set(row)
            assert row["kind"] == "pypi"
    numfast = {p: next(r["filename"] for r in rows[p] if r["name"] == "numfast") for p in rows}
    assert "manylinux" in numfast["linux-64"] and "x86_64" in numfast["linux-64"]
    assert "macosx" in numfast["osx-arm64"] and "arm64" in numfast["osx-arm64"]
    assert numfast["win-64"].endswith("win_amd64.whl")
    names = {p: {r["name"] for r in rows[p]} for p in rows}
    assert "colorish" in names["win-64"]
    assert "colorish" not in names["linux-64"] | names["osx-arm64"]

    # Locking again gives the same bytes; so does --update-all with nothing newer.
    lockenv(tmp_path, "lock")
    assert (tmp_path / "lockenv.lock").read_bytes() == lock_bytes
    lockenv(tmp_path, "lock", "--update-all")
    assert (tmp_path / "lockenv.lock").read_bytes() == lock_bytes
    assert lockenv(tmp_path, "lock", "--check").returncode == 0


def test_adding_a_dependency_changes_no_unrelated_pin(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "<2"\ndelta = "==1.0"\n')
    lockenv(tmp_path, "lock")
    before = json.loads(lockenv(tmp_path, "list", "--platform", "linux-64", "--json").stdout)
    # Loosen delta in the manifest and add a package: delta's pin must not move.
    write_manifest(tmp_path, index_server.url, 'alpha = "<2"\ndelta = "*"\n')
    lockenv(tmp_path, "add", "--pypi", "epsilon")
    after = json.loads(lockenv(tmp_path, "list", "--platform", "linux-64", "--json").stdout)
    assert {r["name"]: r["version"] for r in after} == {
        **{r["name"]: r["version"] for r in before},
        "epsilon": "0.9",
    }


def test_check_detects_staleness_not_formatting(tmp_path: Path, index_server: Any) -> None:
    manifest = write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    # Comments and whitespace do not make a lock stale.
    manifest.write_text("# a comment\n" + manifest.read_text().replace(" = ", "   =   "))
    assert lockenv(tmp_path, "lock", "--check").returncode == 0
    manifest.write_text(manifest.read_text().replace('alpha   =   "*"', 'alpha = "<2"'))
    result = lockenv(tmp_path, "lock", "--check", check=False)
    assert result.returncode == 1
    assert "alpha<2" in result.stderr
    lockenv(tmp_path, "lock")
    assert lockenv(tmp_path, "lock", "--check").returncode == 0
    # A new platform makes it stale too.
    manifest.write_text(manifest.read_text().replace('"win-64"]', '"win-64", "osx-64"]'))
    assert lockenv(tmp_path, "lock", "--check", check=False).returncode == 1


def _inputs(root: Path) -> dict[str, Any]:
    import yaml

    inputs: dict[str, Any] = yaml.safe_load((root / "lockenv.lock").read_text())["inputs"]
    return inputs


def test_exclude_newer_duration_does_not_go_stale(tmp_path: Path, index_server: Any) -> None:
    manifest = write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    text = manifest.read_text().replace("[project]\n", '[project]\nexclude-newer = "30 days"\n')
    manifest.write_text(text)
    lockenv(tmp_path, "lock")
    inputs = _inputs(tmp_path)
    assert inputs["exclude-newer-span"] == "30 days"
    # As if the lock had been made long ago: time passing does not make it stale...
    lock = tmp_path / "lockenv.lock"
    lock.write_text(lock.read_text().replace(inputs["exclude-newer"], "2024-07-01T00:00:00Z"))
    assert lockenv(tmp_path, "lock", "--check").returncode == 0
    # ...and `lock` on a fresh lock keeps the moment it recorded (and every pin).
    assert "up to date" in lockenv(tmp_path, "lock").stderr
    assert _inputs(tmp_path)["exclude-newer"] == "2024-07-01T00:00:00Z"
    # The same span written another way is the same input.
    manifest.write_text(text.replace('"30 days"', '"P30D"'))
    assert lockenv(tmp_path, "lock", "--check").returncode == 0
    # Another span is a change: the lock is stale, and a lock evaluates the span anew.
    manifest.write_text(text.replace('"30 days"', '"2 weeks"'))
    result = lockenv(tmp_path, "lock", "--check", check=False)
    assert result.returncode == 1
    assert "exclude-newer changed: the manifest has '2 weeks', the lock '30 days'" in result.stderr
    lockenv(tmp_path, "lock")
    inputs = _inputs(tmp_path)
    assert inputs["exclude-newer-span"] == "2 weeks"
    assert inputs["exclude-newer"] > "2025-"
    # A fixed moment instead of a span: stale again, and the span leaves the lock.
    manifest.write_text(text.replace('"30 days"', '"2025-01-01"'))
    assert lockenv(tmp_path, "lock", "--check", check=False).returncode == 1
    lockenv(tmp_path, "lock")
    assert "exclude-newer-span" not in _inputs(tmp_path)
    assert lockenv(tmp_path, "lock", "--check").returncode == 0


def test_dry_run_writes_nothing(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    result = lockenv(tmp_path, "lock", "--dry-run")
    assert "+ alpha 2.0" in result.stdout
    assert not (tmp_path / "lockenv.lock").exists()


def test_remove_keeps_the_rest_of_the_manifest(tmp_path: Path, index_server: Any) -> None:
    manifest = write_manifest(
        tmp_path, index_server.url, '# keep me\nalpha = "*"   # trailing\nepsilon = "*"\n'
    )
    lockenv(tmp_path, "lock")
    lockenv(tmp_path, "remove", "epsilon")
    text = manifest.read_text()
    assert "epsilon" not in text
    assert '# keep me\nalpha = "*"   # trailing\n' in text
    listed = json.loads(lockenv(tmp_path, "list", "--platform", "linux-64", "--json").stdout)
    assert [r["name"] for r in listed] == ["alpha", "beta"]


def test_lockfile_validates_against_schema(tmp_path: Path, index_server: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    write_manifest(
        tmp_path,
        index_server.url,
        'gamma = { version = "*", extras = ["all"] }\nclicky = "*"\nnumfast = "*"\n',
    )
    lockenv(tmp_path, "lock")
    data = yaml.safe_load((tmp_path / "lockenv.lock").read_text())
    schema = json.loads((SCHEMAS / "lockfile.schema.json").read_text())
    jsonschema.validate(data, schema)


def test_credentials_never_reach_the_lock(tmp_path: Path, make_index_server: Any) -> None:
    server = make_index_server(auth=("alice", "s3cret"))
    write_manifest(tmp_path, server.url_with_auth(), 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    text = (tmp_path / "lockenv.lock").read_text()
    assert "s3cret" not in text and "alice" not in text
    assert lockenv(tmp_path, "lock", "--check").returncode == 0


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        ('[project]\nname = "x"\nplatforms = ["linux-65"]\n', ["linux-65", "platforms"]),
        (
            '[project]\nname = "x"\nplatforms = ["linux-64"]\n[pypi-dependencies]\n'
            'alpha = ">=2.x"\n',
            ["pypi-dependencies.alpha", ">=2.x"],
        ),
        ('[project]\nname = "x"\nplatforms = ["linux-64"]\ncolour = 1\n', ["colour"]),
        ('[project\nname = "x"\n', ["lockenv.toml"]),
    ],
)
def test_bad_manifest_is_one_line_exit_2(tmp_path: Path, manifest: str, words: list[str]) -> None:
    (tmp_path / "lockenv.toml").write_text(manifest)
    result = lockenv(tmp_path, "lock", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize(
    ("deps", "words"),
    [
        ('nosuchpkg = "*"\n', ["no package named 'nosuchpkg'"]),
        ('unsat-x = "*"\n', ["unsat-x 1.0 requires 'shared>=3'"]),
        ('conflict-b = "*"\nshared = "<2"\n', ["conflict-b 1.0 requires 'shared>=2'"]),
    ],
)
def test_resolution_failure_is_one_line(
    tmp_path: Path, index_server: Any, deps: str, words: list[str]
) -> None:
    write_manifest(tmp_path, index_server.url, deps)
    result = lockenv(tmp_path, "-q", "lock", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    for word in words:
        assert word in result.stderr
    assert not (tmp_path / "lockenv.lock").exists()


def test_hand_broken_lock_is_reported(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    lock = tmp_path / "lockenv.lock"
    lock.write_text(lock.read_text().replace("sha256: ", "sha256: zz", 1))
    result = lockenv(tmp_path, "list", check=False)
    assert result.returncode == 2
    assert "sha256" in result.stderr and "lockenv lock" in result.stderr
    assert "Traceback" not in result.stderr


def test_pyproject_manifest(tmp_path: Path, index_server: Any) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "pp"\nversion = "0"\nrequires-python = "==3.11.*"\n\n'
        '[tool.lockenv.project]\nplatforms = ["linux-64"]\n'
        f'indexes = ["{index_server.url}"]\n\n'
        '[tool.lockenv.pypi-dependencies]\nalpha = "<2"\n'
    )
    lockenv(tmp_path, "lock")
    listed = json.loads(lockenv(tmp_path, "list", "--platform", "linux-64", "--json").stdout)
    assert [(r["name"], r["version"]) for r in listed] == [("alpha", "1.1")]


def test_relaxed_requirement_keeps_pins_and_updates_the_record(
    tmp_path: Path, index_server: Any
) -> None:
    manifest = write_manifest(tmp_path, index_server.url, 'alpha = "<2"\n')
    lockenv(tmp_path, "lock")
    before = (tmp_path / "lockenv.lock").read_text()
    manifest.write_text(manifest.read_text().replace('alpha = "<2"', 'alpha = "<3"'))
    result = lockenv(tmp_path, "lock")
    assert "up to date" in result.stderr
    after = (tmp_path / "lockenv.lock").read_text()
    assert "- alpha<3" in after and "- alpha<2" not in after
    assert after.replace("alpha<3", "alpha<2") == before  # every pin kept


def test_update_of_an_unlocked_name_is_an_error(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    result = lockenv(tmp_path, "lock", "--update", "alhpa", check=False)
    assert result.returncode == 2
    assert "alhpa" in result.stderr and result.stderr.count("\n") == 1


def test_bad_requirement_on_the_command_line_is_one_line(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    result = lockenv(tmp_path, "add", "--pypi", "bad spec!!", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
