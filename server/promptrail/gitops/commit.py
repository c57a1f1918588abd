"""Turning a run's changes into one real git commit, hooks included.

Author and committer are the user (the AI is marked in the trailer and the note, not in the
identity, so commit signing and attribution rules keep working). Hooks run as usual (never
``--no-verify``); a rejecting hook is an outcome (``CommitOutcome.hook_output``), not an
exception. Commits and notes on one repository are serialised by ``Repo.write_lock``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptrail.gitops.repo import Identity, Repo

NOTES_REF = "refs/notes/promptrail"
TRAILER = "Promptrail-Run"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # added | modified | deleted | renamed | copied | typechange
    additions: int | None
    deletions: int | None
    old_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "old_path": self.old_path, "status": self.status,
                "additions": self.additions, "deletions": self.deletions}


@dataclass
class CommitOutcome:
    sha: str | None = None
    hook_output: str | None = None
    files: list[FileChange] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return self.sha is not None


_STATUS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "C": "copied", "T": "typechange"}


def commit_message(summary: str, prompt: str, run_id: str, agent_label: str) -> str:
    """The message of a run's commit. Its text is the user's (or a hostile) prompt, and ``git log``
    prints it raw: its control characters are escaped, so it can never drive a terminal."""
    summary = without_controls(summary)
    body = without_controls(prompt.strip())
    lines = [summary, ""]
    if body and body != summary:
        lines += [body, ""]
    lines.append(f"Agent: {agent_label}")
    lines += ["", f"{TRAILER}: {run_id}"]
    return "\n".join(lines) + "\n"


#: Every C0 control but newline and tab, DEL and every C1 control, as ``\\xNN`` (CR as ``\\r``).
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)] if code not in (0x09, 0x0A)}
_CONTROL_ESCAPES[0x0D] = "\\r"
#: The bidirectional embeddings, overrides and isolates, as ``\\uNNNN``: they reorder how the rest of
#: a line is displayed, so a prompt or file name could show one thing and say another (CVE-2021-42574).
#: The marks (U+200E, U+200F, U+061C) stay: they only nudge neutral characters in real RTL text.
_BIDI_CONTROLS = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROL_ESCAPES.update({code: f"\\u{code:04x}" for code in _BIDI_CONTROLS})


def without_controls(text: str) -> str:
    """``text`` with the characters that drive a terminal (ESC, BEL, CR...) or reorder its display
    (bidi overrides) shown as escapes."""
    return text.translate(_CONTROL_ESCAPES)


def one_line(path: str) -> str:
    """A file name kept on one line, a newline or tab in it shown as ``\\n`` / ``\\t`` (as git quotes
    them): in a log line or a table, such a name could otherwise pass for another line or name."""
    return path.replace("\n", "\\n").replace("\t", "\\t")


def summarize(prompt: str, width: int = 72) -> str:
    """The prompt's first non-empty line, cut to ``width`` characters at a word boundary."""
    first = next((line.strip() for line in prompt.splitlines() if line.strip()), "(empty prompt)")
    if len(first) <= width:
        return first
    cut = first[: width - 1].rsplit(" ", 1)[0] or first[: width - 1]
    return cut + "…"


def changes_in_commit(repo: Repo, sha: str) -> list[FileChange]:
    """Files a commit changed against its first parent (or the empty tree for a root commit)."""
    parent = repo.run("rev-parse", "-q", "--verify", f"{sha}^1")
    base = parent.stdout.strip() if parent.ok else EMPTY_TREE
    return _diff(repo, [base, sha])


def staged_changes(repo: Repo, cwd: Path, env: dict[str, str] | None = None) -> list[FileChange]:
    head = repo.run("rev-parse", "-q", "--verify", "HEAD", cwd=cwd, env=env)
    return _diff(repo, ["--cached", head.stdout.strip() if head.ok else EMPTY_TREE], cwd=cwd, env=env)


