"""Generated wheels, a PEP 503 index of them, and a server on 127.0.0.1: what the cluster
benchmarks sync, so that neither a registry nor the network is in the way.

- `make_wheel`: one deflated wheel with N modules, native libraries of given sizes
  (random bytes: they do not compress, like real shared objects) and Requires-Dist.
- `make_stack`: a dependency graph shaped like a real data-science stack: ``top`` packages
  asked for, ``pins`` in all, ``files`` files over them (a few packages hold most).
- `write_index`: ``simple/<name>/index.html`` (with sha256 and PEP 658 metadata) and
  ``files/`` for any set of wheels.
- `serve`: the index over HTTP/1.1 with byte ranges — nginx when installed (sendfile,
  as a site mirror would run it), else a threaded Python server using ``sendfile``.

Deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    modules: int,
    native: Sequence[int] = (),
    requires: Sequence[str] = (),
    seed: int = 0,
    deflate_native: bool = False,
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``directory``.  The ``native``
    libraries are incompressible and stored, or with ``deflate_native`` compressible
    (about 2.5:1, as machine code and its tables are) and deflated."""
    rng = random.Random(f"{name}-{version}-{seed}")
    info = f"{name}-{version}.dist-info"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    records: list[str] = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def add(member: str, data: bytes, *, compress: bool = True) -> None:
            kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(member, (2020, 1, 1, 0, 0, 0)), data, kind)
            records.append(f"{member},{_record_hash(data)},{len(data)}\n")

        # About ten files a directory, as in real site-packages.
        subdirs = max(1, modules // 10)
        for m in range(modules):
            body = "".join(
                f"def f{j}_{rng.randrange(10**6)}(x):\n    return x * {rng.random()!r}\n"
                for j in range(rng.randint(5, 60))
            )
            add(f"{name}/sub{m % subdirs}/mod{m}.py", body.encode())
        for i, size in enumerate(native):
            if deflate_native:
                add(f"{name}/_native{i}.so", _compressible(rng, size))
            else:
                add(f"{name}/_native{i}.so", _incompressible(rng, size), compress=False)
        add(f"{info}/METADATA", metadata.encode())
        wheel = "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        add(f"{info}/WHEEL", wheel.encode())
        records.append(f"{info}/RECORD,,\n")
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", (2020, 1, 1, 0, 0, 0)), "".join(records))
    return path


def _incompressible(rng: random.Random, size: int) -> bytes:
    # Random bytes, made in 1 MiB blocks that repeat: large files quickly, still
    # incompressible for deflate's 32 KiB window.
    block = rng.randbytes(min(size, 1 << 20))
    return (block * (size // len(block) + 1))[:size] if block else b""


def _compressible(rng: random.Random, size: int) -> bytes:
    # Each 4 KiB: 1.6 KiB of random bytes, then runs of a few values (deflate leaves
    # about 40%); in 1 MiB blocks that repeat, as `_incompressible`.
    page = bytearray()
    while len(page) < min(size, 1 << 20):
        page += rng.randbytes(1600)
        page += bytes(rng.choice((0, 0, 0, 0x90, 0xFF)) for _ in range(8)) * 312
    block = bytes(page[: min(size, 1 << 20)])
    return (block * (size // len(block) + 1))[:size] if block else b""


@dataclass(frozen=True, slots=True)
class Stack:
    """A generated stack: every wheel, the names asked for, and more versions of one
    package (for the one-package change)."""

    wheels: list[Path]
    top: list[str]
    changed: str  # the package that also exists as version 1.1 (and the ``later`` ones)


def make_stack(
    directory: Path,
    *,
    pins: int = 80,
    top: int = 24,
    files: int = 12000,
    later: Sequence[str] = ("1.1",),
) -> Stack:
    """``pins`` wheels holding about ``files`` files in all, ``top`` of them asked for and
    the others their dependencies (every package is reached); the package ``changed``
    also in the versions ``later`` (same size, other contents)."""
    rng = random.Random(20240601)
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"stack{i:03d}" for i in range(pins)]
    # A few packages hold most files (numpy, scipy, pandas, sklearn...), most hold few.
    weights = [rng.paretovariate(1.2) for _ in names]
    counts = [max(3, int(files * w / sum(weights))) for w in weights]
    deps: dict[str, list[str]] = {n: [] for n in names}
    for i, name in enumerate(names[top:], start=top):
        # Each dependency is needed by one or two packages before it in the list.
        for parent in rng.sample(names[:i], k=min(i, rng.choice((1, 1, 2)))):
            deps[parent].append(name)
    wheels = []
    for name, count in zip(names, counts, strict=True):
        native = [rng.randint(1, 8) << 20] if count > 400 else []
        requires = sorted(deps[name])
        wheels.append(
            make_wheel(directory, name, "1.0", modules=count, native=native, requires=requires)
        )
    changed = names[top + 3]
    for seed, version in enumerate(later, start=1):
        wheels.append(
            make_wheel(
                directory,
                changed,
                version,
                modules=counts[top + 3],
                seed=seed,
                requires=sorted(deps[changed]),
            )
        )
    return Stack(wheels=wheels, top=names[:top], changed=changed)


def write_index(root: Path, wheels: Sequence[Path]) -> None:
    """A PEP 503 index at ``root``: ``simple/<project>/index.html`` linking to
    ``files/<wheel>`` with its sha256, and PEP 658 ``.metadata`` beside each wheel."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        target = files / wheel.name
        if wheel.resolve() != target.resolve():
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copyfile(wheel, target)
        with zipfile.ZipFile(target) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            (files / f"{wheel.name}.metadata").write_bytes(zf.read(member))
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        by_project.setdefault(project, []).append(target)
    for project, targets in by_project.items():
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = []
        for target in sorted(targets):
            sha = _sha256(target)
            meta = hashlib.sha256((files / f"{target.name}.metadata").read_bytes()).hexdigest()
            links.append(
                f'<a href="../../files/{target.name}#sha256={sha}" '
                f'data-dist-info-metadata="sha256={meta}">{target.name}</a><br/>'
            )
        (page / "index.html").write_text("<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    (root / "simple" / "index.html").write_text(
        "<html><body>\n"
        + "\n".join(f'<a href="{p}/">{p}</a>' for p in sorted(by_project))
        + "\n</body></html>\n"
    )


def indexed_stack(work: Path, *, pins: int, files: int) -> Stack:
    """`make_stack` under ``work/wheels`` (about 3 in 10 packages asked for, at most 24)
    and its index under ``work/index``."""
    top = min(24, pins * 3 // 10)
    stack = make_stack(work / "wheels", pins=pins, top=top, files=files)
    write_index(work / "index", stack.wheels)
    return stack


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# -- serving ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Served:
    base: str  # http://127.0.0.1:PORT
    log: Path  # one line per request: "METHOD PATH STATUS"

    @property
    def index(self) -> str:
        return f"{self.base}/simple/"

    def requests(self, prefix: str = "/files/") -> dict[str, int]:
        """GET requests per path under ``prefix`` (ranged parts of one file count once
        per connection that asked for the file from its first byte)."""
        counts: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.log.read_text().splitlines():
                method, path, _status, ranged = [*line.split(), "", "", "", ""][:4]
                whole = ranged == "-" or ranged.startswith("bytes=0-")
                if method == "GET" and path.startswith(prefix) and whole:
                    counts[path] = counts.get(path, 0) + 1
        return counts


_NGINX = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$request_method $uri $status $http_range';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {root};
        location /simple/ {{ default_type text/html; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(root: Path) -> Iterator[Served]:
    """Serve ``root`` on 127.0.0.1 until the block ends (nginx if installed)."""
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        nginx = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
        )
        if nginx is not None:
            with _nginx(nginx, root, work) as served:
                yield served
        else:
            with _python_server(root, work) as served:
                yield served
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _nginx(binary: str, root: Path, work: Path) -> Iterator[Served]:
    (work / "tmp").mkdir()
    port = _free_port()
    conf = work / "nginx.conf"
    conf.write_text(_NGINX.format(work=work, port=port, root=root.resolve()))
    process = subprocess.Popen(
        [binary, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            if process.poll() is not None:
                raise RuntimeError((work / "error.log").read_text())
            time.sleep(0.05)
        yield Served(base=f"http://127.0.0.1:{port}", log=work / "access.log")
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def _python_server(root: Path, work: Path) -> Iterator[Served]:
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    log = work / "access.log"
    log_lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def setup(self) -> None:
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.translate_path(self.path)
            if os.path.isdir(path):
                path = os.path.join(path, "index.html")
            spec = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "") or "")
            try:
                fh = open(path, "rb")  # noqa: SIM115
            except OSError:
                self.send_error(404)
                return
            with fh:
                size = os.fstat(fh.fileno()).st_size
                start, end = 0, size - 1
                if spec:
                    start, end = int(spec[1]), min(size - 1, int(spec[2] or size - 1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.flush()
                self.request.sendfile(fh, start, end - start + 1)
            with log_lock, log.open("a") as out:
                ranged = f"bytes={start}-" if spec else "-"
                out.write(f"GET {self.path.split('?')[0]} 200 {ranged}\n")

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(base=f"http://127.0.0.1:{httpd.server_address[1]}", log=log)
    finally:
        httpd.shutdown()
        httpd.server_close()
