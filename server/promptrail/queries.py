"""Questions about past runs, answered the same way for every face.

``run_json`` is THE shape of a run (``show --json``, ``promptrail.showRun``, the demo);
``lens_title`` is THE one-line label of a run (code lenses, ``blame``), its gate label kept current
by ``with_live_gate``. ``Attribution`` answers "which run wrote each line of this file", with the
caching the editor needs.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from promptrail.audit.store import RUN_TOKEN_COLUMNS
from promptrail.errors import PromptrailError
from promptrail.gitops.attribution import LineGroup, blame_lines, group_lines
from promptrail.workspace import Workspace

#: Files above these sizes get one summary lens instead of a blame (never a blocked request).
BIG_FILE_LINES = 20_000
BIG_FILE_BYTES = 2_000_000


def run_json(workspace: Workspace, run_ref: str) -> dict[str, Any]:
    from promptrail.gates import gate_state

    store = workspace.store
    run_id = store.resolve_run_id(run_ref)
    row = store.get_run(run_id)
    assert row is not None
    data = run_dict(row, store.run_files(run_id))
    data["violations"] = store.violations(run_id)
    if row.get("commit_sha"):
        try:
            data["gate"] = {"status": row.get("gate_status"), **gate_state(workspace, row).as_dict()}
            data["gate"]["status"] = data["gate"]["label"]
        except PromptrailError as exc:  # a malformed policy must show, not hide the run
            data["gate"] = {"status": "policy error", "error": str(exc)}
    return data


def run_dict(row: dict[str, Any], files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    tokens = {key: row.get(col) for key, col in RUN_TOKEN_COLUMNS.items()}
    data = {
        "id": row["id"], "prompt": row["prompt"], "summary": row.get("summary"),
        "actor": {"name": row.get("actor_name"), "email": row.get("actor_email")},
        "agent": row.get("agent"), "agent_label": row.get("agent_label"), "model": row.get("model"),
        "mode": row.get("mode"), "status": row.get("status"), "base_sha": row.get("base_sha"),
        "commit_sha": row.get("commit_sha"), "branch": row.get("branch"), "worktree": row.get("worktree"),
        "tokens": tokens if any(v is not None for v in tokens.values()) else
        {key: None for key in tokens},
        "cost_usd": row.get("cost_usd"), "cost_source": row.get("cost_source"),
        "cost_reported_usd": row.get("cost_reported_usd"), "cost_computed_usd": row.get("cost_computed_usd"),
        "cost_mismatch": bool(row.get("cost_mismatch")), "price_table": row.get("price_table"),
        "num_turns": row.get("num_turns"), "session_id": row.get("session_id"),
        "started_at": row.get("started_at"), "ended_at": row.get("ended_at"), "error": row.get("error"),
        "claude_md_sha": row.get("claude_md_sha"), "target_branch": row.get("target_branch"),
        "reverts_run_id": row.get("reverts_run_id"),
        "gate": {"status": row.get("gate_status")},
        "policy_change": bool(row.get("policy_change")),
    }
    if files is not None:
        data["files"] = files
    return data


def history(workspace: Workspace, *, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    rows = workspace.store.list_runs(search=search, limit=_row_limit(limit))
    return [run_dict(with_live_gate(workspace, row)) for row in rows]


def feed(workspace: Workspace, *, limit: int = 100) -> list[dict[str, Any]]:
    return workspace.store.feed(limit=_row_limit(limit))


def _row_limit(limit: int) -> int:
    """How many rows a listing may return: at least one; any larger number means "all" (SQLite
    takes at most a 64-bit integer)."""
    if limit < 1:
        raise PromptrailError(f"the limit must be 1 or more, not {limit}")
    return min(int(limit), 2**62)


def run_log(workspace: Workspace, run_ref: str) -> list[dict[str, Any]]:
    return workspace.store.log(workspace.store.resolve_run_id(run_ref))


def run_diff(workspace: Workspace, run_ref: str) -> str:
    row = workspace.store.get_run(workspace.store.resolve_run_id(run_ref))
    assert row is not None
    if not row.get("commit_sha"):
        raise PromptrailError(f"run {row['id']} has no commit (status: {row['status']}); nothing to diff")
    return workspace.repo.check("show", "--format=fuller", "--stat", "--patch", "--no-color", row["commit_sha"])


# -- labels -------------------------------------------------------------------------------------
def format_cost(cost: float | None) -> str:
    if cost is None:
        return "cost unknown"
    if cost < 0.01:
        return f"${cost:.4f}"
    return f"${cost:.3f}" if cost < 10 else f"${cost:,.2f}"


def format_tokens(row: dict[str, Any]) -> str:
    total = sum(row.get(col) or 0 for col in RUN_TOKEN_COLUMNS.values())
    if total >= 1_000_000:
        return f"{total / 1_000_000:.1f}M tok"
    return f"{total / 1000:.1f}k tok" if total >= 1000 else f"{total} tok"


def with_live_gate(workspace: Workspace, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its gate label as of now (``gates.current_label``): the stored one goes stale
    when the run's branch moves. For every label shown (lens titles, ``history``, ``blame``)."""
    from promptrail.gates import current_label

    return {**row, "gate_status": current_label(workspace, row)}


def lens_title(row: dict[str, Any]) -> str:
    """The one-line label of a run; pass ``with_live_gate(row)`` for a gate label as of now."""
    gate = row.get("gate_status")
    tail = f"gate: {gate}" if gate else row.get("status", "")
    replay = " (replay)" if row.get("agent") == "replay" else ""
    return f"✦ {row.get('summary') or row['prompt']}{replay} · {format_cost(row.get('cost_usd'))} · " \
           f"{format_tokens(row)} · {tail}"


