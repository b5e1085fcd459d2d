"""Mirror rules (lockenv.mirrors) and the HTTP client fetching through them."""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lockenv.http as lhttp
from lockenv.errors import ConfigError, IndexAccessError, IntegrityError, OfflineError
from lockenv.http import HttpClient, HttpStatusError
from lockenv.mirrors import (
    MirrorRule,
    Mirrors,
    config_files,
    load_mirrors,
    parse_mirror_table,
    site_mirrors,
)

from test_http import Route, TinyServer

ORIGIN = "https://origin.example.invalid/conda-forge"


def rules(table: dict[str, list[str]], source: str = "test") -> Mirrors:
    problems: list[str] = []
    mirrors = parse_mirror_table(
        table, source=source, base_dir=Path("/base"), problem=lambda k, m: problems.append(m)
    )
    assert problems == []
    return mirrors


# ---------------------------------------------------------------------------- matching

MIRRORS = rules(
    {
        ORIGIN: ["https://m1.example.invalid/cf", "https://u:secret@m2.example.invalid/cf/"],
        ORIGIN + "/noarch": ["file:///shared/noarch"],
        "https://pypi.example.invalid/simple": ["https://pypi.site.invalid/simple"],
    }
)


@pytest.mark.parametrize(
    ("url", "locations"),
    [
        (
            ORIGIN + "/linux-64/x.conda",
            (
                "https://m1.example.invalid/cf/linux-64/x.conda",
                "https://u:secret@m2.example.invalid/cf/linux-64/x.conda",
            ),
        ),
        (ORIGIN, ("https://m1.example.invalid/cf", "https://u:secret@m2.example.invalid/cf")),
        (ORIGIN + "/noarch/repodata.json", ("file:///shared/noarch/repodata.json",)),
        # A prefix ends at a '/': conda-forge-extra is another channel.
        (ORIGIN + "-extra/x.conda", (ORIGIN + "-extra/x.conda",)),
        (
            "https://pypi.example.invalid/simple/alpha/",
            ("https://pypi.site.invalid/simple/alpha/",),
        ),
        # The origin is matched without the URL's credentials.
        (
            "https://tok@pypi.example.invalid/simple/a/",
            ("https://pypi.site.invalid/simple/a/",),
        ),
        ("https://elsewhere.invalid/x", ("https://elsewhere.invalid/x",)),
    ],
)
def test_locations(url: str, locations: tuple[str, ...]) -> None:
    assert MIRRORS.locations(url) == locations


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://m1.example.invalid/cf/linux-64/x.conda", ORIGIN + "/linux-64/x.conda"),
        ("https://m2.example.invalid/cf/linux-64/x.conda", ORIGIN + "/linux-64/x.conda"),
        ("file:///shared/noarch/y.conda", ORIGIN + "/noarch/y.conda"),
        ("https://pypi.site.invalid/simple/a/", "https://pypi.example.invalid/simple/a/"),
        ("https://pypi.site.invalid/packages/a.whl", "https://pypi.site.invalid/packages/a.whl"),
        ("https://m1.example.invalid/cfx", "https://m1.example.invalid/cfx"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert MIRRORS.origin_of(url) == origin


@given(st.from_regex(r"(/[a-z0-9._-]{1,8}){0,4}", fullmatch=True))
def test_a_location_maps_back_to_its_url(rest: str) -> None:
    url = ORIGIN + rest
    for location in MIRRORS.locations(url):
        assert MIRRORS.origin_of(location) == url


def test_then_keeps_the_first_rule_for_an_origin() -> None:
    first = rules({ORIGIN: ["https://a.invalid"]}, "first")
    second = rules({ORIGIN: ["https://b.invalid"], "https://x.invalid": ["https://y.invalid"]})
    merged = first.then(second)
    assert [(r.origin, r.mirrors) for r in merged.rules] == [
        (ORIGIN, ("https://a.invalid",)),
        ("https://x.invalid", ("https://y.invalid",)),
    ]
    assert not Mirrors() and merged


# ---------------------------------------------------------------------------- reading rules


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"conda-forge": ["https://m.invalid"]}, "is not a URL without credentials"),
        ({"https://u:p@o.invalid": ["https://m.invalid"]}, "is not a URL without credentials"),
        ({ORIGIN: []}, "expected a list of mirror URLs"),
        ({ORIGIN: [3]}, "expected a list of mirror URLs"),
        ({ORIGIN: ["ftp://m.invalid"]}, "'ftp://m.invalid' is not an http://"),
        ({ORIGIN: ["https://u:topsecret@m.invalid", "ssh://m"]}, "'ssh://m' is not"),
    ],
)
def test_bad_tables(table: dict[str, object], problem: str) -> None:
    problems: list[str] = []
    mirrors = parse_mirror_table(
        table, source="t", base_dir=None, problem=lambda k, m: problems.append(m)
    )
    assert not mirrors
    assert len(problems) == 1 and problem in problems[0]
    assert "topsecret" not in problems[0]


