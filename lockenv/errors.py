"""One error root for everything a user can see, one subclass per stage.

Messages quote the bad input with ``!r``, name the file and key path when there is
one, and say what to do next.  The CLI prints ``str(error)`` on one line and exits
with ``error.exit_code`` (and ``error.hint``, if any, on a ``hint:`` line); nothing else
reaches the user as a traceback.
"""

from __future__ import annotations

from typing import Self

# Exit codes of the command line (see DESIGN.md "Commands").
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_INPUT_ERROR = 2
EXIT_FAILURE = 3


class LockenvError(Exception):
    """Root of every error lockenv reports to a user.

    ``details`` are extra lines the CLI shows before the one-line message (the tail of a
    build log, say); empty for almost every error.  ``hint``, when set, is the next step
    to take; the CLI prints it on a ``hint:`` line of its own after the error (as uv does).
    """

    exit_code: int = EXIT_FAILURE
    details: tuple[str, ...] = ()
    hint: str | None = None

    def with_hint(self, hint: str) -> Self:
        """This error, with ``hint`` as the next step to suggest."""
        self.hint = hint
        return self


class UsageError(LockenvError):
    """The command line itself is wrong (unknown option value, missing file...)."""

    exit_code = EXIT_INPUT_ERROR


class ManifestError(LockenvError):
    """``lockenv.toml`` / ``[tool.lockenv]`` is unreadable or invalid.

    ``problems`` holds every problem found, each already naming file, key path and value,
    so a manifest with three bad keys reports all three at once.
    """

    exit_code = EXIT_INPUT_ERROR

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ConfigError(ManifestError):
    """A site setting (``LOCKENV_MIRRORS``, a lockenv ``config.toml``) is invalid; like a
    manifest, every problem is collected and named."""


class PlatformError(LockenvError):
    """An unknown or unsupported target platform."""

    exit_code = EXIT_INPUT_ERROR


class IndexAccessError(LockenvError):
    """A package index or channel could not be read (network, HTTP status, bad page)."""

    exit_code = EXIT_FAILURE


class MetadataError(LockenvError):
    """A distribution's metadata is missing, malformed, or not static (PEP 643)."""

    exit_code = EXIT_FAILURE


class ResolutionError(LockenvError):
    """No set of versions satisfies the requirements (or a package does not exist)."""

    exit_code = EXIT_INPUT_ERROR


class LockfileError(LockenvError):
    """``lockenv.lock`` is missing, unreadable, hand-broken or fails its schema."""

    exit_code = EXIT_INPUT_ERROR


class StaleLockError(LockenvError):
    """The lock no longer satisfies the manifest (``--locked`` / ``lock --check``)."""

    exit_code = EXIT_CHECK_FAILED


class IntegrityError(LockenvError):
    """An artifact's sha256 or size differs from the lock: nothing was changed."""

    exit_code = EXIT_FAILURE


class UnsafePathError(LockenvError):
    """A path from an archive, RECORD or lockfile would escape its target directory."""

    exit_code = EXIT_FAILURE


class InstallError(LockenvError):
    """Materializing an environment failed; the previous environment is untouched."""

    exit_code = EXIT_FAILURE


class BuildError(LockenvError):
    """Building a source distribution (or asking its backend for metadata) failed.

    ``details`` holds the tail of the build log; the message names the package and where
    the whole log is.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, log_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.details = log_tail


class OfflineError(LockenvError):
    """``--offline`` was asked for but something needed is not in the cache."""

    exit_code = EXIT_FAILURE


class CacheBusyError(LockenvError):
    """Another process held an artifact in the shared cache past the deadline of waiting."""

    exit_code = EXIT_FAILURE


class DriftError(LockenvError):
    """``verify`` found installed files that differ from the lock."""

    exit_code = EXIT_CHECK_FAILED
