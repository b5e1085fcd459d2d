"""lockenv.git: refs resolved to full commits over file://, commits checked out once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lockenv.errors import UsageError
from lockenv.git import GitError, checkout, is_full_commit, resolve_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "file.txt").write_text("one\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "one")
    _git(root, "tag", "-a", "v1", "-m", "annotated")  # its tag object is not the commit
    _git(root, "branch", "old")
    (root / "file.txt").write_text("two\n")
    _git(root, "commit", "-qam", "two")
    return root


def test_refs_resolve_to_full_commits(repo: Path, tmp_path: Path) -> None:
    url, cache = repo.as_uri(), tmp_path / "cache"
    first = _git(repo, "rev-parse", "v1^{commit}")
    head = _git(repo, "rev-parse", "HEAD")
    assert resolve_commit(url, cache_dir=cache) == head
    assert resolve_commit(url, branch="main", cache_dir=cache) == head
    assert resolve_commit(url, branch="old", cache_dir=cache) == first
    assert resolve_commit(url, tag="v1", cache_dir=cache) == first  # peeled, not the tag
    assert resolve_commit(url, rev="v1", cache_dir=cache) == first
    assert resolve_commit(url, rev=first[:8], cache_dir=cache) == first  # short: fetched
    assert resolve_commit(url, rev=head.upper(), cache_dir=cache) == head
    assert is_full_commit(head) and not is_full_commit(head[:8])


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"tag": "v9"}, "has no tag 'v9'"), ({"branch": "gone"}, "has no branch 'gone'")],
)
def test_unknown_refs(repo: Path, tmp_path: Path, kwargs: dict[str, str], words: str) -> None:
    with pytest.raises(GitError, match=words):
        resolve_commit(repo.as_uri(), cache_dir=tmp_path / "cache", **kwargs)


def test_unreachable_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="git ls-remote failed"):
        resolve_commit((tmp_path / "nowhere").as_uri(), cache_dir=tmp_path / "cache")


def test_checkout_once_per_commit(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _git(repo, "rev-parse", "v1^{commit}")
    tree = checkout(repo.as_uri(), first, cache)
    assert (tree / "file.txt").read_text() == "one\n"
    assert _git(tree, "rev-parse", "HEAD") == first  # a real clone: history for scm tools
    assert tree == cache / "git" / "checkouts" / first
    assert list((cache / "tmp").iterdir()) == []  # the work directory and its hold are gone
    # Published once: a second checkout of the commit is the same tree, no git run.
    shutil.rmtree(repo)
    assert checkout(repo.as_uri(), first, cache) == tree


def test_checkout_refuses_what_is_not_a_commit(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a full commit hash"):
        checkout(repo.as_uri(), "v1", tmp_path / "cache")
    with pytest.raises(GitError, match="has no commit"):
        checkout(repo.as_uri(), "0" * 40, tmp_path / "cache")


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("--upload-pack=touch {marker};:", {}),  # what a hostile lock or manifest could hold
        ("-oProxyCommand=touch {marker}@host:repo", {}),
        ("{repo}", {"rev": "--upload-pack=touch {marker};:"}),
        ("{repo}", {"branch": "--upload-pack=touch {marker};:"}),
        ("ext::sh -c touch% {marker}", {}),
    ],
)
def test_an_option_or_a_command_is_never_taken_for_a_repository_or_a_ref(
    repo: Path, tmp_path: Path, url: str, kwargs: dict[str, str]
) -> None:
    marker = tmp_path / "ran"
    url = url.format(marker=marker, repo=repo.as_uri())
    kwargs = {k: v.format(marker=marker) for k, v in kwargs.items()}
    with pytest.raises(UsageError, match=r"not a git repository URL|not a git ref"):
        resolve_commit(url, cache_dir=tmp_path / "cache", **kwargs)
    with pytest.raises(UsageError, match="not a git repository URL"):
        checkout(f"--upload-pack=touch {marker};:", "0" * 40, tmp_path / "c")
    assert not marker.exists()
