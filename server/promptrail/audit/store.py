"""The audit store: every run, log line, changed file and feed event of one repository.

One SQLite file per repository at ``<git common dir>/promptrail/audit.db`` (worktrees share it),
in WAL mode so the language server, the CLI and concurrent runs can read and write at once.
The schema evolves only through the numbered ``MIGRATIONS``; a database written by a newer
promptrail is refused, never altered. Methods are thread-safe (one connection behind a lock):
the language server calls them from worker threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils

from promptrail.audit import ledger
from promptrail.errors import PromptrailError


_second_cache: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The current UTC time as ``2026-12-03T18:45:56.123Z`` (cheap: log lines call it per line)."""
    global _second_cache
    now = time.time()
    second = int(now)
    if second != _second_cache[0]:
        _second_cache = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_cache[1]}.{int((now - second) * 1000):03d}Z"


def _migration_1(db: sqlite_utils.Database) -> None:
    db["runs"].create({
        "id": str, "prompt": str, "summary": str, "actor_name": str, "actor_email": str,
        "agent": str, "agent_label": str, "model": str, "mode": str, "status": str,
        "base_sha": str, "commit_sha": str, "branch": str, "worktree": str, "repo_root": str,
        "claude_md_sha": str, "session_id": str, "num_turns": int,
        "tokens_input": int, "tokens_output": int, "tokens_cache_read": int, "tokens_cache_write": int,
        "cost_usd": float, "cost_source": str, "started_at": str, "ended_at": str, "error": str,
        "pid": int, "host": str, "gate_status": str,
    }, pk="id")
    db["runs"].create_index(["commit_sha"])
    db["runs"].create_index(["started_at"])
    db["runs"].enable_fts(["prompt"], create_triggers=True, tokenize="porter")
    db["log_entries"].create({"run_id": str, "seq": int, "ts": str, "kind": str, "text": str},
                             pk=("run_id", "seq"))
    db["run_files"].create({"run_id": str, "path": str, "old_path": str, "status": str,
                            "additions": int, "deletions": int}, pk=("run_id", "path"))
    db["run_files"].create_index(["path"])
    db.execute("""CREATE TABLE events (
        seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL, run_id TEXT, actor TEXT,
        data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""")
    db["events"].create_index(["run_id"])


def _migration_2(db: sqlite_utils.Database) -> None:
    """Quality gates: the branch a run targets, sign-offs bound to a SHA, check results."""
    db["runs"].add_column("target_branch", str)
    db["runs"].add_column("reverts_run_id", str)
    db["signoffs"].create({"id": int, "run_id": str, "commit_sha": str, "actor_name": str, "actor_email": str,
                           "decision": str, "comment": str, "ts": str}, pk="id")
    db["signoffs"].create_index(["run_id"])
    db["checks"].create({"id": int, "run_id": str, "commit_sha": str, "name": str, "command": str,
                         "exit_code": int, "status": str, "duration_ms": int, "output": str, "ts": str}, pk="id")
    db["checks"].create_index(["run_id"])


def _migration_3(db: sqlite_utils.Database) -> None:
    """CLAUDE.md rule violations found by a run's check, and the run's ``policy_change`` flag
    (1 when the run changed a CLAUDE.md or .promptrail.toml; NULL for runs never checked)."""
    db["violations"].create({
        "id": int, "run_id": str, "rule_id": str, "path": str, "line": int, "start_col": int, "end_col": int,
        "severity": str, "message": str, "source": str, "rule_file": str, "rule_line": int,
    }, pk="id")
    db["violations"].create_index(["run_id"])
    db["violations"].create_index(["path"])
    db["runs"].add_column("policy_change", int)


#: Numbered migrations; index + 1 is the schema version they produce. Append, never edit.
def _migration_4(db: sqlite_utils.Database) -> None:
    """Costs: the agent's reported cost and the cost computed from tokens, kept side by side."""
    db["runs"].add_column("cost_reported_usd", float)
    db["runs"].add_column("cost_computed_usd", float)
    db["runs"].add_column("cost_mismatch", int, not_null_default=0)
    db["runs"].add_column("price_table", str)


MIGRATIONS = [_migration_1, _migration_2, _migration_3, _migration_4]
SCHEMA_VERSION = len(MIGRATIONS)

RUN_TOKEN_COLUMNS = {"input": "tokens_input", "output": "tokens_output",
                     "cache_read": "tokens_cache_read", "cache_write": "tokens_cache_write"}