def _diff(repo: Repo, spec: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> list[FileChange]:
    numstat = repo.run("diff", "-M", "--numstat", "-z", *spec, cwd=cwd, env=env).stdout
    names = repo.run("diff", "-M", "--name-status", "-z", *spec, cwd=cwd, env=env).stdout
    counts: dict[str, tuple[int | None, int | None]] = {}
    parts = numstat.split("\0")
    i = 0
    while i < len(parts) - 1:
        fields = parts[i].split("\t", 2)  # the path itself may hold a tab
        if len(fields) == 3 and fields[2] == "":  # rename: "a\td\t" NUL old NUL new
            path, i = parts[i + 2], i + 3
        else:
            path, i = fields[2], i + 1
        add, delete = fields[0], fields[1]
        counts[path] = (None if add == "-" else int(add), None if delete == "-" else int(delete))
    changes: list[FileChange] = []
    parts = names.split("\0")
    i = 0
    while i < len(parts) - 1:
        code = parts[i]
        if code[:1] in ("R", "C"):
            old, path, i = parts[i + 1], parts[i + 2], i + 3
        else:
            old, path, i = None, parts[i + 1], i + 2
        add, delete = counts.get(path, (None, None))
        changes.append(FileChange(path, _STATUS.get(code[:1], code), add, delete, old))
    return changes


def commit_worktree(repo: Repo, worktree: Path, message: str, identity: Identity) -> CommitOutcome:
    """Stage everything in an isolated worktree and commit it. No changes → no commit, no files."""
    env = identity.as_env()
    repo.run("add", "-A", cwd=worktree, env=env)
    if not staged_changes(repo, worktree, env):
        return CommitOutcome()
    return _commit(repo, worktree, message, env)


def commit_paths(repo: Repo, paths: list[str], message: str, identity: Identity) -> CommitOutcome:
    """Direct mode: commit only ``paths`` of the user's working tree.

    A private index is built from HEAD plus those paths, so whatever the user had staged stays
    staged and nothing else is swept in; afterwards the user's index learns the new content of
    exactly those paths (they were clean before the run, so their entries equalled HEAD)."""
    if not paths:
        return CommitOutcome()
    # Under the lock from reading HEAD to committing: an index built from an older HEAD would
    # commit that older tree, undoing whatever another commit added to the branch in between.
    with repo.write_lock(), tempfile.TemporaryDirectory(prefix="promptrail-index-") as tmp:
        env = {**identity.as_env(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        if repo.head_sha():
            repo.run("read-tree", "HEAD", env=env)
        repo.run("add", "-A", "--", *paths, env=env)
        if not staged_changes(repo, repo.root, env):
            return CommitOutcome()
        outcome = _commit(repo, repo.root, message, env)
        if outcome.committed:
            repo.run("reset", "-q", "--", *paths)
    return outcome


def _commit(repo: Repo, cwd: Path, message: str, env: dict[str, str]) -> CommitOutcome:
    with repo.write_lock():
        result = repo.run("commit", "-q", "-F", "-", cwd=cwd, env=env, stdin=message)
        if not result.ok:
            return CommitOutcome(hook_output=result.output or f"git commit exited with {result.status}")
        sha = repo.run("rev-parse", "HEAD", cwd=cwd).stdout.strip()
    # Files come from the commit itself: a hook may have reformatted or added content.
    return CommitOutcome(sha=sha, files=changes_in_commit(repo, sha))


def ignored_paths(repo: Repo, worktree: Path) -> list[str]:
    """Files in ``worktree`` that .gitignore (or info/exclude) keeps out of git, an ignored folder as
    one ``folder/`` entry (a node_modules is one line, not 100,000)."""
    out = repo.run("ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z", cwd=worktree).stdout
    return sorted(path for path in out.split("\0") if path)


def add_note(repo: Repo, sha: str, metadata: dict[str, Any]) -> None:
    note = json.dumps(metadata, sort_keys=True, indent=2, ensure_ascii=False)
    with repo.write_lock():
        repo.run("notes", f"--ref={NOTES_REF}", "add", "-f", "-F", "-", sha, stdin=note)


def read_note(repo: Repo, sha: str) -> dict[str, Any] | None:
    result = repo.run("notes", f"--ref={NOTES_REF}", "show", sha)
    if not result.ok:
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return None


# -- direct mode: which paths did the agent change? --------------------------------------------
SNAPSHOT_REFS = "refs/promptrail/snapshots/"


def snapshot_working_tree(repo: Repo, run_id: str, identity: Identity) -> str | None:
    """Save the user's uncommitted work (tracked changes and untracked, not ignored, files) as a
    commit under ``refs/promptrail/snapshots/<run-id>`` before a direct-mode agent may overwrite
    it; None when the working tree is clean. Built in a private index: the user's is untouched."""
    with tempfile.TemporaryDirectory(prefix="promptrail-snapshot-") as tmp:
        env = {**identity.as_env(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        head = repo.head_sha()
        if head:
            repo.run("read-tree", "HEAD", env=env)
        repo.run("add", "-A", env=env)
        tree = repo.run("write-tree", env=env).stdout.strip()
    if head and tree == repo.run("rev-parse", f"{head}^{{tree}}").stdout.strip():
        return None
    if not head and tree == EMPTY_TREE:
        return None
    parents = ["-p", head] if head else []
    sha = repo.run("commit-tree", tree, *parents, "-m", f"promptrail: your uncommitted work before run {run_id}",
                   env=identity.as_env()).stdout.strip()
    repo.run("update-ref", SNAPSHOT_REFS + run_id, sha)
    return sha


def operation_in_progress(repo: Repo) -> str | None:
    """The git operation left unfinished in the working tree (merge, rebase...), if any: a
    direct-mode commit in the middle of one would complete it with the wrong content."""
    git_dir = Path(repo.run("rev-parse", "--absolute-git-dir").stdout.strip())
    for marker, name, how in (("MERGE_HEAD", "merge", "git merge --abort"),
                              ("rebase-merge", "rebase", "git rebase --abort"),
                              ("rebase-apply", "rebase", "git rebase --abort"),
                              ("CHERRY_PICK_HEAD", "cherry-pick", "git cherry-pick --abort"),
                              ("REVERT_HEAD", "revert", "git revert --abort")):
        if (git_dir / marker).exists():
            return f"a {name} is in progress; finish it or abort it (`{how}`)"
    if repo.run("ls-files", "--unmerged").stdout.strip():
        return "the index has unresolved conflicts; resolve them first"
    return None

def working_tree_state(repo: Repo) -> dict[str, str | None]:
    """Every path that differs from HEAD (staged, unstaged or untracked) → a hash of its bytes
    in the working tree (None when deleted)."""
    out = repo.run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames").stdout
    state: dict[str, str | None] = {}
    for entry in out.split("\0"):
        if len(entry) > 3:
            path = entry[3:]
            state[path] = _file_digest(repo.root / path)
    return state


def changed_since(repo: Repo, before: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """Compare the working tree to a snapshot: (paths the agent changed that were clean before,
    paths the agent changed that already had the user's uncommitted changes)."""
    after = working_tree_state(repo)
    clean, conflicting = [], []
    for path in sorted(set(after) | set(before)):
        if path in before:
            if _file_digest(repo.root / path) != before[path]:
                conflicting.append(path)
        elif path in after:
            clean.append(path)
    return clean, conflicting


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