def test_paths_become_file_urls(tmp_path: Path) -> None:
    problems: list[str] = []
    mirrors = parse_mirror_table(
        {ORIGIN: ["./mirror", str(tmp_path / "abs"), "https://m.invalid/x/"]},
        source="t",
        base_dir=tmp_path,
        problem=lambda k, m: problems.append(m),
    )
    assert mirrors.rules == (
        MirrorRule(
            origin=ORIGIN,
            mirrors=(
                (tmp_path / "mirror").as_uri(),
                (tmp_path / "abs").as_uri(),
                "https://m.invalid/x",
            ),
            source="t",
        ),
    )


def test_site_rules_environment_then_config_files(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mirrors]\n"{ORIGIN}" = ["https://from-file.invalid"]\n'
        '"https://other.invalid" = "./local"\n'
    )
    env = {
        "LOCKENV_MIRRORS": f"{ORIGIN}=https://env1.invalid,https://env2.invalid",
        "LOCKENV_CONFIG": str(config),
    }
    mirrors = site_mirrors(env)
    assert [(r.origin, r.mirrors, r.source) for r in mirrors.rules] == [
        (ORIGIN, ("https://env1.invalid", "https://env2.invalid"), "LOCKENV_MIRRORS"),
        ("https://other.invalid", ((tmp_path / "local").as_uri(),), str(config)),
    ]


@pytest.mark.parametrize(
    ("env_value", "config_text", "problem"),
    [
        ("https://x.invalid", "", "is not ORIGIN=MIRROR"),
        ("https://x.invalid=ftp://y", "", "'ftp://y' is not an http://"),
        ("", "[mirrors\n", "invalid TOML"),
        ("", "channels = []\n", "unknown key 'channels' (expected: mirrors)"),
        ("", '[mirrors]\n"x" = ["https://y.invalid"]\n', "mirrors.'x': the origin 'x'"),
    ],
)
def test_bad_site_settings(tmp_path: Path, env_value: str, config_text: str, problem: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    with pytest.raises(ConfigError, match=re.escape(problem)) as info:
        site_mirrors({"LOCKENV_MIRRORS": env_value, "LOCKENV_CONFIG": str(config)})
    assert info.value.exit_code == 2


def test_config_file_locations(tmp_path: Path) -> None:
    assert config_files({"LOCKENV_CONFIG": ""}) == []
    assert config_files({"LOCKENV_CONFIG": "/site/lockenv.toml"}) == [Path("/site/lockenv.toml")]
    found = config_files({"XDG_CONFIG_HOME": str(tmp_path)})
    assert found[0] == tmp_path / "lockenv" / "config.toml"
    assert len(found) == 2


def test_load_mirrors_reads_only_the_manifest_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKENV_MIRRORS", f"{ORIGIN}=https://site.invalid")
    manifest = tmp_path / "pyproject.toml"
    manifest.write_text(
        "[tool.lockenv.project]\nbroken = true\n"
        f'[tool.lockenv.mirrors]\n"{ORIGIN}" = ["https://project.invalid"]\n'
        '"https://p.invalid/simple" = ["./wheels"]\n'
    )
    mirrors = load_mirrors(manifest)
    assert mirrors.locations(ORIGIN + "/x") == ("https://site.invalid/x",)
    assert mirrors.locations("https://p.invalid/simple/a/") == (
        (tmp_path / "wheels").as_uri() + "/a/",
    )
    assert load_mirrors(None).locations("https://p.invalid/simple") == ("https://p.invalid/simple",)
    manifest.write_text('[tool.lockenv.mirrors]\n"https://x.invalid" = 3\n')
    with pytest.raises(ConfigError, match=r"pyproject\.toml: mirrors: expected a list"):
        load_mirrors(manifest)


@pytest.mark.parametrize(
    ("text", "mirrored"),
    [
        ('[project]\nname = "p"\n', False),  # no table: not even parsed
        ('[project]\nname = "p"\n[mirrors]\n"https://o.invalid" = ["https://m.invalid"]\n', True),
        # The table's name spelled with an escape: still found.
        ('["\\u006Dirrors"]\n"https://o.invalid" = ["https://m.invalid"]\n', True),
        ('["\\U0000006dirrors"]\n"https://o.invalid" = ["https://m.invalid"]\n', True),
        ("[project\n", False),  # broken: reading the manifest proper reports it
    ],
)
def test_load_mirrors_finds_the_table_however_spelled(
    text: str, mirrored: bool, tmp_path: Path
) -> None:
    manifest = tmp_path / "lockenv.toml"
    manifest.write_text(text)
    expected = "https://m.invalid/x" if mirrored else "https://o.invalid/x"
    assert load_mirrors(manifest).locations("https://o.invalid/x") == (expected,)


# ---------------------------------------------------------------------------- fetching


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lhttp, "_RETRY_BACKOFF", 0.0)


@pytest.fixture
def servers() -> Iterator[tuple[TinyServer, TinyServer, TinyServer]]:
    started = [TinyServer() for _ in range(3)]
    yield started[0], started[1], started[2]
    for server in started:
        server.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    # Bound, never listening: connections are refused and no one else can take it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


BLOB = b"wheel bytes " * 100
DIGEST = hashlib.sha256(BLOB).hexdigest()


