"""Isolated worktrees: each run works on its own branch ``promptrail/<run-id>`` in a folder of
its own, so the user's working tree and index are never touched and concurrent runs never collide.

The folders live in the user's cache (``$XDG_CACHE_HOME/promptrail/worktrees``), not under the
git common dir: the Claude Code CLI treats every path below a ``.git`` folder as sensitive and
refuses to edit it, so a worktree inside ``.git/`` would leave the agent unable to work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from promptrail.errors import PromptrailError
from promptrail.gitops.repo import Repo

BRANCH_PREFIX = "promptrail/"


def branch_for(run_id: str) -> str:
    return BRANCH_PREFIX + run_id


def worktree_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "promptrail" / "worktrees"


def worktree_path(repo: Repo, run_id: str) -> Path:
    # One folder per repository, named so a person browsing the cache can tell which is which.
    tag = hashlib.sha1(str(repo.common_dir).encode()).hexdigest()[:8]
    return worktree_root() / f"{repo.root.name}-{tag}" / run_id


def create(repo: Repo, run_id: str, base_sha: str | None) -> tuple[Path, str]:
    """Make the run's worktree on a new branch at ``base_sha`` (an unborn branch when the
    repository has no commits yet, so the run's commit becomes a root commit)."""
    path, branch = worktree_path(repo, run_id), branch_for(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with repo.write_lock():
        if base_sha is None:
            _create_unborn(repo, path, branch, run_id)
        else:
            result = repo.run("worktree", "add", "-q", "-b", branch, str(path), base_sha)
            if not result.ok:
                raise PromptrailError(f"could not create the run's worktree: {result.output}")
    return path, branch


def _create_unborn(repo: Repo, path: Path, branch: str, name: str) -> None:
    # `git worktree add --orphan` only exists from git 2.42; on older git we lay out the
    # worktree's admin files exactly as `git worktree add` does, with HEAD on an unborn branch.
    admin = repo.common_dir / "worktrees" / f"promptrail-{name}"
    admin.mkdir(parents=True, exist_ok=False)
    path.mkdir(parents=True, exist_ok=False)
    (admin / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    (admin / "commondir").write_text("../..\n")
    (admin / "gitdir").write_text(f"{path / '.git'}\n")
    (path / ".git").write_text(f"gitdir: {admin}\n")


def drop_unused_branch(repo: Repo, branch: str, base_sha: str | None) -> bool:
    """Delete a run's branch that got no commit of its own (it still points at ``base_sha``), so a
    run that changed nothing leaves no branch behind. The delete names the expected value: a branch
    someone moved in the meantime stays. True when no such branch is left."""
    if base_sha is None:  # an empty repository: the run's branch was never born
        return True
    with repo.write_lock():
        return repo.run("update-ref", "-d", f"refs/heads/{branch}", base_sha).ok


def remove(repo: Repo, path: Path) -> None:
    """Remove a worktree folder and its admin entry (the branch and its commits stay)."""
    with repo.write_lock():
        result = repo.run("worktree", "remove", "--force", str(path))
        if not result.ok and path.exists():
            shutil.rmtree(path, ignore_errors=True)
        repo.run("worktree", "prune")
        # The repository's folder in the cache goes with its last worktree (git makes it anew).
        with contextlib.suppress(OSError):
            path.parent.rmdir()
