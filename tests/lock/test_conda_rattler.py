"""lockenv's conda solver against rattler's answers, written down as data.

The expectations were made once by ``benchmarks/rattler_expectations.py`` with
py-rattler; these tests need no rattler:

- real repodata (conda's own 2018 ``defaults`` snapshot, ``fixtures/real_repodata``):
  every request rattler solves, lockenv solves with the same build of every package,
  and every request rattler refuses, lockenv refuses with a one-line explanation;
- a seeded random request set on the generated channel: every request is decided the
  way rattler decides it, each solution is checked to meet every requirement, and the
  requested packages and Python are rattler's — or, where the two searches took
  different paths through conflicts, lockenv's requested packages are newer (one of 60
  today: ``pyquobe <2.0.0 ... bedaar``, where rattler settles for Python 3.8 and
  ``bedaar 1.4.0``, lockenv for Python 3.10 and ``bedaar 1.5.2``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fixtures.gen_channel import generate
from lockenv.http import HttpClient
from lockenv.lock.conda.matchspec import MatchSpec
from lockenv.lock.conda.repodata import Channel, ChannelClient, ChannelRecords, RepoRecord
from lockenv.lock.conda.solver import CondaSolver, Unsatisfiable
from lockenv.lock.conda.version import VersionOrder
from lockenv.platforms import get_platform, virtual_packages

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REAL = json.loads((FIXTURES / "real_repodata" / "expected.json").read_text())["requests"]
GENERATED_DOC = json.loads((FIXTURES / "resolver_cases" / "generated_expected.json").read_text())
GENERATED = GENERATED_DOC["requests"]


class Channels:
    """Records by name for each platform of one channel, read once per test session."""

    def __init__(self, directory: Path, cache: Path) -> None:
        self.channel = Channel.parse(directory.as_uri())
        self.http = HttpClient(cache)
        self.client = ChannelClient(self.http)
        self.by_platform: dict[str, ChannelRecords] = {}

    def records(self, platform: str) -> ChannelRecords:
        if platform not in self.by_platform:
            self.by_platform[platform] = self.client.records_by_name([self.channel], [platform])
        return self.by_platform[platform]


@pytest.fixture(scope="module")
def real_channel(tmp_path_factory: pytest.TempPathFactory) -> Channels:
    return Channels(FIXTURES / "real_repodata" / "defaults-2018", tmp_path_factory.mktemp("c"))


@pytest.fixture(scope="module")
def generated_channel(tmp_path_factory: pytest.TempPathFactory) -> Channels:
    directory = tmp_path_factory.mktemp("generated")
    generate(directory, seed=3, scale=0.1)
    return Channels(directory, tmp_path_factory.mktemp("c"))


def solve(channels: Channels, request: Mapping[str, Any]) -> dict[str, str] | str:
    """lockenv's answer: ``name -> "version build"``, or the explanation."""
    platform = request["platform"]
    solver = CondaSolver(
        records=channels.records(platform),
        virtual_packages=virtual_packages(get_platform(platform)),
        direct=[MatchSpec.parse(s) for s in request["specs"]],
        platform=platform,
    )
    try:
        solution = solver.solve()
    except Unsatisfiable as exc:
        return exc.explanation
    check_valid(solution, request["specs"], platform)
    return {r.name: f"{r.version} {r.build}" for r in solution}


def check_valid(solution: Sequence[RepoRecord], specs: Sequence[str], platform: str) -> None:
    """Independently of the solver: one build per name, every spec, dependency and
    constraint met."""
    chosen: dict[str, Any] = {r.name: r for r in solution}
    assert len(chosen) == len(solution), "two builds of one name"
    for virtual in virtual_packages(get_platform(platform)):
        chosen.setdefault(virtual.name, virtual)
    for text in specs:
        spec = MatchSpec.parse(text)
        assert spec.name in chosen and spec.matches(chosen[spec.name]), text
    for record in solution:
        for text in record.depends:
            spec = MatchSpec.parse(text)
            assert spec.name in chosen and spec.matches(chosen[spec.name]), (record, text)
        for text in record.constrains:
            spec = MatchSpec.parse(text)
            assert spec.name not in chosen or spec.matches(chosen[spec.name]), (record, text)