def test_falls_back_in_order_and_never_asks_the_origin(
    servers: tuple[TinyServer, TinyServer, TinyServer], refused_port: int, tmp_path: Path
) -> None:
    origin, first, second = servers
    origin.routes["/files/a.whl"] = Route(body=BLOB)
    second.routes["/m/files/a.whl"] = Route(body=BLOB)
    second.routes["/m/simple/a/"] = Route(body=b"<a href='../../files/a.whl'>a</a>")
    mirrors = rules(
        {
            origin.base: [
                f"http://127.0.0.1:{refused_port}/m",
                first.base + "/m",
                second.base + "/m",
            ]
        }
    )
    with HttpClient(tmp_path / "c", mirrors=mirrors) as client:
        page = client.get_page(origin.base + "/simple/a/", accept="text/html")
        assert page.url == second.base + "/m/simple/a/"
        assert client.origin_of(page.url) == origin.base + "/simple/a/"
        dest = tmp_path / "a.whl"
        assert client.download(origin.base + "/files/a.whl", dest, sha256=DIGEST, size=None)
        assert dest.read_bytes() == BLOB
        assert [r.path for r in first.requests] == ["/m/simple/a/", "/m/files/a.whl"]
        # The refused mirror is tried last from now on: the next file costs no retries.
        first.requests.clear()
        client.fetch_bytes(origin.base + "/files/a.whl")
        assert [r.path for r in first.requests] == ["/m/files/a.whl"]
    assert origin.requests == []


def test_a_mirror_with_wrong_bytes_is_passed_over(
    servers: tuple[TinyServer, TinyServer, TinyServer], tmp_path: Path
) -> None:
    origin, bad, good = servers
    bad.routes["/a.whl"] = Route(body=b"tampered")
    good.routes["/a.whl"] = Route(body=BLOB)
    mirrors = rules({origin.base: [bad.base, good.base]})
    with HttpClient(tmp_path / "c", mirrors=mirrors) as client:
        client.download(origin.base + "/a.whl", tmp_path / "a", sha256=DIGEST, size=len(BLOB))
    assert (tmp_path / "a").read_bytes() == BLOB
    good.routes.clear()
    with (
        HttpClient(tmp_path / "c", mirrors=mirrors) as client,
        pytest.raises(IntegrityError, match=r"no mirror could serve it .*sha256 or size mismatch"),
    ):
        client.download(origin.base + "/a.whl", tmp_path / "b", sha256=DIGEST, size=len(BLOB))
    assert not (tmp_path / "b").exists()


def test_missing_everywhere_is_a_404(
    servers: tuple[TinyServer, TinyServer, TinyServer], tmp_path: Path
) -> None:
    origin, first, second = servers
    mirrors = rules({origin.base: [first.base, "http://u:topsecret@" + second.base[7:]]})
    with (
        HttpClient(tmp_path / "c", mirrors=mirrors) as client,
        pytest.raises(HttpStatusError) as info,
    ):
        client.get_page(origin.base + "/simple/nope/", accept="text/html")
    assert info.value.status == 404
    assert "no mirror could serve it" in str(info.value) and "topsecret" not in str(info.value)
    # The credentials went to the server, in the Authorization header only.
    assert second.requests[0].headers["authorization"].startswith("Basic ")


def test_unreachable_everywhere(refused_port: int, tmp_path: Path) -> None:
    mirrors = rules(
        {
            "http://origin.invalid": [
                f"http://127.0.0.1:{refused_port}",
                "file:///nonexistent-lockenv",
            ]
        }
    )
    with HttpClient(tmp_path / "c", mirrors=mirrors) as client, pytest.raises(IndexAccessError):
        client.fetch_bytes("http://origin.invalid/x")


def test_offline_reads_a_mirror_on_a_shared_filesystem(tmp_path: Path) -> None:
    (tmp_path / "mirror" / "sub").mkdir(parents=True)
    (tmp_path / "mirror" / "sub" / "a.whl").write_bytes(BLOB)
    mirrors = rules({"https://origin.invalid": ["https://down.invalid", str(tmp_path / "mirror")]})
    with HttpClient(tmp_path / "c", offline=True, mirrors=mirrors) as client:
        client.download(
            "https://origin.invalid/sub/a.whl", tmp_path / "a", sha256=DIGEST, size=None
        )
    assert (tmp_path / "a").read_bytes() == BLOB
    # The local mirror, the one that could answer, does not have it: a 404.
    with (
        HttpClient(tmp_path / "c", offline=True, mirrors=mirrors) as client,
        pytest.raises(HttpStatusError, match="--offline forbids") as info,
    ):
        client.fetch_bytes("https://origin.invalid/sub/other.whl.metadata")
    assert info.value.status == 404
    # With no local mirror, offline is offline.
    mirrors = rules({"https://origin.invalid": ["https://down.invalid", "https://d2.invalid"]})
    with (
        HttpClient(tmp_path / "c", offline=True, mirrors=mirrors) as client,
        pytest.raises(OfflineError),
    ):
        client.fetch_bytes("https://origin.invalid/sub/a.whl")
