"""Benchmark: cold, warm-cache and no-op sync — lockenv vs ``uv pip sync`` vs pip.

    python benchmarks/sync.py [--lock lockenv.lock] [--env default] [--rounds 3]

Without ``--lock`` it benchmarks every wheel of the fixture index that installs here, or
with ``--synthetic`` 25 generated wheels shaped like a real stack (thousands of modules,
native libraries); both are served on 127.0.0.1, no network.  With ``--lock`` it installs that
lock's environment for this platform; uv and pip then get the same pins, with hashes,
from the index pip is configured to use (``lockenv.pipconfig.default_index_url``), or the
lock's own index when it records one.

Every tool gets its own empty cache and its own environment; pip's and uv's
configuration files are ignored (``PIP_CONFIG_FILE=/dev/null``, ``UV_NO_CONFIG=1``).

- cold: empty cache, new environment (venv creation included for every tool);
- warm: cache filled by a previous run, new environment;
- no-op: the environment is already in sync.

Times are medians of ``--rounds`` runs (wall clock, whole command including start-up).
Needs ``uv`` on PATH (or ``--uv PATH``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lockenv.lockfile import Lockfile, PypiArtifact, read_lockfile, write_lockfile  # noqa: E402
from lockenv.platforms import current_platform  # noqa: E402


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "LOCKENV_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def _run(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return elapsed


def _fixture_wheels(work: Path) -> tuple[Path, list[Path]]:
    """Every fixture wheel that installs here (newest version of each project)."""
    from fixtures.build_index import build_index

    index = build_index(work / "index")
    version = f"cp{sys.version_info.major}{sys.version_info.minor}"
    picked: dict[str, Path] = {}
    for wheel in sorted((index / "files").glob("*.whl")):
        name, ver, *tags = wheel.name[:-4].split("-")
        if tags[0] not in ("py3", version) or not (
            tags[-1] == "any" or ("manylinux" in tags[-1] and "x86_64" in tags[-1])
        ):
            continue
        if any(c.isalpha() for c in ver):  # pre-releases
            continue
        if not _python_ok(wheel.with_name(wheel.name + ".metadata")):
            continue
        picked[name] = wheel  # sorted: the newest version wins
    picked.pop("oldpy", None)
    return index, list(picked.values())


def _synthetic_wheels(work: Path, count: int = 25) -> tuple[Path, list[Path]]:
    """``count`` deflated wheels shaped like a real data-science stack: a few large
    packages with thousands of modules and native libraries, many small ones."""
    import base64
    import hashlib
    import random
    import zipfile

    rng = random.Random(20240601)
    index = work / "synthetic-index"
    files = index / "files"
    files.mkdir(parents=True)
    wheels = []
    shapes = [(2500, 3), (1200, 2), (800, 1), (400, 1)] + [(rng.randint(10, 200), 0)] * (count - 4)
    for i, (modules, libs) in enumerate(shapes[:count]):
        name = f"synth{i:02d}"
        info = f"{name}-1.0.dist-info"
        members: list[tuple[str, bytes]] = []
        for m in range(modules):
            body = "".join(
                f"def f{j}_{rng.randrange(10**6)}(x):\n    return x * {rng.random()!r}\n"
                for j in range(rng.randint(5, 80))
            )
            members.append((f"{name}/sub{m % 40}/mod{m}.py", body.encode()))
        for lib in range(libs):
            members.append((f"{name}/_native{lib}.so", rng.randbytes(rng.randint(2, 6) << 20)))
        members.append(
            (f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode())
        )
        members.append(
            (
                f"{info}/WHEEL",
                b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )
        )
        record = (
            "".join(
                f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
                for p, d in members
            )
            + f"{info}/RECORD,,\n"
        )
        members.append((f"{info}/RECORD", record.encode()))
        path = files / f"{name}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for member, data in members:
                zf.writestr(member, data)
        wheels.append(path)
    for wheel in wheels:
        project = index / "simple" / wheel.name.split("-")[0]
        project.mkdir(parents=True)
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        (project / "index.html").write_text(
            f'<html><body><a href="../../files/{wheel.name}#sha256={sha}">{wheel.name}</a>'
            "</body></html>\n"
        )
    return index, wheels


@contextlib.contextmanager
def _local_lock(work: Path, synthetic: bool) -> Iterator[tuple[Path, str]]:
    """A lock over local wheels served on 127.0.0.1 (PEP 503 pages for uv and pip)."""
    import hashlib

    from lockenv.lockfile import LockedEnvironment, LockInputs

    index, wheels = _synthetic_wheels(work) if synthetic else _fixture_wheels(work)
    platform = current_platform()
    with _static_server(index) as server:
        artifacts = {}
        for wheel in wheels:
            data = wheel.read_bytes()
            url = f"{server.base}/files/{wheel.name}"
            artifacts[url] = PypiArtifact(
                name=wheel.name.split("-")[0].replace("_", "-"),
                version=wheel.name.split("-")[1],
                filename=wheel.name,
                url=url,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                index=server.url,
            )
        lock = Lockfile(
            inputs=LockInputs(platforms=(platform,), indexes=(server.url,)),
            environments={
                "default": LockedEnvironment(
                    name="default",
                    python=f"{sys.version_info.major}.{sys.version_info.minor}",
                    packages={platform: tuple(artifacts)},
                )
            },
            artifacts=artifacts,
        )
        path = work / "lockenv.lock"
        write_lockfile(lock, path)
        yield path, server.url


def _python_ok(metadata: Path) -> bool:
    from packaging.specifiers import SpecifierSet

    for line in metadata.read_text().splitlines():
        if line.startswith("Requires-Python:"):
            spec = SpecifierSet(line.partition(":")[2].strip())
            return spec.contains(".".join(map(str, sys.version_info[:3])))
    return True


class _Server:
    def __init__(self, base: str) -> None:
        self.base = base
        self.url = f"{base}/simple/"


@contextlib.contextmanager
def _static_server(root: Path) -> Iterator[_Server]:
    """A plain static server of the built index (PEP 503 pages are index.html files).

    Not ``fixtures.server``: its listen backlog (socketserver's default of 5) makes
    parallel downloaders wait for TCP SYN retries (1 s), which would measure the server.
    """
    import functools
    import socket
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # the client's delayed ACK add 40 ms to every response.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield _Server(f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()


def _requirements(lock: Lockfile, env: str, out: Path) -> int:
    artifacts = [
        a for a in lock.packages_for(env, current_platform()) if isinstance(a, PypiArtifact)
    ]
    lines = [f"{a.name}=={a.version} --hash=sha256:{a.sha256}" for a in artifacts]
    out.write_text("\n".join(sorted(lines)) + "\n")
    return len(artifacts)


def _median(fn: Callable[[], float], rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, help="lock file (default: the fixture index)")
    parser.add_argument("--env", default="default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--uv", default=shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    )
    parser.add_argument("--no-pip", action="store_true", help="skip pip (slow on big sets)")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="without --lock: 25 generated wheels (~8000 files, ~40 MB) instead of the fixtures",
    )
    args = parser.parse_args(argv)

    python = getattr(sys, "_base_executable", sys.executable)
    work = Path(tempfile.mkdtemp(prefix="lockenv-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.lock is None:
                lock_path, index_url = stack.enter_context(_local_lock(work, args.synthetic))
            else:
                lock_path = args.lock.resolve()
                lock = read_lockfile(lock_path)
                if lock.inputs.indexes:
                    index_url = lock.inputs.indexes[0]
                else:
                    from lockenv.pipconfig import default_index_url

                    index_url = default_index_url()
            lock = read_lockfile(lock_path)
            reqs = work / "requirements.txt"
            count = _requirements(lock, args.env, reqs)
            results = _bench(args, python, lock_path, index_url, reqs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{count} packages, env {args.env!r}, {current_platform()}, median of {args.rounds}")
    tools = [t for t in ("lockenv", "uv", "pip") if t in results]
    header = f"{'scenario':<8}" + "".join(f"{t:>10}" for t in tools)
    header += f"{'lockenv/uv':>12}" + (f"{'lockenv/pip':>13}" if "pip" in results else "")
    print(header)
    for scenario in ("cold", "warm", "no-op"):
        row = f"{scenario:<8}" + "".join(f"{results[t][scenario]:>9.3f}s" for t in tools)
        row += f"{results['lockenv'][scenario] / results['uv'][scenario]:>11.2f}x"
        if "pip" in results:
            row += f"{results['lockenv'][scenario] / results['pip'][scenario]:>12.2f}x"
        print(row)
    return 0


def _bench(
    args: argparse.Namespace,
    python: str,
    lock_path: Path,
    index_url: str,
    reqs: Path,
    work: Path,
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    counter = iter(range(1_000_000))

    def fresh(tool: str) -> Path:
        return work / f"{tool}-env-{next(counter)}"

    # -- lockenv --------------------------------------------------------------------------
    le_cache = work / "lockenv-cache"
    le_env = _clean_env(LOCKENV_CACHE_DIR=str(le_cache))

    def lockenv(prefix: Path) -> float:
        cmd = [sys.executable, "-m", "lockenv", "sync", "-e", args.env]
        cmd += ["--lock", str(lock_path), "--prefix", str(prefix)]
        return _run(cmd, le_env)

    def lockenv_cold() -> float:
        shutil.rmtree(le_cache, ignore_errors=True)
        return lockenv(fresh("lockenv"))

    keep = fresh("lockenv")
    results["lockenv"] = {
        "cold": _median(lockenv_cold, args.rounds),
        "warm": _median(lambda: lockenv(fresh("lockenv")), args.rounds),
    }
    lockenv(keep)
    results["lockenv"]["no-op"] = _median(lambda: lockenv(keep), args.rounds)

    # -- uv -------------------------------------------------------------------------------
    uv_cache = work / "uv-cache"
    uv_env = _clean_env(
        UV_CACHE_DIR=str(uv_cache), UV_LINK_MODE="hardlink", UV_PYTHON_DOWNLOADS="never"
    )

    def uv(prefix: Path, *, create: bool = True) -> float:
        elapsed = 0.0
        if create:
            elapsed += _run([args.uv, "venv", "-q", "--python", python, str(prefix)], uv_env)
        cmd = [args.uv, "pip", "sync", "-q", "--python", str(prefix / "bin" / "python")]
        cmd += ["--index-url", index_url, "--require-hashes", str(reqs)]
        return elapsed + _run(cmd, uv_env)

    def uv_cold() -> float:
        shutil.rmtree(uv_cache, ignore_errors=True)
        return uv(fresh("uv"))

    keep = fresh("uv")
    results["uv"] = {
        "cold": _median(uv_cold, args.rounds),
        "warm": _median(lambda: uv(fresh("uv")), args.rounds),
    }
    uv(keep)
    results["uv"]["no-op"] = _median(lambda: uv(keep, create=False), args.rounds)

    # -- pip ------------------------------------------------------------------------------
    if not args.no_pip:
        pip_cache = work / "pip-cache"
        pip_env = _clean_env(PIP_CACHE_DIR=str(pip_cache))

        def pip(prefix: Path, *, create: bool = True) -> float:
            elapsed = 0.0
            if create:
                elapsed += _run([python, "-m", "venv", "--without-pip", str(prefix)], pip_env)
            cmd = [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python")]
            cmd += ["install", "-q", "--no-deps", "--index-url", index_url, "-r", str(reqs)]
            return elapsed + _run(cmd, pip_env)

        def pip_cold() -> float:
            shutil.rmtree(pip_cache, ignore_errors=True)
            return pip(fresh("pip"))

        keep = fresh("pip")
        results["pip"] = {
            "cold": _median(pip_cold, args.rounds),
            "warm": _median(lambda: pip(fresh("pip")), args.rounds),
        }
        pip(keep)
        results["pip"]["no-op"] = _median(lambda: pip(keep, create=False), args.rounds)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
