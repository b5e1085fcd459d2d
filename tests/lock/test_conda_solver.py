"""The conda solver on small hand-made channels: conda's order, laziness, explanations.

(Real repodata and rattler's answers: test_conda_rattler.py; the engine alone:
test_conda_sat.py; whole locks on the fixture channel: test_resolve_conda.py.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from lockenv.errors import ResolutionError
from lockenv.lock.conda.matchspec import MatchSpec
from lockenv.lock.conda.order import order_builds
from lockenv.lock.conda.repodata import RepoRecord
from lockenv.lock.conda.solver import CondaSolver, Unsatisfiable, parse_spec, parse_version
from lockenv.platforms import VirtualPackage


def rec(
    name: str,
    version: str,
    build: str = "0",
    *,
    number: int = 0,
    depends: Sequence[str] = (),
    constrains: Sequence[str] = (),
    features: Sequence[str] = (),
    timestamp: int | None = None,
) -> RepoRecord:
    return RepoRecord(
        name=name,
        version=version,
        build=build,
        build_number=number,
        subdir="linux-64",
        filename=f"{name}-{version}-{build}.conda",
        url=f"https://example.invalid/linux-64/{name}-{version}-{build}.conda",
        channel="https://example.invalid",
        sha256=None,
        md5=None,
        size=None,
        depends=tuple(depends),
        constrains=tuple(constrains),
        track_features=tuple(features),
        timestamp=timestamp,
        noarch=None,
        license=None,
    )


class Records(Mapping[str, tuple[RepoRecord, ...]]):
    """Records by name that remember which names were read."""

    def __init__(self, records: Sequence[RepoRecord]) -> None:
        self.by_name: dict[str, tuple[RepoRecord, ...]] = {}
        for record in records:
            self.by_name[record.name] = (*self.by_name.get(record.name, ()), record)
        self.read: list[str] = []

    def __getitem__(self, name: str) -> tuple[RepoRecord, ...]:
        self.read.append(name)
        return self.by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)


def solve(
    records: Sequence[RepoRecord] | Records,
    *specs: str,
    virtual: Sequence[VirtualPackage] = (),
    **options: object,
) -> dict[str, str]:
    source = records if isinstance(records, Records) else Records(records)
    solver = CondaSolver(
        records=source,
        virtual_packages=virtual,
        direct=[MatchSpec.parse(s) for s in specs],
        platform="linux-64",
        **options,  # type: ignore[arg-type]
    )
    return {r.name: f"{r.version} {r.build}" for r in solver.solve()}


def versions_and_solver(
    records: Sequence[RepoRecord], *specs: str
) -> tuple[dict[str, str], CondaSolver]:
    """The versions solved, and the solver (to look at its search)."""
    solver = CondaSolver(
        records=Records(records),
        virtual_packages=(),
        direct=[MatchSpec.parse(s) for s in specs],
        platform="linux-64",
    )
    return {r.name: r.version for r in solver.solve()}, solver


def explain(records: Sequence[RepoRecord], *specs: str, **options: object) -> str:
    with pytest.raises(Unsatisfiable) as info:
        solve(records, *specs, **options)  # type: ignore[arg-type]
    message = info.value.explanation
    assert "\n" not in message
    return message


PYTHONS = [
    rec("python", "3.11.9", "h0", depends=["python_abi 3.11.* *_cp311"]),
    rec("python", "3.12.4", "h0", depends=["python_abi 3.12.* *_cp312"]),
    rec("python_abi", "3.11", "5_cp311"),
    rec("python_abi", "3.12", "5_cp312"),
]


# -- conda's order ---------------------------------------------------------------------


def _order(records: Sequence[RepoRecord], pool: Sequence[RepoRecord] = ()) -> list[str]:
    everything = Records([*records, *pool])

    def newest(spec: MatchSpec) -> tuple[bool, object] | None:
        found = [r for r in everything.by_name.get(spec.name, ()) if spec.matches(r)]
        if not found:
            return None
        best = max(found, key=lambda r: parse_version(r.version))
        return (bool(best.track_features), parse_version(best.version))

    ordered = order_builds(
        records,
        version_of=parse_version,
        parse_spec=parse_spec,
        newest=newest,  # type: ignore[arg-type]
    )
    return [f"{r.version} {r.build}" for r in ordered]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        # fewer track_features first, whatever the version
        (
            [rec("b", "2.0", "mkl", features=["mkl"]), rec("b", "1.0", "openblas")],
            ["1.0 openblas", "2.0 mkl"],
        ),
        # then the higher version (conda's version order: 1.10 > 1.9, 1.0 == 1.0.0)
        ([rec("b", "1.9", "0"), rec("b", "1.10", "0")], ["1.10 0", "1.9 0"]),
        # versions equal in conda's order are one version: the timestamp decides
        (
            [rec("b", "1.0", "old", timestamp=1), rec("b", "1.0.0", "new", timestamp=2)],
            ["1.0.0 new", "1.0 old"],
        ),
        # then the higher build number
        ([rec("b", "1.0", "a", number=1), rec("b", "1.0", "b", number=2)], ["1.0 b", "1.0 a"]),
        # then the newer timestamp, when dependencies do not tell them apart
        (
            [rec("b", "1.0", "old", timestamp=1), rec("b", "1.0", "new", timestamp=2)],
            ["1.0 new", "1.0 old"],
        ),
    ],
)
def test_order_of_builds(records: list[RepoRecord], expected: list[str]) -> None:
    assert _order(records) == expected


def test_build_allowing_the_newer_dependency_comes_first() -> None:
    # Same version and build number: the py312 build, which allows the newer python,
    # comes before the py311 one even though it is older.
    numpy = [
        rec("numpy", "1.26.4", "py312_0", depends=["python >=3.12,<3.13"], timestamp=1),
        rec("numpy", "1.26.4", "py311_0", depends=["python >=3.11,<3.12"], timestamp=2),
    ]
    assert _order(numpy, PYTHONS) == ["1.26.4 py312_0", "1.26.4 py311_0"]
    # Only names every build depends on count; then the timestamp decides.
    other = [
        rec("x", "1.0", "a", depends=["python >=3.12,<3.13"], timestamp=1),
        rec("x", "1.0", "b", depends=["zlib"], timestamp=2),
    ]
    assert _order(other, PYTHONS) == ["1.0 b", "1.0 a"]


def test_the_stricter_of_two_requirements_on_one_name_counts() -> None:
    builds = [
        rec("app", "1.0", "a", depends=["python", "python >=3.11,<3.12"], timestamp=2),
        rec("app", "1.0", "b", depends=["python", "python >=3.12,<3.13"], timestamp=1),
    ]
    assert _order(builds, PYTHONS) == ["1.0 b", "1.0 a"]


def test_whole_solution_follows_the_order() -> None:
    records = [
        *PYTHONS,
        rec("numpy", "1.26.4", "py311_0", depends=["python >=3.11,<3.12", "python_abi 3.11.*"]),
        rec("numpy", "1.26.4", "py312_0", depends=["python >=3.12,<3.13", "python_abi 3.12.*"]),
    ]
    assert solve(records, "numpy") == {
        "numpy": "1.26.4 py312_0",
        "python": "3.12.4 h0",
        "python_abi": "3.12 5_cp312",
    }
    # The requested names are decided first, in the manifest's order.
    assert solve(records, "python 3.11.*", "numpy")["numpy"] == "1.26.4 py311_0"


def test_track_features_only_when_asked() -> None:
    records = [
        rec("blas", "2.0", "mkl", features=["mkl"]),
        rec("blas", "1.0", "openblas"),
    ]
    assert solve(records, "blas") == {"blas": "1.0 openblas"}
    assert solve(records, "blas * mkl") == {"blas": "2.0 mkl"}


def test_locked_pins_are_tried_first_and_exclude_newer() -> None:
    records = [rec("z", "1.0", timestamp=100), rec("z", "2.0", timestamp=200)]
    assert solve(records, "z") == {"z": "2.0 0"}
    assert solve(records, "z", preferences={"z": "z-1.0-0.conda"}) == {"z": "1.0 0"}
    assert solve(records, "z", exclude_newer_ms=150) == {"z": "1.0 0"}


def test_constrains_limit_without_requiring() -> None:
    records = [
        rec("tool", "1.0", constrains=["lib <2"]),
        rec("lib", "1.0"),
        rec("lib", "2.0"),
    ]
    assert solve(records, "tool") == {"tool": "1.0 0"}
    assert solve(records, "tool", "lib") == {"tool": "1.0 0", "lib": "1.0 0"}


def test_conflict_deep_in_the_tree_is_learned_not_enumerated() -> None:
    # Every app build needs a lib that needs zlib 1; the manifest wants zlib 2: the
    # solver must go back to app's older versions, whose lib needs nothing.
    records = [rec("zlib", "1.0"), rec("zlib", "2.0")]
    for i in range(30):
        records.append(rec("lib", f"1.{i}", depends=["zlib 1.*"]))
    records.append(rec("lib", "0.1"))
    for i in range(30):
        records.append(rec("app", f"2.{i}", depends=["lib >=1"]))
    records.append(rec("app", "1.0", depends=["lib <1"]))
    assert solve(records, "zlib 2.*", "app") == {
        "zlib": "2.0 0",
        "app": "1.0 0",
        "lib": "0.1 0",
    }


def test_a_dependency_set_found_impossible_rules_out_every_build_requiring_it() -> None:
    # Every python 3.11 build needs libffi 3.4, whose builds need liblurikel 1, while
    # every libquoxy (decided after python) needs liblurikel 2.  The conflict is learned
    # about what the Python builds share, "one of the builds libffi >=3.4 admits", not
    # about the Python build decided: 2 conflicts, where learning "not this build"
    # took 200 (40 Python builds, each with each libquoxy build).
    records = [rec("liblurikel", "1.0"), rec("liblurikel", "2.0")]
    records += [rec("libquoxy", f"1.{i}", depends=["liblurikel 2.*"]) for i in range(5)]
    records += [rec("libffi", f"3.4.{i}", depends=["liblurikel 1.*"]) for i in range(2)]
    records += [rec("libffi", "3.3")]
    records += [
        rec("python", "3.11.0", f"h{i}", number=i, depends=["libffi >=3.4,<4"]) for i in range(40)
    ]
    records += [rec("python", "3.10.0", "h0", depends=["libffi 3.3.*"])]
    solved, solver = versions_and_solver(records, "python", "libquoxy")
    assert solved == {
        "python": "3.10.0",
        "libffi": "3.3",
        "libquoxy": "1.4",
        "liblurikel": "2.0",
    }
    assert solver.engine.conflicts <= 3


def test_two_dependency_sets_found_incompatible_rule_out_every_build_requiring_both() -> None:
    # Every app 2.x build (for each Python) needs liba >=1 and libb >=1, whose builds need
    # zlib 1 and zlib 2.  Each app build fails through those two requirements, not through
    # itself: the conflict is learned over the two sets of builds they admit, and every
    # other app build requiring both is ruled out without being tried (the old learning,
    # "not this build", took one conflict per app build: 21).
    records = [*PYTHONS, rec("zlib", "1.0"), rec("zlib", "2.0")]
    records += [rec("liba", f"1.{i}", depends=["zlib 1.*"]) for i in range(3)]
    records += [rec("libb", f"1.{i}", depends=["zlib 2.*"]) for i in range(3)]
    records += [rec("liba", "0.9"), rec("libb", "0.9")]
    records += [
        rec(
            "app",
            f"2.{i}",
            f"py3{minor}_0",
            depends=[f"python 3.{minor}.*", "liba >=1", "libb >=1"],
        )
        for i in range(20)
        for minor in (11, 12)
    ]
    records.append(rec("app", "1.0", depends=["liba <1"]))
    solved, solver = versions_and_solver(records, "python", "app")
    assert solved == {"python": "3.12.4", "python_abi": "3.12", "app": "1.0", "liba": "0.9"}
    assert solver.engine.conflicts <= 3
    # The clause learned: "not both of those sets", over the two requirements' variables.
    (cut,) = [cut for cuts in solver.engine.cuts.values() for _, cut in cuts]
    assert sorted(solver._need_of[lit >> 1][0].name for lit in cut) == ["liba", "libb"]


def test_only_reachable_names_are_read() -> None:
    records = Records(
        [
            rec("a", "1.0", depends=["b"]),
            rec("b", "1.0"),
            rec("unrelated", "1.0", depends=["b"]),
            rec("c", "1.0", constrains=["unrelated <1"]),
        ]
    )
    solve(records, "a", "c")
    assert set(records.read) == {"a", "b", "c"}  # constrains alone read nothing


def test_the_cyclic_garbage_collector_is_off_while_records_are_read() -> None:
    import gc

    seen: list[bool] = []

    class Watched(Records):
        def __getitem__(self, name: str) -> tuple[RepoRecord, ...]:
            seen.append(gc.isenabled())
            return super().__getitem__(name)

    assert gc.isenabled()
    solve(Watched([rec("a", "1.0", depends=["b"]), rec("b", "1.0")]), "a")
    assert seen == [False, False] and gc.isenabled()


def test_virtual_packages() -> None:
    records = [rec("cudatool", "12.0", depends=["__cuda >=12"]), rec("cudatool", "11.0")]
    cuda = VirtualPackage(name="__cuda", version="12.2", build="0")
    assert solve(records, "cudatool", virtual=[cuda]) == {"cudatool": "12.0 0"}
    assert solve(records, "cudatool") == {"cudatool": "11.0 0"}


# -- explanations ----------------------------------------------------------------------


def test_explains_a_missing_or_unmatched_package() -> None:
    records = [rec("numpy", "1.26.4"), rec("numpy", "2.0.0")]
    assert explain(records, "nothere") == (
        "the manifest asks for 'nothere' (no package named 'nothere' in the channels)"
    )
    assert explain(records, "numpy >=9") == (
        "the manifest asks for 'numpy >=9' (available versions: 1.26.4, 2.0.0)"
    )


def test_explains_a_conflict_with_the_chain_and_the_other_builds() -> None:
    records = [*PYTHONS, rec("python", "3.10.14", "h0")]
    for minor in (11, 12):
        for patch in range(3):
            records.append(
                rec(
                    "numpy",
                    f"2.{patch}.0",
                    f"py3{minor}_0",
                    depends=[f"python >=3.{minor},<3.{minor + 1}"],
                )
            )
    message = explain(records, "python 3.10.*", "numpy >=2")
    assert message.startswith("these requirements conflict: the manifest asks for ")
    assert "the manifest asks for 'python 3.10.*';" in message
    assert "the manifest asks for 'numpy >=2' -> numpy 2.2.0 requires " in message
    assert "(as do 5 more numpy builds, with " in message


def test_explanation_leaves_out_what_the_conflict_does_not_need() -> None:
    records = [
        rec("web", "1.0", depends=["tls >=3", "log"]),
        rec("log", "1.0", depends=["fmt"]),
        rec("fmt", "1.0"),
        rec("tls", "1.1"),
        rec("tls", "3.0"),
    ]
    message = explain(records, "log", "web", "tls <2")
    assert "fmt" not in message and "'log'" not in message
    assert "the manifest asks for 'tls <2'" in message
    assert "the manifest asks for 'web' -> web 1.0 requires 'tls >=3'" in message


def test_broken_dependency_string_is_named() -> None:
    records = [rec("bad", "1.0", depends=["not a valid >>> spec"])]
    with pytest.raises(ResolutionError, match=r"bad-1\.0-0\.conda .* invalid dependency"):
        solve(records, "bad")
