"""Git sources: a branch, tag or revision resolved to a commit, and a commit checked out.

The ``git`` command line does the work, as pip and uv have it do: ``ls-remote`` resolves
a branch or tag without cloning, a bare repository per URL under ``<cache>/git/db/``
fetches what is needed, and each commit is checked out once into
``<cache>/git/checkouts/<commit>/`` (a complete clone, so tools that read the history,
such as setuptools-scm, work), published by one rename and shared by every later lock
and sync.  A lock records the full commit: the same bytes everywhere, whatever the
branch does later.  URLs may carry credentials for git itself; messages show them
redacted.

Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from lockenv.errors import LockenvError, UsageError
from lockenv.urls import redact_url

__all__ = ["GitError", "checkout", "is_full_commit", "resolve_commit"]

_FULL_SHA = re.compile(r"[0-9a-f]{40}")
# What git is given as a repository: a URL of a transport that only fetches (never
# ``ext::``, which runs a command), or scp-like ``user@host:path``.  Nothing that starts
# with "-": git would read it as an option (``--upload-pack=CMD`` runs CMD).
_REPOSITORY = re.compile(
    r"(?:https?|ssh|git|file)://[^\s]+|[A-Za-z0-9_][\w.+-]*@[A-Za-z0-9][\w.-]*:[^\s]+",
    re.IGNORECASE,
)
_HEX = re.compile(r"[0-9a-f]{4,40}")
_TIMEOUT = 600.0


class GitError(LockenvError):
    """A git repository could not be read, or a ref does not exist in it."""


def is_full_commit(text: str) -> bool:
    """Whether ``text`` is a full (40 hex digit) commit hash."""
    return bool(_FULL_SHA.fullmatch(text))


def _check_repository(url: str) -> None:
    """Refuse a repository that git could take for an option or a command (a URL comes
    from a manifest or a lock, which may be hostile)."""
    if not _REPOSITORY.fullmatch(url):
        raise UsageError(
            f"{redact_url(url)!r} is not a git repository URL: use https://, ssh://, git://, "
            "file:// or user@host:path"
        )


def _check_ref(kind: str, value: str) -> None:
    """Refuse a branch, tag or rev that git could take for an option."""
    if not value or value.startswith("-") or any(c.isspace() or c == "\0" for c in value):
        raise UsageError(f"{kind} {value!r} is not a git ref name")


def _git(*args: str, cwd: Path | None = None, what: str) -> str:
    if shutil.which("git") is None:
        raise UsageError(f"{what}: the git command is not installed; install git")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail rather than wait for a password
    env["LC_ALL"] = "C"
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"{what}: git {args[0]} took longer than {_TIMEOUT:.0f}s") from None
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise GitError(f"{what}: git {args[0]} failed: {detail}")
    return result.stdout


def resolve_commit(
    url: str,
    *,
    rev: str | None = None,
    tag: str | None = None,
    branch: str | None = None,
    cache_dir: Path,
) -> str:
    """The full commit ``url``'s ``branch``, ``tag`` or ``rev`` names (default: HEAD).

    A full hash is taken as it is; a short one is looked up in a fetch of the repository.
    """
    _check_repository(url)
    for kind, value in (("branch", branch), ("tag", tag), ("rev", rev)):
        if value is not None:
            _check_ref(kind, value)
    what = f"git repository {redact_url(url)!r}"
    if rev is not None and is_full_commit(rev.lower()):
        return rev.lower()
    # In order of preference; a peeled tag (^{}) is the commit an annotated tag names.
    if branch is not None:
        wanted = [f"refs/heads/{branch}"]
    elif tag is not None:
        wanted = [f"refs/tags/{tag}^{{}}", f"refs/tags/{tag}"]
    elif rev is not None:
        wanted = [f"refs/tags/{rev}^{{}}", f"refs/tags/{rev}", f"refs/heads/{rev}", rev]
    else:
        wanted = ["HEAD"]
    # ls-remote lists a peeled tag only when asked for it by name.
    patterns = list(dict.fromkeys(wanted))
    refs: dict[str, str] = {}
    for line in _git("ls-remote", url, *patterns, what=what).splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    for ref in wanted:
        if ref in refs:
            return refs[ref]
    if rev is not None and _HEX.fullmatch(rev.lower()):
        database = _fetch_all(url, cache_dir)
        full = _git(
            "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=database, what=what
        )
        return full.strip()
    asked = (
        f"branch {branch!r}"
        if branch is not None
        else f"tag {tag!r}"
        if tag is not None
        else f"rev {rev!r}"
        if rev is not None
        else "HEAD"
    )
    raise GitError(f"{what} has no {asked}; check the name (`git ls-remote {redact_url(url)}`)")


def _database(url: str, cache_dir: Path) -> Path:
    """The bare repository that collects ``url``'s objects (made on first use)."""
    key = hashlib.sha256(url.encode()).hexdigest()[:20]
    database = cache_dir / "git" / "db" / key
    if not (database / "HEAD").is_file():
        database.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", str(database), what=f"git cache {str(database)!r}")
    return database


def _fetch_all(url: str, cache_dir: Path) -> Path:
    database = _database(url, cache_dir)
    _git(
        "fetch",
        "--quiet",
        "--tags",
        "--force",
        url,
        "+refs/heads/*:refs/remotes/origin/*",
        cwd=database,
        what=f"git repository {redact_url(url)!r}",
    )
    return database


def checkout(url: str, commit: str, cache_dir: Path) -> Path:
    """A working tree of ``url`` at ``commit`` (submodules included), in the cache.

    Treat it as read-only: builds copy it first.
    """
    _check_repository(url)
    if not is_full_commit(commit):
        raise GitError(f"{commit!r} is not a full commit hash")
    final = cache_dir / "git" / "checkouts" / commit
    if (final / ".git").exists():
        return final
    what = f"git repository {redact_url(url)!r}"
    database = _database(url, cache_dir)
    if not _has_commit(database, commit):
        try:  # most servers give a single commit; it is all that is needed
            _git("fetch", "--quiet", url, commit, cwd=database, what=what)
        except GitError:
            _fetch_all(url, cache_dir)
        if not _has_commit(database, commit):
            raise GitError(f"{what} has no commit {commit}; was it force-pushed away?")
    from lockenv.cache import Cache

    cache = Cache(cache_dir)
    work = cache.make_temp_dir("git") / commit
    _git("clone", "--quiet", "--no-checkout", str(database), str(work), what=what)
    _git("checkout", "--quiet", "--detach", commit, cwd=work, what=what)
    if (work / ".gitmodules").is_file():
        _git("submodule", "update", "--quiet", "--init", "--recursive", cwd=work, what=what)
    cache.publish_dir(work, final)
    cache.remove_temp_dir(work.parent)  # and its hold (`lockenv.cache`)
    return final


def _has_commit(database: Path, commit: str) -> bool:
    try:
        _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=database, what="git cache")
    except GitError:
        return False
    return True
