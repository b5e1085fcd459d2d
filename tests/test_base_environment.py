"""Reading a base environment from its directories: Python, conda packages, distributions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockenv.base_environment import (
    BaseEnvironment,
    BaseEnvironmentError,
    base_drift,
    base_python,
    read_base_environment,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="unix prefix layout")


def make_base(
    root: Path,
    *,
    python: str = "3.11",
    conda: tuple[str, ...] = (),
    dists: tuple[str, ...] = (),
    cfg_version: str | None = None,
) -> Path:
    site = root / "lib" / f"python{python}" / "site-packages"
    site.mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "bin" / "python3").write_text("#!/bin/sh\n")
    if conda:
        (root / "conda-meta").mkdir()
        (root / "conda-meta" / "history").write_text("")
        for record in conda:
            (root / "conda-meta" / f"{record}.json").write_text("{}")
    for dist in dists:
        (site / dist).mkdir()
    (site / "README.txt").write_text("not a distribution")
    if cfg_version:
        (root / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {cfg_version}\n")
    return root


def test_conda_base(tmp_path: Path) -> None:
    root = make_base(
        tmp_path / "base",
        conda=("python-3.11.7-h1_0", "libzlib-1.3.1-h2_1", "ca-certificates-2024.2.2-hbcca054_0"),
        dists=("tool_py-2.1.0.dist-info", "Ruamel.YAML-0.18.dist-info", "old-1.0-py3.11.egg-info"),
    )
    base = read_base_environment(root)
    assert base == BaseEnvironment(
        prefix=str(root),
        python="3.11.7",
        site_packages="lib/python3.11/site-packages",
        conda=(
            "ca-certificates=2024.2.2=hbcca054_0",
            "libzlib=1.3.1=h2_1",
            "python=3.11.7=h1_0",
        ),
        pypi=("old==1.0", "ruamel-yaml==0.18", "tool-py==2.1.0"),
    )
    assert base.conda_records()["libzlib"] == ("1.3.1", "h2_1")
    assert base.pypi_versions() == {"old": "1.0", "ruamel-yaml": "0.18", "tool-py": "2.1.0"}
    assert base_python(root) == root / "bin" / "python3"


def test_plain_prefix_and_venv(tmp_path: Path) -> None:
    plain = read_base_environment(make_base(tmp_path / "plain", python="3.12"))
    assert (plain.python, plain.conda, plain.pypi) == ("3.12", (), ())
    venv = read_base_environment(make_base(tmp_path / "venv", cfg_version="3.11.9"))
    assert venv.python == "3.11.9"


def test_digest_is_the_package_set_not_the_place(tmp_path: Path) -> None:
    one = read_base_environment(make_base(tmp_path / "a", dists=("alpha-1.0.dist-info",)))
    two = read_base_environment(make_base(tmp_path / "b", dists=("alpha-1.0.dist-info",)))
    assert one.prefix != two.prefix and one.digest == two.digest
    three = read_base_environment(make_base(tmp_path / "c", dists=("alpha-1.1.dist-info",)))
    assert three.digest != one.digest
    assert base_drift(one, three) == "alpha 1.0 -> 1.1"


_ENTRIES = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["1.0", "2.0"])),
    unique_by=lambda e: e[0],
)


@given(_ENTRIES, _ENTRIES)
def test_drift_names_every_change(
    before: list[tuple[str, str]], after: list[tuple[str, str]]
) -> None:
    def base(entries: list[tuple[str, str]]) -> BaseEnvironment:
        pypi = tuple(sorted(f"{n}=={v}" for n, v in entries))
        return BaseEnvironment(prefix="/b", python="3.11", site_packages="lib", pypi=pypi)

    old, new = base(before), base(after)
    text = base_drift(old, new, limit=100)
    assert (text == "") == (old.digest == new.digest)
    for name, _version in set(before) ^ set(after):
        assert name in text


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (lambda p: None, "does not exist on this machine"),
        (lambda p: p.mkdir(), "has no site-packages"),
    ],
)
def test_not_a_base(tmp_path: Path, setup: object, why: str) -> None:
    path = tmp_path / "base"
    setup(path)  # type: ignore[operator]
    with pytest.raises(BaseEnvironmentError, match=why) as info:
        read_base_environment(path)
    assert info.value.exit_code == 2


def test_no_interpreter(tmp_path: Path) -> None:
    root = make_base(tmp_path / "base")
    (root / "bin" / "python3").unlink()
    with pytest.raises(BaseEnvironmentError, match="has no Python interpreter"):
        base_python(root)
