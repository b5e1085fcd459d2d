"""Generate a large synthetic conda channel (repodata only) shaped like conda-forge.

    python benchmarks/gen_channel.py OUT_DIR [--seed 7] [--scale 1.0]

Writes ``OUT_DIR/<subdir>/repodata.json`` and ``repodata.json.zst`` for linux-64,
osx-arm64, win-64 and noarch: no package files (solvers only read repodata).  The same
seed and scale give byte-identical files.  At scale 1.0 there are about 2,500 package
names and 150k+ records:

- a hand-made core: ``python`` (cpython builds, pypy builds with ``track_features``),
  ``python_abi``, the compiler runtimes (``libgcc``/``libstdcxx`` on linux, ``libcxx`` on
  osx, ``ucrt``/``vc``/``vc14_runtime`` on win), ``openssl``, ``libzlib``, ``numpy`` with
  BLAS variants (``libblas *_openblas`` / ``*_mkl``, the mkl one with ``track_features``),
  ``pip``/``setuptools``/``wheel``, ``ca-certificates``, ``tzdata``;
- C libraries depending on 0-8 others through run_exports-style pins
  (``libzlib >=1.2.13,<2.0a0``), rebuilt by "migrations" so the newest builds of all
  packages agree, older builds pinning older ABIs;
- compiled Python packages built per Python minor (``python >=3.12,<3.13.0a0``,
  ``python_abi 3.12.* *_cp312``), some depending on numpy;
- ``noarch: python`` packages with lower-bound (sometimes capped) requirements, a few
  with ``__unix`` / ``__win`` variants; ``constrains`` on some packages.

Every record has well-formed but fake ``sha256``, ``md5``, ``size`` and ``timestamp``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ARCH_SUBDIRS = ("linux-64", "osx-arm64", "win-64")
SUBDIRS = (*ARCH_SUBDIRS, "noarch")
EPOCHS = 12  # time steps of the channel's history
MIGRATIONS = (3, 6, 9, EPOCHS - 1)  # epochs at which the newest version of everything is rebuilt
_T0_MS = 1_546_300_800_000  # 2019-01-01
_EPOCH_MS = 120 * 86_400_000
# Python minors and the epoch each appeared; packages build for the newest four.
PY_MINORS = {8: 0, 9: 0, 10: 2, 11: 5, 12: 8, 13: 10}
PYPY_MINORS = (9, 10)

_SYLLABLES = (
    "ar",
    "be",
    "co",
    "da",
    "el",
    "fa",
    "ge",
    "hi",
    "io",
    "ka",
    "lu",
    "mo",
    "ne",
    "or",
    "pa",
    "qu",
    "ri",
    "sa",
    "te",
    "ul",
    "va",
    "wo",
    "xy",
    "ze",
    "bri",
    "cla",
    "dro",
    "fen",
    "gli",
    "hor",
    "jas",
    "kel",
    "lom",
    "mir",
    "nox",
    "pyr",
    "quo",
    "ros",
    "sty",
    "tor",
    "urn",
    "vex",
    "wyn",
    "zel",
)


@dataclass(slots=True)
class Pkg:
    name: str
    kind: str  # clib | pyext | noarch | generic
    subdirs: set[str]
    versions: list[tuple[str, int]]  # (version, release epoch), oldest first
    pin: str = "x.x"  # how dependents pin it: x | x.x | x.x.x
    deps: list[str] = field(default_factory=list)
    extra_depends: dict[str, list[str]] = field(default_factory=dict)  # per subdir
    constrains: list[str] = field(default_factory=list)
    runtime: bool = True  # gets the compiler runtime deps of its subdir
    popularity: int = 1


def _fake_digest(algo: str, text: str) -> str:
    return hashlib.new(algo, text.encode()).hexdigest()


def _version_series(rng: random.Random, count: int, *, major: int | None = None) -> list[str]:
    parts = [
        major if major is not None else rng.choice((0, 0, 1, 1, 1, 2, 3)),
        rng.randint(0, 9),
        0,
    ]
    out = []
    for _ in range(count):
        out.append(".".join(map(str, parts)))
        roll = rng.random()
        if roll < 0.68:
            parts[2] += 1
        elif roll < 0.95:
            parts[1] += 1
            parts[2] = 0
        else:
            parts = [parts[0] + 1, 0, 0]
    return out


def _spread(rng: random.Random, versions: list[str], first_epoch: int = 0) -> list[tuple[str, int]]:
    epochs = sorted(rng.randint(first_epoch, EPOCHS - 1) for _ in versions)
    return list(zip(versions, epochs, strict=True))


def _parts(version: str) -> list[int]:
    return [int(p) if p.isdigit() else 0 for p in version.split(".")[:3]] + [0, 0, 0]


def _pin(name: str, version: str, style: str) -> str:
    major, minor, patch = _parts(version)[:3]
    if style == "x":
        upper = f"{major + 1}.0a0"
    elif style == "x.x.x":
        upper = f"{major}.{minor}.{patch + 1}.0a0"
    else:
        upper = f"{major}.{minor + 1}.0a0"
    return f"{name} >={version},<{upper}"


class Channel:
    """The packages of the synthetic channel and how to turn them into records."""

    def __init__(self, seed: int, scale: float) -> None:
        self.rng = random.Random(seed)
        self.scale = scale
        self.pkgs: dict[str, Pkg] = {}
        self.order: list[str] = []
        self.records: dict[str, dict[str, dict[str, object]]] = {s: {} for s in SUBDIRS}
        self.bz2: dict[str, dict[str, dict[str, object]]] = {s: {} for s in SUBDIRS}

    # -- the package graph -------------------------------------------------------------

    def add(self, pkg: Pkg) -> Pkg:
        assert pkg.name not in self.pkgs, pkg.name
        if "noarch" not in pkg.subdirs and pkg.name != "python":
            # A package exists on a subdir only if its architecture-specific deps do;
            # runtimes are platform-specific by design (python skips what a platform lacks).
            for dep in pkg.deps:
                target = self.pkgs[dep]
                if "noarch" not in target.subdirs and target.runtime:
                    pkg.subdirs &= target.subdirs
        self.pkgs[pkg.name] = pkg
        self.order.append(pkg.name)
        return pkg

    def latest_at(self, name: str, epoch: int) -> str:
        versions = self.pkgs[name].versions
        found = versions[0][0]
        for version, released in versions:
            if released <= epoch:
                found = version
        return found

    def unique_name(self, prefix: str, suffix: str = "") -> str:
        rng = self.rng
        while True:
            stem = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))
            name = f"{prefix}{stem}{suffix}"
            if name not in self.pkgs:
                return name

    def build_graph(self) -> None:
        rng = self.rng

        def n(count: int) -> int:
            return max(1, round(count * self.scale))

        all_arch = set(ARCH_SUBDIRS)
        # Compiler runtimes: no runtime deps of their own.
        gcc = _spread(rng, [f"{m}.{k}.0" for m in range(9, 15) for k in (1, 2, 3)])
        self.add(
            Pkg(
                name="_libgcc_mutex",
                kind="clib",
                subdirs={"linux-64"},
                versions=[("0.1", 0)],
                runtime=False,
            )
        )
        for name in ("libgcc", "libgomp", "libstdcxx", "libgfortran5"):
            self.add(
                Pkg(
                    name=name,
                    kind="clib",
                    subdirs={"linux-64"},
                    versions=gcc,
                    pin="x",
                    runtime=False,
                    deps=["_libgcc_mutex"] if name == "libgcc" else [],
                )
            )
        self.add(
            Pkg(
                name="libgcc-ng",
                kind="clib",
                subdirs={"linux-64"},
                versions=gcc,
                pin="x",
                runtime=False,
                deps=["libgcc"],
            )
        )
        self.add(
            Pkg(
                name="libstdcxx-ng",
                kind="clib",
                subdirs={"linux-64"},
                versions=gcc,
                pin="x",
                runtime=False,
                deps=["libstdcxx"],
            )
        )
        self.add(
            Pkg(
                name="libcxx",
                kind="clib",
                subdirs={"osx-arm64"},
                versions=_spread(rng, [f"{m}.0.{k}" for m in range(12, 20) for k in range(4)]),
                pin="x",
                runtime=False,
            )
        )
        self.add(
            Pkg(
                name="ucrt",
                kind="clib",
                subdirs={"win-64"},
                versions=[("10.0.20348.0", 0), ("10.0.22621.0", 7)],
                pin="x",
                runtime=False,
            )
        )
        vc_runtime = _spread(
            rng, [f"14.{m}.{30000 + 100 * k}" for m in range(29, 43) for k in range(3)]
        )
        self.add(
            Pkg(
                name="vc14_runtime",
                kind="clib",
                subdirs={"win-64"},
                versions=vc_runtime,
                pin="x",
                runtime=False,
                deps=["ucrt"],
            )
        )
        self.add(
            Pkg(
                name="vc",
                kind="clib",
                subdirs={"win-64"},
                versions=[("14.2", 0), ("14.3", 4)],
                pin="x",
                runtime=False,
                deps=["vc14_runtime"],
            )
        )
        self.add(
            Pkg(
                name="vs2015_runtime",
                kind="clib",
                subdirs={"win-64"},
                versions=vc_runtime,
                pin="x",
                runtime=False,
                deps=["vc14_runtime"],
            )
        )
        self.add(
            Pkg(
                name="ld_impl_linux-64",
                kind="clib",
                subdirs={"linux-64"},
                versions=_spread(rng, [f"2.{m}" for m in range(35, 45)]),
                pin="x",
                runtime=False,
            )
        )
        # The libraries python itself needs.
        core = {
            "libzlib": ("x", ["1.2.11", "1.2.12", "1.2.13", "1.3", "1.3.1"]),
            "bzip2": ("x", ["1.0.8"]),
            "liblzma": ("x", [f"5.{m}.{k}" for m in (4, 6, 8) for k in range(4)]),
            "libffi": ("x.x", ["3.4.2", "3.4.4", "3.4.6", "3.5.0"]),
            "libexpat": ("x", [f"2.{m}.{k}" for m in (5, 6, 7) for k in range(4)]),
            "libsqlite": ("x", [f"3.{m}.{k}" for m in range(40, 50) for k in range(3)]),
            "ncurses": ("x.x", ["6.3", "6.4", "6.5"]),
            "readline": ("x", ["8.1", "8.1.2", "8.2", "8.3"]),
            "tk": ("x.x", ["8.6.12", "8.6.13", "8.6.14"]),
            "libuuid": ("x", ["2.32.1", "2.38.1", "2.40.1"]),
            "libnsl": ("x.x.x", ["2.0.0", "2.0.1"]),
            "openssl": ("x", [f"3.{m}.{k}" for m in range(6) for k in range(6)]),
        }
        for name, (pin, versions) in core.items():
            subdirs = {"linux-64"} if name in ("libuuid", "libnsl") else set(all_arch)
            if name == "readline":
                subdirs.discard("win-64")
            core_deps = {"libsqlite": ["libzlib"], "readline": ["ncurses"], "tk": ["libzlib"]}
            self.add(
                Pkg(
                    name=name,
                    kind="clib",
                    subdirs=subdirs,
                    versions=_spread(rng, versions),
                    pin=pin,
                    deps=core_deps.get(name, []),
                    popularity=30,
                )
            )
        self.add(
            Pkg(
                name="zlib",
                kind="clib",
                subdirs=set(all_arch),
                versions=self.pkgs["libzlib"].versions,
                pin="x",
                deps=["libzlib"],
            )
        )
        self.add(
            Pkg(
                name="xz",
                kind="clib",
                subdirs=set(all_arch),
                versions=self.pkgs["liblzma"].versions,
                pin="x",
                deps=["liblzma"],
            )
        )
        self.add(
            Pkg(
                name="ca-certificates",
                kind="generic",
                subdirs={"noarch"},
                versions=_spread(rng, [f"2024.{m}.{d}" for m in range(1, 13) for d in (2, 16)]),
                popularity=30,
            )
        )
        self.add(
            Pkg(
                name="tzdata",
                kind="generic",
                subdirs={"noarch"},
                versions=_spread(rng, [f"202{y}{c}" for y in range(5) for c in "abcde"]),
            )
        )
        self.pkgs["openssl"].deps = ["ca-certificates"]
        self.pkgs["libzlib"].constrains = ["zlib {version} *_{bn}"]
        # python, python_abi: special builds (see _python_records).
        py_versions = []
        for minor, epoch in PY_MINORS.items():
            for patch in range(0, 10):
                py_versions.append((f"3.{minor}.{patch}", min(EPOCHS - 1, epoch + patch // 2)))
        py_versions.sort(key=lambda item: (item[1], _parts(item[0])))
        self.add(
            Pkg(
                name="python",
                kind="python",
                subdirs=set(all_arch),
                versions=py_versions,
                deps=[
                    "bzip2",
                    "libexpat",
                    "libffi",
                    "liblzma",
                    "libsqlite",
                    "libzlib",
                    "ncurses",
                    "openssl",
                    "readline",
                    "tk",
                    "libuuid",
                    "libnsl",
                    "ld_impl_linux-64",
                ],
                popularity=100,
            )
        )
        self.add(
            Pkg(
                name="python_abi",
                kind="python_abi",
                subdirs=set(all_arch),
                versions=[(f"3.{m}", e) for m, e in PY_MINORS.items()],
            )
        )
        for name, count in (("pip", 40), ("setuptools", 60), ("wheel", 15), ("packaging", 20)):
            self.add(
                Pkg(
                    name=name,
                    kind="noarch",
                    subdirs={"noarch"},
                    versions=_spread(rng, _version_series(rng, count, major=rng.randint(20, 60))),
                    popularity=60,
                )
            )
        self.pkgs["pip"].deps = ["setuptools", "wheel"]
        # BLAS: openblas and mkl variants of libblas, and the libraries behind them.
        self.add(
            Pkg(
                name="libopenblas",
                kind="clib",
                subdirs=set(all_arch),
                versions=_spread(rng, [f"0.3.{k}" for k in range(18, 30)]),
                pin="x.x.x",
                deps=["libgfortran5", "libgomp"],
                popularity=20,
            )
        )
        self.add(
            Pkg(
                name="mkl",
                kind="clib",
                subdirs={"linux-64", "win-64"},
                versions=_spread(rng, [f"202{y}.{k}.0" for y in range(1, 6) for k in range(3)]),
                pin="x",
                popularity=20,
            )
        )
        self.add(Pkg(name="blas", kind="generic", subdirs={"noarch"}, versions=[("2.0", 0)]))
        blas_versions = [("3.9.0", 0)]
        for name in ("libblas", "libcblas", "liblapack"):
            self.add(
                Pkg(
                    name=name,
                    kind="blas",
                    subdirs=set(all_arch),
                    versions=blas_versions,
                    pin="x",
                    deps=["libblas"] if name != "libblas" else [],
                    popularity=40,
                )
            )
        numpy_versions = [f"1.{m}.{k}" for m in range(21, 27) for k in range(5)]
        numpy_versions += [f"2.{m}.{k}" for m in range(3) for k in range(4)]
        self.add(
            Pkg(
                name="numpy",
                kind="pyext",
                subdirs=set(all_arch),
                versions=_spread(rng, numpy_versions),
                pin="x",
                deps=["libblas", "libcblas", "liblapack"],
                constrains=["numpy-base <0a0"],
                popularity=100,
            )
        )

        # Generic C libraries: each depends on 0-8 earlier ones (a DAG).
        clibs: list[str] = [
            name
            for name, p in self.pkgs.items()
            if p.kind == "clib" and p.runtime and p.subdirs == all_arch
        ]
        for _ in range(n(560)):
            name = self.unique_name("lib")
            subdirs = set(all_arch)
            popularity = 1 + int(rng.paretovariate(1.6))
            if popularity == 1 and rng.random() < 0.15:
                subdirs.discard("win-64")  # a few niche libraries do not build on Windows
            count = min(60, 3 + popularity * rng.randint(2, 6))
            pkg = self.add(
                Pkg(
                    name=name,
                    kind="clib",
                    subdirs=subdirs,
                    versions=_spread(rng, _version_series(rng, count)),
                    pin=rng.choice(("x", "x.x", "x.x", "x.x.x")),
                    deps=self._pick(clibs, rng.randint(0, 8), bias=True),
                    popularity=popularity,
                )
            )
            if rng.random() < 0.05:
                pkg.constrains = [f"{self.unique_name('', '-compat')} >={rng.randint(1, 3)}"]
            clibs.append(name)
        # Compiled python packages (and noarch python packages, interleaved so both can
        # depend on each other in a DAG).
        pyexts: list[str] = ["numpy"]
        noarchs: list[str] = ["packaging", "setuptools"]
        for i in range(n(2000)):
            if i % 4 == 0:
                name = self.unique_name("py" if rng.random() < 0.3 else "")
                popularity = 1 + int(rng.paretovariate(1.5))
                count = min(50, 2 + popularity * rng.randint(2, 5))
                deps = self._pick(clibs, rng.randint(0, 4), bias=True)
                if rng.random() < 0.35:
                    deps.append("numpy")
                deps += self._pick(pyexts, rng.randint(0, 2), bias=True)
                deps += self._pick(noarchs, rng.randint(0, 3), bias=True)
                pkg = self.add(
                    Pkg(
                        name=name,
                        kind="pyext",
                        subdirs=set(all_arch),
                        versions=_spread(rng, _version_series(rng, count)),
                        pin="x",
                        deps=list(dict.fromkeys(deps)),
                        popularity=popularity,
                    )
                )
                pyexts.append(name)
            else:
                name = self.unique_name("")
                popularity = 1 + int(rng.paretovariate(1.5))
                count = min(60, 2 + popularity * rng.randint(2, 6))
                deps = self._pick(noarchs, rng.randint(0, 6), bias=True)
                if rng.random() < 0.15:
                    everywhere = [p for p in pyexts if self.pkgs[p].subdirs == all_arch]
                    deps += self._pick(everywhere, 1, bias=True)
                pkg = self.add(
                    Pkg(
                        name=name,
                        kind="noarch",
                        subdirs={"noarch"},
                        versions=_spread(rng, _version_series(rng, count)),
                        deps=list(dict.fromkeys(deps)),
                        popularity=popularity,
                    )
                )
                noarchs.append(name)
            if rng.random() < 0.06 and pkg.deps:
                optional = rng.choice(pkg.deps)
                pkg.constrains = [f"{optional} >={self.pkgs[optional].versions[0][0]}"]

    def _pick(self, pool: list[str], count: int, *, bias: bool) -> list[str]:
        if not pool or count <= 0:
            return []
        rng = self.rng
        weights = [self.pkgs[name].popularity for name in pool] if bias else None
        return list(dict.fromkeys(rng.choices(pool, weights=weights, k=count)))

    # -- records -----------------------------------------------------------------------

    def generate(self) -> None:
        for name in self.order:
            pkg = self.pkgs[name]
            kind = pkg.kind
            if kind == "python":
                self._python_records(pkg)
            elif kind == "python_abi":
                self._python_abi_records(pkg)
            elif kind in ("noarch", "generic"):
                self._noarch_records(pkg)
            elif kind == "blas":
                self._blas_records(pkg)
            else:
                self._arch_records(pkg)

    def _emit(self, subdir: str, record: dict[str, object], epoch: int) -> None:
        name, version, build = record["name"], record["version"], record["build"]
        rng = self.rng
        record["subdir"] = subdir
        record["timestamp"] = _T0_MS + epoch * _EPOCH_MS + rng.randint(0, _EPOCH_MS - 1)
        licenses = ("MIT", "BSD-3-Clause", "Apache-2.0", "LGPL-2.1")
        record.setdefault("license", licenses[int(_fake_digest("md5", str(name))[:4], 16) % 4])
        record.setdefault("build_number", 0)
        depends = record.get("depends", [])
        assert isinstance(depends, list)
        record["depends"] = sorted(set(depends))
        stem = f"{name}-{version}-{build}"
        record["size"] = rng.randint(4_000, 40_000_000)
        ordered = {k: record[k] for k in sorted(record)}
        # Old packages exist only as .tar.bz2; a middle period has both, as conda-forge does.
        if epoch < 3 or epoch == 4:
            fn = f"{stem}.tar.bz2"
            self.bz2[subdir][fn] = self._with_hashes(ordered, subdir, fn)
        if epoch >= 3:
            fn = f"{stem}.conda"
            self.records[subdir][fn] = self._with_hashes(ordered, subdir, fn)

    @staticmethod
    def _with_hashes(record: dict[str, object], subdir: str, fn: str) -> dict[str, object]:
        out = dict(record)
        out["md5"] = _fake_digest("md5", f"{subdir}/{fn}")
        out["sha256"] = _fake_digest("sha256", f"{subdir}/{fn}")
        return {k: out[k] for k in sorted(out)}

    def _runtime(self, subdir: str, epoch: int) -> list[str]:
        if subdir == "linux-64":
            gcc = self.latest_at("libgcc", epoch).split(".")[0]
            return [f"libgcc >={gcc}", "__glibc >=2.17,<3.0.a0"]
        if subdir == "osx-arm64":
            return [f"libcxx >={self.latest_at('libcxx', epoch).split('.')[0]}", "__osx >=11.0"]
        vc = self.latest_at("vc14_runtime", epoch)
        return ["ucrt >=10.0.20348.0", "vc >=14.2,<15", f"vc14_runtime >={vc}"]

    def _dep_specs(self, pkg: Pkg, subdir: str, epoch: int, version_index: int) -> list[str]:
        out = []
        rng = random.Random(f"{pkg.name}/{version_index}")  # stable across builds of one version
        for dep in pkg.deps:
            target = self.pkgs[dep]
            if subdir != "noarch" and subdir not in target.subdirs | {"noarch"}:
                continue
            latest = self.latest_at(dep, epoch)
            if target.kind in ("clib", "blas"):
                out.append(_pin(dep, latest, target.pin))
            elif target.kind == "pyext" and pkg.kind == "pyext":
                major = _parts(latest)[0]
                out.append(f"{dep} >={latest},<{major + 1}.0a0")
            else:
                released = [v for v, e in target.versions if e <= epoch] or [target.versions[0][0]]
                low = released[rng.randint(0, len(released) - 1)]
                if rng.random() < 0.1:
                    out.append(f"{dep} >={low},<{_parts(latest)[0] + 1}")
                else:
                    out.append(f"{dep} >={low}")
        return out

    def _arch_records(self, pkg: Pkg) -> None:
        builds: dict[int, list[tuple[int, int]]] = {}  # version index -> [(epoch, build_number)]
        for i, (_, released) in enumerate(pkg.versions):
            builds[i] = [(released, 0)]
            if pkg.popularity >= 30 and released < EPOCHS - 1:
                builds[i].append((released + 1, 1))  # popular packages get fix-up rebuilds
        for migration in MIGRATIONS:
            newest = max(
                (i for i, (_, e) in enumerate(pkg.versions) if e <= migration), default=None
            )
            if newest is not None and builds[newest][-1][0] < migration:
                builds[newest].append((migration, builds[newest][-1][1] + 1))
        for i, (version, _) in enumerate(pkg.versions):
            for epoch, bn in builds[i]:
                for subdir in sorted(pkg.subdirs):
                    deps = self._dep_specs(pkg, subdir, epoch, i)
                    if pkg.runtime:
                        deps += self._runtime(subdir, epoch)
                    constrains = [c.format(version=version, bn=bn) for c in pkg.constrains]
                    if pkg.kind == "pyext":
                        for minor in self._pythons(epoch):
                            py = [
                                f"python >=3.{minor},<3.{minor + 1}.0a0",
                                f"python_abi 3.{minor}.* *_cp3{minor}",
                            ]
                            build = f"py3{minor}h{self._hash(deps, subdir)}_{bn}"
                            self._emit(
                                subdir,
                                {
                                    "name": pkg.name,
                                    "version": version,
                                    "build": build,
                                    "build_number": bn,
                                    "depends": deps + py,
                                    **({"constrains": constrains} if constrains else {}),
                                },
                                epoch,
                            )
                    else:
                        build = f"h{self._hash(deps, subdir)}_{bn}"
                        record: dict[str, object] = {
                            "name": pkg.name,
                            "version": version,
                            "build": build,
                            "build_number": bn,
                            "depends": deps,
                        }
                        if constrains:
                            record["constrains"] = constrains
                        self._emit(subdir, record, epoch)

    @staticmethod
    def _pythons(epoch: int) -> list[int]:
        return [m for m, e in PY_MINORS.items() if e <= epoch][-4:]

    @staticmethod
    def _hash(deps: Iterable[str], subdir: str) -> str:
        return _fake_digest("sha1", subdir + "|".join(sorted(deps)))[:7]

    def _python_records(self, pkg: Pkg) -> None:
        for i, (version, released) in enumerate(pkg.versions):
            minor = int(version.split(".")[1])
            rebuilds = [(m, k + 1) for k, m in enumerate(m for m in MIGRATIONS if m > released)]
            numbers = [(released, 0), *rebuilds[:2]]
            for epoch, bn in numbers:
                for subdir in sorted(pkg.subdirs):
                    deps = self._dep_specs(pkg, subdir, epoch, i) + self._runtime(subdir, epoch)
                    deps += [f"python_abi 3.{minor}.* *_cp3{minor}", "tzdata"]
                    self._emit(
                        subdir,
                        {
                            "name": "python",
                            "version": version,
                            "build": f"h{self._hash(deps, subdir)}_{bn}_cpython",
                            "build_number": bn,
                            "depends": deps,
                        },
                        epoch,
                    )
                    if minor in PYPY_MINORS and subdir != "win-64":
                        pypy = [d for d in deps if not d.startswith("python_abi")]
                        pypy.append(f"python_abi 3.{minor}.* *_pypy3{minor}_pp73")
                        self._emit(
                            subdir,
                            {
                                "name": "python",
                                "version": version,
                                "build": f"{bn}_73_pypy",
                                "build_number": bn,
                                "depends": pypy,
                                "track_features": "pypy",
                            },
                            epoch,
                        )

    def _python_abi_records(self, pkg: Pkg) -> None:
        for version, released in pkg.versions:
            minor = int(version.split(".")[1])
            for subdir in sorted(pkg.subdirs):
                for bn in range(3, 8):
                    self._emit(
                        subdir,
                        {
                            "name": "python_abi",
                            "version": version,
                            "build": f"{bn}_cp3{minor}",
                            "build_number": bn,
                            "constrains": [f"python 3.{minor}.* *_cpython"],
                        },
                        min(EPOCHS - 1, released + bn - 3),
                    )
                if minor in PYPY_MINORS and subdir != "win-64":
                    self._emit(
                        subdir,
                        {
                            "name": "python_abi",
                            "version": version,
                            "build": f"4_pypy3{minor}_pp73",
                            "build_number": 4,
                            "constrains": [f"python 3.{minor}.* *_73_pypy"],
                            "track_features": "pypy",
                        },
                        released,
                    )

    def _blas_records(self, pkg: Pkg) -> None:
        version = pkg.versions[0][0]
        for bn in range(14, 30):
            epoch = min(EPOCHS - 1, (bn - 14) * EPOCHS // 16)
            for subdir in sorted(pkg.subdirs):
                for impl in ("openblas", "mkl"):
                    if impl == "mkl" and subdir == "osx-arm64":
                        continue
                    lib = "libopenblas" if impl == "openblas" else "mkl"
                    if pkg.name == "libblas":
                        deps = [_pin(lib, self.latest_at(lib, epoch), self.pkgs[lib].pin)]
                    else:
                        deps = [f"libblas {version} {bn}_*_{impl}"]
                    build = f"{bn}_h{self._hash(deps, subdir)}_{impl}"
                    record: dict[str, object] = {
                        "name": pkg.name,
                        "version": version,
                        "build": build,
                        "build_number": bn,
                        "depends": deps,
                    }
                    if pkg.name == "libblas":
                        record["constrains"] = [
                            f"libcblas {version} {bn}_*_{impl}",
                            f"liblapack {version} {bn}_*_{impl}",
                            f"blas * {impl}",
                        ]
                    if impl == "mkl":
                        record["track_features"] = "blas_mkl"
                    self._emit(subdir, record, epoch)

    def _noarch_records(self, pkg: Pkg) -> None:
        rng = self.rng
        split = pkg.kind == "noarch" and rng.random() < 0.08
        for i, (version, released) in enumerate(pkg.versions):
            deps = self._dep_specs(pkg, "noarch", released, i)
            record: dict[str, object] = {"name": pkg.name, "version": version, "build_number": 0}
            if pkg.kind == "noarch":
                oldest = self._pythons(released)[0]
                deps.append(f"python >=3.{oldest}")
                record["noarch"] = "python"
            else:
                record["noarch"] = "generic"
            variants = [("", [])] if not split else [("_unix", ["__unix"]), ("_win", ["__win"])]
            for tag, extra in variants:
                suffix = "pyh" if pkg.kind == "noarch" else "h"
                build = f"{suffix}{self._hash(deps + extra + [tag], 'noarch')}_0"
                self._emit("noarch", {**record, "build": build, "depends": deps + extra}, released)

    # -- output ------------------------------------------------------------------------

    def write(self, out: Path) -> dict[str, int]:
        import zstandard

        counts = {}
        for subdir in SUBDIRS:
            directory = out / subdir
            directory.mkdir(parents=True, exist_ok=True)
            document = {
                "info": {"subdir": subdir},
                "packages": dict(sorted(self.bz2[subdir].items())),
                "packages.conda": dict(sorted(self.records[subdir].items())),
                "removed": [],
                "repodata_version": 1,
            }
            data = json.dumps(document, separators=(",", ":")).encode()
            (directory / "repodata.json").write_bytes(data)
            compressed = zstandard.ZstdCompressor(level=9).compress(data)
            (directory / "repodata.json.zst").write_bytes(compressed)
            counts[subdir] = len(self.bz2[subdir]) + len(self.records[subdir])
        return counts


def benchmark_specs(seed: int = 7, scale: float = 1.0) -> list[tuple[str, str]]:
    """20 (name, version spec) pairs for a solver benchmark on the channel of ``seed``.

    The core four, then the most depended-on generated names (compiled, noarch, C
    libraries) that exist on every platform, with a mix of spec forms.
    """
    channel = Channel(seed, scale)
    channel.build_graph()
    pkgs = channel.pkgs
    specs = [("python", "3.12.*"), ("numpy", ">=1.26"), ("openssl", ">=3.1"), ("libzlib", "*")]
    used = {name for name, _ in specs}
    fan_in: dict[str, int] = {}
    for pkg in pkgs.values():
        for dep in pkg.deps:
            fan_in[dep] = fan_in.get(dep, 0) + 1
    for kind, count in (("pyext", 6), ("noarch", 6), ("clib", 4)):
        ranked = sorted(
            (
                p
                for p in pkgs.values()
                if p.kind == kind
                and p.name not in used
                and p.runtime
                and p.subdirs in (set(ARCH_SUBDIRS), {"noarch"})
                and len(p.versions) >= 4
            ),
            key=lambda p: (-fan_in.get(p.name, 0), p.name),
        )
        for i, pkg in enumerate(ranked[:count]):
            versions = [v for v, _ in pkg.versions]
            middle = versions[len(versions) // 2]
            form = i % 4
            if form == 0:
                spec = "*"
            elif form == 1:
                spec = f">={middle}"
            elif form == 2:
                major = _parts(versions[-1])[0]
                spec = f">={middle},<{major + 1}"
            else:
                spec = ".".join(versions[-1].split(".")[:2]) + ".*"
            specs.append((pkg.name, spec))
            used.add(pkg.name)
    return specs


def generate(out: Path, *, seed: int = 7, scale: float = 1.0) -> dict[str, int]:
    """Write the channel under ``out``; return the record count of each subdir."""
    channel = Channel(seed, scale)
    channel.build_graph()
    channel.generate()
    return channel.write(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    counts = generate(args.out, seed=args.seed, scale=args.scale)
    for subdir, count in counts.items():
        print(f"{subdir:10} {count:8d} records")
    print(f"{'total':10} {sum(counts.values()):8d} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