# -- attribution ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileAttribution:
    """``groups`` of lines by run; ``summary_only`` when the file was too big to blame."""

    groups: list[LineGroup]
    line_runs: list[str | None]
    summary_only: bool = False
    runs: dict[str, dict[str, Any]] | None = None


class Attribution:
    """Line → run for files of one workspace, cached per (path, HEAD, text hash)."""

    CACHE_SIZE = 256

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._cache: dict[tuple[str, str | None, str], FileAttribution] = {}
        self._touched: tuple[int, set[str]] | None = None
        self._lock = threading.Lock()

    def touched(self, relpath: str) -> bool:
        """Did any run ever change this path? (No blame at all for files no run touched.)"""
        store = self.workspace.store
        version = store.run_files_version()
        with self._lock:
            if self._touched is None or self._touched[0] != version:
                self._touched = (version, store.touched_paths())
            return relpath in self._touched[1]

    def for_file(self, relpath: str, text: str | None = None) -> FileAttribution:
        if not self.touched(relpath):
            return FileAttribution([], [])
        repo = self.workspace.repo
        head = repo.head_sha_fast()
        content = text if text is not None else _read(repo.root / relpath)
        key = (relpath, head, hashlib.sha1(content.encode("utf-8", "surrogatepass")).hexdigest())
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(content) > BIG_FILE_BYTES or content.count("\n") > BIG_FILE_LINES:
            result = FileAttribution([], [], summary_only=True)
        else:
            shas = blame_lines(repo, relpath, text)
            run_of = self.workspace.resolver.resolve(set(shas))
            runs = self.workspace.store.runs_by_ids({r for r in run_of.values() if r})
            result = FileAttribution(group_lines(shas, run_of), [run_of.get(s) for s in shas], runs=runs)
        with self._lock:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = result
        return result


def file_summary(workspace: Workspace, relpath: str) -> dict[str, Any] | None:
    """For a file too big to blame: the runs in HEAD's history that changed it and what they cost
    (``git log -- path`` is cheap next to a blame of such a file). None when no run changed it."""
    shas = set(workspace.repo.run("log", "--format=%H", "--", relpath).stdout.split())
    run_of = workspace.resolver.resolve(shas)
    runs = workspace.store.runs_by_ids({run_id for run_id in run_of.values() if run_id})
    if not runs:
        return None
    costs = [row["cost_usd"] for row in runs.values() if row.get("cost_usd") is not None]
    latest = max(runs.values(), key=lambda row: row.get("started_at") or "")
    count = f"{len(runs)} AI run{'s' if len(runs) != 1 else ''}"
    total = format_cost(sum(costs)) + (" total" if len(costs) == len(runs) else " known")
    return {"runs": len(runs), "cost_usd": sum(costs) if costs else None, "latest_run_id": latest["id"],
            "title": f"✦ {count} changed this file · {total} · too large for line lenses"}


def _read(path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except (FileNotFoundError, IsADirectoryError):
        return ""


def blame(workspace: Workspace, path: str, rev: str | None = None) -> list[dict[str, Any]]:
    """``promptrail blame FILE [--rev REV]``: every line with its run (or None), in the working
    tree or as of ``rev`` (for example a run's branch before it is merged)."""
    from pathlib import Path

    repo = workspace.repo
    shown_rev = rev
    if not path:
        raise PromptrailError("no file given; `promptrail blame FILE`")
    relpath = repo.relpath(Path(path) if rev is None or Path(path).is_absolute() else repo.root / path)
    if relpath == ".git" or relpath.startswith(".git/"):
        raise PromptrailError(f"{path} is inside .git; blame a file of the working tree")
    if rev is None:
        absolute = workspace.root / relpath
        if absolute.is_dir():
            raise PromptrailError(f"{path} is a folder; blame a file in it")
        if not absolute.is_file():
            raise PromptrailError(f"{path}: no such file in the working tree")
        with absolute.open("rb") as handle:
            if b"\0" in handle.read(8192):
                raise PromptrailError(f"{path} is a binary file; blame shows text files")
        text = _read(absolute)
    else:
        rev = _commit_of(repo, rev)
        kind = repo.run("cat-file", "-t", f"{rev}:{relpath}").stdout.strip()
        if kind == "tree":
            raise PromptrailError(f"{path} is a folder at '{shown_rev}'; blame a file in it")
        if kind != "blob":
            raise PromptrailError(f"{path} does not exist at '{shown_rev}'")
        text = repo.check("cat-file", "blob", f"{rev}:{relpath}")
    shas = blame_lines(repo, relpath, rev=rev)
    run_of = workspace.resolver.resolve(set(shas))
    runs = {run_id: with_live_gate(workspace, row)
            for run_id, row in workspace.store.runs_by_ids({r for r in run_of.values() if r}).items()}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for number, line in enumerate(lines):
        sha = shas[number] if number < len(shas) else None
        run_id = run_of.get(sha) if sha else None
        row = runs.get(run_id) if run_id else None
        out.append({"line": number + 1, "text": line, "commit": sha, "run_id": run_id,
                    "label": lens_title(row) if row else None})
    return out


def _commit_of(repo, rev: str) -> str:
    """The commit SHA ``rev`` names; never read as an option (``--output=…`` is a revision here)."""
    if rev.startswith("-") or not rev.strip():
        raise PromptrailError(f"'{rev}' is not a revision; name a commit, branch or tag (e.g. promptrail/RUN-ID)")
    resolved = repo.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not resolved.ok:
        raise PromptrailError(f"unknown revision '{rev}'; name a commit, branch or tag (e.g. promptrail/RUN-ID)")
    return resolved.stdout.strip()
