"""Where a project's files are: the manifest (found by walking up), the lock, the
environments and lockenv's own state directory.  Found without parsing anything but a
``pyproject.toml``'s tables, standard library only: this runs on the no-op sync path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lockenv.errors import UsageError
from lockenv.limits import MAX_MANIFEST, TooLargeError, read_capped

__all__ = ["LOCK_NAME", "MANIFEST_NAMES", "STATE_DIR", "ProjectPaths", "locate"]

LOCK_NAME = "lockenv.lock"
MANIFEST_NAMES = ("lockenv.toml", "pyproject.toml")
STATE_DIR = ".lockenv"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class ProjectPaths:
    """Where a project's files are, found without parsing anything."""

    manifest: Path
    root: Path

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    def env_prefix(self, env: str) -> Path:
        return self.root / STATE_DIR / "envs" / env

    @property
    def freshness_record(self) -> Path:
        return self.root / STATE_DIR / "fresh.json"

    def ensure_state_dir(self) -> Path:
        """``.lockenv/``, made if missing, with a ``.gitignore`` of ``*`` in it (as uv does
        for ``.venv``): nothing lockenv keeps there belongs in version control."""
        state = self.root / STATE_DIR
        ignore = state / ".gitignore"
        if not ignore.exists():
            state.mkdir(parents=True, exist_ok=True)
            try:
                with open(ignore, "x", encoding="utf-8") as fh:
                    fh.write("# written by lockenv: environments and state, never committed\n*\n")
            except FileExistsError:
                pass
        return state


def locate(manifest: Path | None, start: Path | None = None) -> ProjectPaths:
    """The project's manifest: ``manifest`` if given, else walk up from ``start``.

    Standard library only: this runs on the no-op sync path.
    """
    if manifest is not None:
        path = Path(os.path.abspath(manifest))
        if path.is_dir():
            for name in MANIFEST_NAMES:
                if _is_manifest(path / name):
                    return ProjectPaths(manifest=path / name, root=path)
        if not path.is_file():
            raise UsageError(
                f"manifest {str(manifest)!r} does not exist; run `lockenv init` "
                "or pass --manifest PATH"
            )
        return ProjectPaths(manifest=path, root=path.parent)
    directory = Path(os.path.abspath(start or Path.cwd()))
    for candidate in (directory, *directory.parents):
        for name in MANIFEST_NAMES:
            if _is_manifest(candidate / name):
                return ProjectPaths(manifest=candidate / name, root=candidate)
    raise UsageError(
        f"no lockenv.toml (or pyproject.toml with a [tool.lockenv] table) in {str(directory)!r} "
        "or any parent directory; run `lockenv init` to create one, or pass --manifest PATH"
    )


#: What parsing TOML text may raise besides a syntax error (`tomllib.TOMLDecodeError` is a
#: ValueError): an integer past Python's digit limit, nesting deeper than the recursion
#: limit.
TOML_ERRORS = (ValueError, RecursionError)


def toml_problem(error: BaseException) -> str:
    """One line saying why TOML text could not be read (for any of `TOML_ERRORS`)."""
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def toml_may_spell(text: str, *words: str) -> bool:
    """Whether TOML ``text`` may hold one of ``words`` in a key or a string: literally,
    or through a ``\\u``/``\\U`` escape (TOML's only way to write a character otherwise).
    False lets a reader that looks for nothing else skip tomllib (~5 ms) and the parse."""
    return any(word in text for word in words) or "\\u" in text.lower()


def _is_manifest(path: Path) -> bool:
    """``lockenv.toml``, or a ``pyproject.toml`` with a ``[tool.lockenv]`` table."""
    if path.name == "lockenv.toml":
        return path.is_file()
    try:
        data = read_capped(path, MAX_MANIFEST, "pyproject.toml")
    except TooLargeError as exc:
        from lockenv.errors import ManifestError

        raise ManifestError(f"{str(path)!r}: {exc}") from None
    except OSError:
        return False
    if b"lockenv" not in data:
        return False
    import tomllib

    try:
        tool = tomllib.loads(data.decode("utf-8")).get("tool")
    except (UnicodeDecodeError, *TOML_ERRORS) as exc:
        # A broken file that looks like ours is reported rather than silently skipped.
        from lockenv.errors import ManifestError

        raise ManifestError(f"{path.name}: invalid TOML: {toml_problem(exc)}") from None
    return isinstance(tool, dict) and isinstance(tool.get("lockenv"), dict)
