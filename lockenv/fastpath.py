"""The no-op stamp: how `lockenv run` and a no-op `lockenv sync` answer in a few system calls.

A job array runs `lockenv run` thousands of times on an environment that is already in
sync.  The full check (`lockenv.workspace.sync`: manifest and lock hashed and compared
with the freshness record, the environment's state file parsed and compared with its
site-packages) needs json, hashlib and much of lockenv, whose imports alone cost several
times what the check itself does.  So once the full check has passed, it leaves a stamp
in the environment, ``.lockenv-stamp``: the files it read (the lock, and the manifest
when it was checked against the lock), each with its stat signature, and what the
environment looked like (its package listings, its interpreter).  The next command's
entry point (`lockenv.__main__`) reads the stamp, stats those files and lists
site-packages; when everything is as recorded, the environment is in sync with the lock
without the lock being read.

Signatures are trusted as git trusts its index: size, inode, device, mtime and ctime
(ctime cannot be set by users, and lockenv replaces a lock by rename: a new inode), and
only for a file whose last change is at least two seconds older than the stamp (a file
changed within the clock tick in which its signature was taken could change again
unseen).  Anything unexpected — no stamp, a line this version does not know, another
lockenv version, another kind of machine reading a shared environment, a racy signature
— sends the command down the full path, which writes the stamp again.

Standard library ``os`` and ``sys`` only (no json, no re, no pathlib): this module is
what a no-op costs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence

from lockenv import __version__

__all__ = [
    "STAMP_FILE",
    "Signed",
    "activation_env",
    "find_program",
    "locate_manifest",
    "read_plain",
    "signed",
    "signed_input",
    "stamp_says_current",
    "up_to_date_message",
    "write_stamp",
]

STAMP_FILE = ".lockenv-stamp"
_HEADER = "lockenv-stamp\t1"
_ABSENT = "absent"
_RACY_NS = 2_000_000_000  # a signature taken this close to the file's last change is unsafe
_IS_WINDOWS = sys.platform == "win32"


def up_to_date_message(environment: str, prefix: str) -> str:
    """What ``lockenv sync`` says when there is nothing to do."""
    return f"environment {environment!r} is up to date ({prefix})"


# -- signatures ------------------------------------------------------------------------------


Signed = tuple[str, str, int]  # (path, signature, last change in ns)


def signed(path: str) -> Signed | None:
    """The file at ``path`` with its signature, or None when there is no file.

    Take it *before* reading the file for a check: if the file changes after that, the
    stamp holds a signature it no longer has, and is not believed.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = f"{st.st_size}:{st.st_ino}:{st.st_dev}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return path, text, max(st.st_mtime_ns, st.st_ctime_ns)


def signed_input(path: str) -> Signed:
    """`signed`, for an input that may be missing (it must stay missing, then).

    A directory's signature changes whenever an entry is added, removed or renamed in it:
    a base environment's package set is watched through its directories.
    """
    return signed(path) or (path, _ABSENT, 0)


def _machine() -> str:
    # Compared, never interpreted: a shared environment read from another kind of node.
    uname = getattr(os, "uname", None)
    return f"{sys.platform} {uname().machine if uname else ''}"


# -- reading ---------------------------------------------------------------------------------