class AuditStore:
    """All reads and writes of one repository's audit database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock
        # up front instead of failing half-way through a transaction.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._migrate()
        # Log lines arrive by the hundred thousand from a writer thread: they get their own
        # connection, so readers (lens requests) never queue behind a batch insert (WAL lets
        # readers and one writer proceed together).
        self._log_conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._log_conn.execute("PRAGMA busy_timeout=30000")
        self._log_conn.execute("PRAGMA synchronous=NORMAL")
        self._log_lock = threading.Lock()

    def close(self) -> None:
        with self._lock, self._log_lock:
            self.conn.close()
            self._log_conn.close()

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise PromptrailError(
                    f"the audit database {self.path} has schema version {version}, newer than this "
                    f"promptrail understands ({SCHEMA_VERSION}); upgrade promptrail to read it")
            if version == SCHEMA_VERSION:
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-read inside the lock: another process may have migrated meanwhile.
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                for number in range(version, SCHEMA_VERSION):
                    MIGRATIONS[number](self.db)
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def _write(self):
        return _WriteTransaction(self)

    # -- runs -----------------------------------------------------------------------------
    def insert_run(self, row: dict[str, Any], *, event_actor: str | None) -> None:
        with self._write() as conn:
            self.db["runs"].insert(row)
            head = ledger.append(conn, ts=row["started_at"], kind="run.started", run_id=row["id"],
                                 actor=event_actor, data={"prompt": row["prompt"], "agent": row["agent"],
                                                          "model": row["model"], "mode": row["mode"],
                                                          "base_sha": row["base_sha"]})
            self._write_anchor(head)

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._write():
            self.db["runs"].update(run_id, fields)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return rows[0] if rows else None

    def resolve_run_id(self, ref: str) -> str:
        """A full run id or a unique prefix of one → the full id (PromptrailError otherwise)."""
        ref = ref.strip()
        if not ref:
            raise PromptrailError("no run id given; `promptrail history` lists the runs")
        with self._lock:
            matches = [r[0] for r in self.conn.execute(
                "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY started_at LIMIT 3",
                [ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"])]
        if not matches:
            raise PromptrailError(f"unknown run id '{ref}'; `promptrail history` lists the runs")
        if len(matches) > 1:
            raise PromptrailError(f"run id prefix '{ref}' is ambiguous ({', '.join(matches[:2])}, ...); "
                                  "type more characters")
        return matches[0]

    def list_runs(self, *, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            if search:
                sql = ("SELECT runs.* FROM runs JOIN runs_fts ON runs.rowid = runs_fts.rowid "
                       "WHERE runs_fts MATCH ? ORDER BY runs.started_at DESC LIMIT ?")
                try:
                    return list(self.db.query(sql, [_fts_query(search), limit]))
                except sqlite3.OperationalError as exc:
                    raise PromptrailError(f"bad search text '{search}': {exc}") from None
            return list(self.db.query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", [limit]))

    def runs_by_commit(self, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        shas = list(set(shas))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(shas), 500):
                chunk = shas[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self.db.query(f"SELECT * FROM runs WHERE commit_sha IN ({marks})", chunk):
                    found[row["commit_sha"]] = row
        return found

    def runs_by_ids(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(set(run_ids))
        if not ids:
            return {}
        with self._lock:
            marks = ",".join("?" * len(ids))
            return {row["id"]: row for row in self.db.query(f"SELECT * FROM runs WHERE id IN ({marks})", ids)}

    def runs_left_running(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(
                "SELECT * FROM runs WHERE status IN ('queued', 'running', 'committing')"))

    # -- files ----------------------------------------------------------------------------
    def set_run_files(self, run_id: str, files: list[dict[str, Any]]) -> None:
        with self._write():
            self.db["run_files"].delete_where("run_id = ?", [run_id])
            self.db["run_files"].insert_all([{"run_id": run_id, **f} for f in files])

    def run_files(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(
                "SELECT path, old_path, status, additions, deletions FROM run_files "
                "WHERE run_id = ? ORDER BY path", [run_id]))

    def touched_paths(self) -> set[str]:
        """Every path any run ever changed (the lens layer skips blame for all others)."""
        with self._lock:
            return {r[0] for r in self.conn.execute("SELECT DISTINCT path FROM run_files")} | {
                r[0] for r in self.conn.execute(
                    "SELECT DISTINCT old_path FROM run_files WHERE old_path IS NOT NULL")}

    def run_files_version(self) -> tuple[int, int]:
        """Changes whenever a run's files are recorded (cache key for ``touched_paths``); log
        writes, which happen constantly during a run, do not change it."""
        with self._lock:
            return tuple(self.conn.execute("SELECT COALESCE(MAX(rowid), 0), COUNT(*) FROM run_files").fetchone())

    def query(self, sql: str, params: list[Any] | None = None, *, scalar: bool = False) -> Any:
        """A read-only query for aggregate reports (costs); rows as dicts, or one value."""
        with self._lock:
            if scalar:
                return self.conn.execute(sql, params or []).fetchone()[0]
            return list(self.db.query(sql, params or []))

    # -- gates ----------------------------------------------------------------------------------
    def add_signoff(self, row: dict[str, Any]) -> None:
        with self._write():
            self.db["signoffs"].insert(row)

    def signoffs(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query("SELECT * FROM signoffs WHERE run_id = ? ORDER BY id", [run_id]))

    def add_check(self, row: dict[str, Any]) -> None:
        with self._write():
            self.db["checks"].insert(row)

    def checks(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query("SELECT * FROM checks WHERE run_id = ? ORDER BY id", [run_id]))

    # -- violations -------------------------------------------------------------------------
    VIOLATION_COLUMNS = ("rule_id", "path", "line", "start_col", "end_col", "severity", "message", "source",
                         "rule_file", "rule_line")

    def set_violations(self, run_id: str, violations: list[dict[str, Any]], *, source: str | None = None) -> None:
        """Replace a run's violations (only those of ``source``, when given) with ``violations``."""
        with self._write():
            if source is None:
                self.db["violations"].delete_where("run_id = ?", [run_id])
            else:
                self.db["violations"].delete_where("run_id = ? AND source = ?", [run_id, source])
            self.db["violations"].insert_all(
                [{"run_id": run_id, **{key: v.get(key) for key in self.VIOLATION_COLUMNS}} for v in violations])

    def add_violations(self, run_id: str, violations: list[dict[str, Any]], *, replacing_source: str | None = None,
                       event: tuple[str, str | None, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """Add violations to a run's, leaving every other source's (the rule check's) alone.

        ``replacing_source``: first drop the run's earlier violations of that source (a new review
        supersedes the last one; the feed keeps each). ``event``: ``(kind, actor, data)`` appended to
        the feed in the same transaction, so the violations and their event land together or not at
        all. Returns the event row, if any."""
        with self._write() as conn:
            if replacing_source is not None:
                self.db["violations"].delete_where("run_id = ? AND source = ?", [run_id, replacing_source])
            self.db["violations"].insert_all(
                [{"run_id": run_id, **{key: v.get(key) for key in self.VIOLATION_COLUMNS}} for v in violations])
            if event is None:
                return None
            kind, actor, data = event
            head = ledger.append(conn, ts=utc_now(), kind=kind, run_id=run_id, actor=actor, data=data)
            self._write_anchor(head)
            return head

    def violations(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            columns = ", ".join(self.VIOLATION_COLUMNS)
            return list(self.db.query(f"SELECT {columns} FROM violations WHERE run_id = ? "
                                      "ORDER BY path, line, start_col, rule_id, id", [run_id]))

    # -- log ------------------------------------------------------------------------------
    def append_log(self, entries: list[tuple[str, int, str, str, str]]) -> None:
        """Insert (run_id, seq, ts, kind, text) rows in one transaction."""
        if not entries:
            return
        with self._log_lock:
            self._log_conn.execute("BEGIN IMMEDIATE")
            try:
                self._log_conn.executemany(
                    "INSERT INTO log_entries (run_id, seq, ts, kind, text) VALUES (?, ?, ?, ?, ?)", entries)
            except BaseException:
                self._log_conn.execute("ROLLBACK")
                raise
            self._log_conn.execute("COMMIT")

    def log(self, run_id: str, *, after_seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(
                "SELECT seq, ts, kind, text FROM log_entries WHERE run_id = ? AND seq > ? ORDER BY seq",
                [run_id, after_seq]))

    # -- feed -----------------------------------------------------------------------------
    def record_event(self, kind: str, *, run_id: str | None, actor: str | None,
                     data: dict[str, Any], ts: str | None = None) -> dict[str, Any]:
        with self._write() as conn:
            head = ledger.append(conn, ts=ts or utc_now(), kind=kind, run_id=run_id, actor=actor, data=data)
            self._write_anchor(head)
            return head

    @property
    def anchor_path(self) -> Path:
        return self.path.with_name("feed-head")

    def _write_anchor(self, head: dict[str, Any]) -> None:
        # Written while the write transaction is held, so anchors follow the chain's order.
        temporary = self.anchor_path.with_suffix(".tmp")
        temporary.write_text(f"{head['seq']} {head['hash']}\n")
        temporary.replace(self.anchor_path)

    def _read_anchor(self) -> tuple[int, str] | None:
        try:
            seq, digest = self.anchor_path.read_text().split()
            return int(seq), digest
        except (OSError, ValueError):
            return None

    def feed(self, *, limit: int = 100, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if run_id:
                rows = self.db.query("SELECT * FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT ?",
                                     [run_id, limit])
            else:
                rows = self.db.query("SELECT * FROM events ORDER BY seq DESC LIMIT ?", [limit])
            return [{**r, "data": json.loads(r["data"])} for r in rows]

    def verify(self) -> ledger.Verdict:
        with self._lock:
            return ledger.verify(self.conn, self._read_anchor())


class _WriteTransaction:
    """``with store._write() as conn``: the store lock plus a BEGIN IMMEDIATE transaction."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        self.store.conn.execute("BEGIN IMMEDIATE")
        return self.store.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.store.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()


def _fts_query(text: str) -> str:
    """Treat user search text as plain words (all must match), not FTS5 syntax."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words) or '""'