def decided_like_rattler(
    ours: dict[str, str] | str, request: Mapping[str, Any]
) -> dict[str, str] | None:
    """lockenv's solution when rattler has one too; None when both refuse (lockenv with
    a one-line explanation)."""
    if "error" in request:
        assert isinstance(ours, str), f"rattler proves it impossible: {request['error']}"
        assert "\n" not in ours and ours
        return None
    assert isinstance(ours, dict), f"rattler solves it; lockenv says: {ours}"
    return ours


def _id(request: Mapping[str, Any]) -> str:
    return f"{request['platform']}:{'+'.join(request['specs'])}"


@pytest.mark.parametrize("request_", REAL, ids=[_id(r) for r in REAL])
def test_same_answer_as_rattler_on_real_repodata(
    real_channel: Channels, request_: Mapping[str, Any]
) -> None:
    ours = decided_like_rattler(solve(real_channel, request_), request_)
    if ours is None:
        return
    theirs = request_["solution"]
    requested = [MatchSpec.parse(s).name for s in request_["specs"]]
    for name in [*requested, "python"]:
        assert ours.get(name) == theirs.get(name), name
    # Not only what was asked for: the whole environment is rattler's.
    assert ours == theirs


@pytest.mark.parametrize("request_", GENERATED, ids=[_id(r) for r in GENERATED])
def test_every_request_decided_as_rattler_decides(
    generated_channel: Channels, request_: Mapping[str, Any]
) -> None:
    ours = decided_like_rattler(solve(generated_channel, request_), request_)
    if ours is None:
        return
    theirs = request_["solution"]
    requested = [MatchSpec.parse(s).name for s in request_["specs"]]
    if any(ours.get(n) != theirs.get(n) for n in [*requested, "python"]):
        # After conflicts the two searches can end in different valid solutions; then
        # lockenv's must be the better one by conda's order: the first requested name
        # (in the manifest's order) whose version differs is newer in lockenv's.
        assert _newer_first(ours, theirs, requested), (ours, theirs)


def _newer_first(ours: Mapping[str, str], theirs: Mapping[str, str], names: list[str]) -> bool:
    for name in names:
        mine = VersionOrder.parse(ours[name].split()[0])
        other = VersionOrder.parse(theirs[name].split()[0])
        if mine != other:
            return mine > other
    return False


SHARDED_CHECKS = (["r-essentials"], ["python 3.6.*", "matplotlib"], ["python 2.7.*", "numpy"])


def test_sharded_real_repodata_gives_the_same_answers(tmp_path: Path) -> None:
    # The same snapshot served only as CEP 16 shards: the same answers, read from the
    # shards the requests reach (fetched up front, concurrently).
    import shutil

    from fixtures.shard_channel import shard_channel

    channel = tmp_path / "sharded"
    shutil.copytree(FIXTURES / "real_repodata" / "defaults-2018", channel)
    shard_channel(channel)
    for subdir in ("linux-64", "win-64", "noarch"):
        (channel / subdir / "repodata.json.zst").unlink()
    channels = Channels(channel, tmp_path / "cache")
    checked = [r for r in REAL if r["specs"] in SHARDED_CHECKS and "solution" in r]
    assert len(checked) == len(SHARDED_CHECKS)
    for request in checked:
        records = channels.records(request["platform"])
        records.prefetch(MatchSpec.parse(s).name for s in request["specs"])
        assert solve(channels, request) == request["solution"]


def test_expectations_cover_both_outcomes() -> None:
    # The data is only a test if it holds both kinds of answer.
    assert sum("error" in r for r in REAL) >= 10
    assert sum("solution" in r for r in REAL) >= 400
    assert sum("error" in r for r in GENERATED) >= 10
    assert sum("solution" in r for r in GENERATED) >= 20
    assert "r-essentials" in {s for r in REAL for s in r["specs"]}
