"""Which run wrote which line: ``git blame`` mapped to runs, grouped the way lenses show them.

A blamed commit maps to a run through the audit store (commit SHA → run) first, because that
is one indexed query and authoritative; then through its ``Promptrail-Run`` trailer (which
survives cherry-picks and rebases that change the SHA) and finally its git note. Commit → run
answers are immutable, so they are cached for the life of the process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from promptrail.audit.store import AuditStore
from promptrail.gitops.commit import NOTES_REF, TRAILER, read_note
from promptrail.gitops.repo import Repo

UNCOMMITTED = "0" * 40


@dataclass(frozen=True)
class LineGroup:
    """Lines ``start``..``end`` (0-based, inclusive) were written by run ``run_id``."""

    start: int
    end: int
    run_id: str
    commit: str


def parse_porcelain(output: str) -> list[str]:
    """``git blame --porcelain`` → the commit SHA of each final line, in order."""
    shas: list[str] = []
    expect_header = True
    for line in output.split("\n"):
        if expect_header:
            if len(line) >= 40 and line[40:41] == " ":
                shas.append(line[:40])
                expect_header = False
        elif line.startswith("\t"):
            expect_header = True
    return shas


def blame_lines(repo: Repo, relpath: str, contents: str | None = None, rev: str | None = None) -> list[str]:
    """One commit SHA per line of the file (``UNCOMMITTED`` for lines not yet committed).
    With ``contents``, blames that text (an editor's unsaved buffer) instead of the file;
    with ``rev``, the file as of that commit."""
    if repo.head_sha_fast() is None:
        return []
    args = ["blame", "--porcelain", "-M", "-C"]
    if contents is not None:
        args += ["--contents", "-"]
    if rev is not None:
        args.append(rev)
    result = repo.run(*args, "--", relpath, stdin=contents)
    if not result.ok:
        return []
    return parse_porcelain(result.stdout)


class RunResolver:
    """Commit SHA → run id, cached (commits never change)."""

    def __init__(self, repo: Repo, store: AuditStore) -> None:
        self.repo, self.store = repo, store
        self._known: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def resolve(self, shas: set[str]) -> dict[str, str | None]:
        shas = {s for s in shas if s != UNCOMMITTED}
        with self._lock:
            unknown = {s for s in shas if s not in self._known}
        if unknown:
            found = {sha: row["id"] for sha, row in self.store.runs_by_commit(unknown).items()}
            rest = unknown - set(found)
            if rest:
                found.update(self._from_trailers(rest))
                for sha in rest - set(found):
                    note = read_note(self.repo, sha) if self._has_notes() else None
                    found[sha] = note.get("run_id") if isinstance(note, dict) else None
            with self._lock:
                # Misses are cached too: every run commit carries the trailer, so a commit that has
                # none (and no note) is not a run's, now or later.
                self._known.update(found)
        with self._lock:
            return {sha: self._known.get(sha) for sha in shas}

    def _from_trailers(self, shas: set[str]) -> dict[str, str | None]:
        fmt = f"%H%x00%(trailers:key={TRAILER},valueonly,separator=%x2C)%x00"
        out = self.repo.run("log", "--no-walk=unsorted", "--stdin", f"--format={fmt}",
                            stdin="\n".join(shas) + "\n").stdout
        parts = out.split("\0")
        found: dict[str, str | None] = {}
        for i in range(0, len(parts) - 1, 2):
            sha = parts[i].strip()
            value = parts[i + 1].strip().split(",")[0].strip()
            if sha:
                found[sha] = value or None
        return found

    def _has_notes(self) -> bool:
        return self.repo.run("rev-parse", "-q", "--verify", NOTES_REF).ok


def group_lines(shas: list[str], run_of: dict[str, str | None]) -> list[LineGroup]:
    """Contiguous lines from the same run become one group."""
    groups: list[LineGroup] = []
    for number, sha in enumerate(shas):
        run_id = run_of.get(sha)
        if run_id is None:
            continue
        last = groups[-1] if groups else None
        if last and last.run_id == run_id and last.end == number - 1:
            groups[-1] = LineGroup(last.start, number, run_id, last.commit)
        else:
            groups.append(LineGroup(number, number, run_id, sha))
    return groups