def _read(prefix: str) -> tuple[list[list[str]], int] | None:
    """The stamp's lines (split at tabs) and its mtime, or None."""
    try:
        fd = os.open(os.path.join(prefix, STAMP_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        mtime = os.fstat(fd).st_mtime_ns
        data = os.read(fd, 1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if not lines or lines[0] != _HEADER or lines[-1] != "":
        return None  # another format, or cut short
    return [line.split("\t") for line in lines[1:-1]], mtime


def _listing(directory: str, suffix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(suffix))
    except OSError:
        return []


def _holds(fields: list[str], stamped: int) -> bool:
    """A ``KEY PATH SIGNATURE`` line still describes the file (its signature trusted)."""
    path, recorded = fields[1], fields[2]
    if recorded == _ABSENT:
        return not os.path.lexists(path)
    current = signed(path)
    return current is not None and current[1] == recorded and current[2] + _RACY_NS <= stamped


def stamp_says_current(prefix: str, *, environment: str, lock: str, manifest: str | None) -> bool:
    """True when the stamp in ``prefix`` shows the environment in sync with ``lock``
    for ``environment``, and — when ``manifest`` is given — ``lock`` fresh for it.

    Every path is absolute.  False means "not known here", never "out of date": the full
    check decides then.
    """
    read = _read(prefix)
    if read is None:
        return False
    lines, stamped = read
    files = {"lock": lock, "manifest": manifest}
    seen: set[str] = set()
    for fields in lines:
        key = fields[0]
        seen.add(key)
        if key == "version":
            ok = fields[1:] == [__version__]
        elif key == "machine":
            ok = fields[1:] == [_machine()]
        elif key == "environment":
            ok = fields[1:] == [environment]
        elif key == "prefix":
            ok = fields[1:] == [prefix]
        elif key == "python":
            # Follows links: a removed base interpreter is noticed.
            ok = len(fields) == 2 and (not fields[1] or os.path.exists(fields[1]))
        elif key == "listing":
            ok = len(fields) >= 3 and _listing(fields[1], fields[2]) == fields[3:]
        elif key == "entry":
            ok = len(fields) == 2 and os.path.isdir(fields[1])
        elif key in files:
            if files[key] is None:
                continue  # not asked for (--frozen): the manifest is not read at all
            ok = len(fields) == 3 and fields[1] == files[key] and _holds(fields, stamped)
        elif key == "input":
            ok = len(fields) == 3 and _holds(fields, stamped)
        elif key == "variable":
            ok = len(fields) == 3 and _public(os.environ.get(fields[1], "")) == fields[2]
        else:
            ok = False  # a line of a newer lockenv: it knows something this one does not
        if not ok:
            return False
    required = {"version", "machine", "environment", "prefix", "python", "lock"}
    if manifest is not None:
        required.add("manifest")
    return required <= seen


# -- writing ---------------------------------------------------------------------------------


def _public(value: str) -> str:
    """``value`` without the user info of a URL in it (``user:password@``): what the stamp
    keeps of a variable, since credentials never reach a file; the index is the same
    whoever logs in to it."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}"


def write_stamp(
    prefix: str,
    *,
    environment: str,
    python: str,
    listings: Sequence[tuple[str, str, Sequence[str]]],
    entries: Sequence[str],
    lock: Signed,
    manifest: Signed | None,
    inputs: Sequence[Signed] = (),
    variables: Sequence[tuple[str, str]] = (),
) -> None:
    """Leave the stamp in ``prefix``, after the full check found the environment in sync
    with ``lock`` (and ``lock`` fresh for ``manifest``, when given), both `signed`
    before they were read; so were ``inputs``, whatever else the check read (a base
    environment's directories: `signed_input`); ``variables``: (name, value) of the
    environment variables it depended on ("" for unset), which must keep their values.

    ``python``: the interpreter that must exist ("" for none); ``listings``: (directory,
    suffix, the sorted names ending in it) that the directory must hold; ``entries``:
    directories that must exist (the cache entries of a symlinked environment).  Not
    rewritten when it already says this and is safe to trust; a prefix that cannot be
    written (an environment shared read-only) is left without one.
    """
    lines = [
        _HEADER,
        f"version\t{__version__}",
        f"machine\t{_machine()}",
        f"environment\t{environment}",
        f"prefix\t{prefix}",
        f"python\t{python}",
    ]
    lines += ["\t".join(("listing", d, suffix, *names)) for d, suffix, names in listings]
    lines += [f"entry\t{entry}" for entry in entries]
    if any("\t" in name + value for name, value in variables):
        return  # not representable in a line of fields: the full path it is, every time
    lines += [f"variable\t{name}\t{_public(value)}" for name, value in variables]
    newest = 0
    signed_files = [("lock", lock), ("manifest", manifest), *(("input", i) for i in inputs)]
    for key, item in signed_files:
        if item is not None:
            path, signature, changed = item
            lines.append(f"{key}\t{path}\t{signature}")
            newest = max(newest, changed)
    if any("\n" in line for line in lines[1:]):
        return  # a path with a newline: the full path it is, every time
    text = "\n".join(lines) + "\n"
    old = _read(prefix)
    if old is not None and old[1] >= newest + _RACY_NS:
        current = "\n".join([_HEADER, *("\t".join(f) for f in old[0])]) + "\n"
        if current == text:
            return
    from pathlib import Path

    from lockenv.atomic import write_atomic

    with contextlib.suppress(OSError):  # shared read-only: the full path every time
        write_atomic(Path(prefix, STAMP_FILE), text, mode=0o644, durable=False)


# -- what `run` needs ------------------------------------------------------------------------


# The options of a plain ``sync`` or ``run``: what a job array repeats.
_PLAIN_FLAGS = {"--frozen": "frozen", "--locked": "locked", "--offline": "offline"}
_PLAIN_VALUED = {
    "-e": "environment",
    "--environment": "environment",
    "--prefix": "prefix",
    "--lock": "lock",
    "--bundle": "bundle",
}


def read_plain(argv: Sequence[str]) -> dict[str, str | int | bool | list[str]] | None:
    """A plain ``sync`` or ``run`` command line as written, read by hand (importing argparse
    and building a parser would cost such a command more than its work); None for anything
    else: another option (even an abbreviation), a valued option (``-e``/``--environment``,
    ``--prefix``, ``--lock``, ``--bundle``) repeated, empty or followed by an option, a
    word after ``sync``, or ``--frozen`` with ``--locked`` (a pair the full command line
    refuses).

    The result: ``command``; ``quiet`` and ``quiet_after``, the ``-q`` before and after
    the command; each flag given (``frozen``, ``locked``, ``offline``: True); each valued
    option given, by its name; for ``run``, ``cmd``: everything from its first word (or
    ``--``) on, as written.  Callers add what their full command line would refuse (the
    entry point's fast path, `lockenv.__main__`; the CLI's namespace, `lockenv.cli`).
    """
    args = list(argv)
    quiet = 0
    while args and args[0] in ("-q", "--quiet"):
        quiet += 1
        args.pop(0)
    if not args or args[0] not in ("sync", "run"):
        return None
    command = args.pop(0)
    found: dict[str, str | int | bool | list[str]] = {"command": command, "quiet": quiet}
    after = 0
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if arg in ("-q", "--quiet"):
            after += 1
        elif arg in _PLAIN_FLAGS:
            found[_PLAIN_FLAGS[arg]] = True
        elif arg in _PLAIN_VALUED or (eq and name in _PLAIN_VALUED) or arg[:2] == "-e":
            if arg in _PLAIN_VALUED:
                name, value = arg, args.pop(0) if args else ""
            elif not eq or name not in _PLAIN_VALUED:
                name, value = "-e", arg[2:]  # -eENV
            key = _PLAIN_VALUED[name]
            if key in found or not value or value.startswith("-"):
                return None  # the full command line's to take or to refuse
            found[key] = value
        elif command == "run" and (arg == "--" or not arg.startswith("-")):
            found["cmd"] = [arg, *args]
            break
        else:
            return None
    if found.get("frozen") and found.get("locked"):
        return None  # the full command line's to refuse
    found["quiet_after"] = after
    return found


def locate_manifest(start: str) -> tuple[str, str, bool] | None:
    """``(manifest, project root, vouch)`` as `lockenv.project.locate` finds them from
    ``start``, or None when that takes parsing TOML (the full path decides).

    A ``pyproject.toml`` that mentions lockenv is the manifest when it holds a
    ``[tool.lockenv]`` table; ``vouch`` is then True: only a stamp that recorded its
    signature (the full path parsed it) may take it for the manifest.
    """
    directory = os.path.abspath(start)
    while True:
        lockenv_toml = os.path.join(directory, "lockenv.toml")
        if os.path.isfile(lockenv_toml):
            return lockenv_toml, directory, False
        pyproject = os.path.join(directory, "pyproject.toml")
        try:
            with open(pyproject, "rb") as fh:
                mentions = b"lockenv" in fh.read()
        except OSError:
            mentions = False
        if mentions:
            return pyproject, directory, True
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def activation_env(prefix: str, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the environment at the absolute ``prefix`` activated.

    Its scripts directory first on PATH, PYTHONHOME removed (it would point the
    interpreter at another standard library).  A virtual environment gets VIRTUAL_ENV; a
    conda prefix (it has ``conda-meta/``) gets CONDA_PREFIX and loses a VIRTUAL_ENV
    inherited from the caller (tools such as pip and uv prefer VIRTUAL_ENV).  Packages'
    own activation scripts (``etc/conda/activate.d``) are package code and are not run.
    """
    env = dict(base)
    conda = os.path.isdir(os.path.join(prefix, "conda-meta"))
    join = os.path.join
    if conda and _IS_WINDOWS:
        dirs = [
            prefix,
            join(prefix, "Library", "mingw-w64", "bin"),
            join(prefix, "Library", "usr", "bin"),
            join(prefix, "Library", "bin"),
            join(prefix, "Scripts"),
            join(prefix, "bin"),
        ]
    else:
        dirs = [join(prefix, "Scripts" if _IS_WINDOWS else "bin")]
    path = env.get("PATH", "")
    env["PATH"] = os.pathsep.join(dirs) + (os.pathsep + path if path else "")
    if conda:
        env["CONDA_PREFIX"] = prefix
        env.pop("VIRTUAL_ENV", None)
    else:
        env["VIRTUAL_ENV"] = prefix
    env.pop("PYTHONHOME", None)
    return env


def find_program(name: str, path: str) -> str | None:
    """Where ``name`` runs from on the search path ``path`` (POSIX; as `shutil.which`)."""

    def runnable(candidate: str) -> bool:
        return (
            os.path.exists(candidate)
            and os.access(candidate, os.X_OK)
            and not os.path.isdir(candidate)
        )

    if os.path.dirname(name):
        return name if runnable(name) else None
    seen = set()
    for directory in path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, name)
        if runnable(candidate):
            return candidate
    return None
