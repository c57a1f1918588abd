"""The audit store: every run, log line, changed file and feed event of one repository.

One SQLite file per repository at ``<git common dir>/promptrail/audit.db`` (worktrees share it),
in WAL mode so the language server, the CLI and concurrent runs can read and write at once.
The schema evolves only through the numbered ``MIGRATIONS``; a database written by a newer
promptrail is refused, never altered. Methods are thread-safe (one connection behind a lock):
the language server calls them from worker threads.

Every append to the feed first checks the anchor file (``feed-head``, the newest seq and hash
the feed ever had): a database that lost rows, or was deleted and recreated, is refused rather
than silently starting a new chain. A database or folder that cannot be written, and a database file
that is damaged (not a database, or pages that cannot be read), are one ``PromptrailError``, not a
traceback; ``verify`` reports damage as a broken store.

Every text value written (run rows, files, violations, sign-offs, checks, log lines, feed events)
goes through ``storable`` first, so text that UTF-8 cannot carry never fails a write half-way
through a run, and the feed's hashes are computed on exactly the text stored.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

from promptrail.audit import ledger
from promptrail.errors import PromptrailError


_second_cache: tuple[int, str] = (-1, "")
_milli_cache: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The current UTC time as ``2026-12-03T18:45:56.123Z`` (cheap: log lines call it per line, and
    a fast agent prints dozens within one millisecond, which share one string)."""
    global _second_cache, _milli_cache
    milli = int(time.time() * 1000)
    if milli != _milli_cache[0]:
        second = milli // 1000
        if second != _second_cache[0]:
            _second_cache = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
        _milli_cache = (milli, f"{_second_cache[1]}.{milli % 1000:03d}Z")
    return _milli_cache[1]


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


def _migration_4(db: sqlite_utils.Database) -> None:
    """Costs: the agent's reported cost and the cost computed from tokens, kept side by side."""
    db["runs"].add_column("cost_reported_usd", float)
    db["runs"].add_column("cost_computed_usd", float)
    db["runs"].add_column("cost_mismatch", int, not_null_default=0)
    db["runs"].add_column("price_table", str)


#: Numbered migrations; index + 1 is the schema version they produce. Append, never edit.
def _migration_5(db: sqlite_utils.Database) -> None:
    """The agent's process group, so a run whose promptrail process died can have it ended."""
    db["runs"].add_column("agent_pgid", int)


MIGRATIONS = [_migration_1, _migration_2, _migration_3, _migration_4, _migration_5]
SCHEMA_VERSION = len(MIGRATIONS)

RUN_TOKEN_COLUMNS = {"input": "tokens_input", "output": "tokens_output",
                     "cache_read": "tokens_cache_read", "cache_write": "tokens_cache_write"}

#: SQLite's primary result codes that mean "this file or folder cannot be written / opened":
#: SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN.
_UNWRITABLE_CODES = {3, 8, 10, 14}
#: What a unique prefix of a run id (``runs.new_run_id``: hex) can look like.
_RUN_ID_PREFIX = re.compile(r"[0-9a-fA-F]{1,64}")
#: SQLite's primary result codes that mean "this file is damaged": SQLITE_CORRUPT, SQLITE_NOTADB.
_DAMAGED_CODES = {11, 26}
#: What ``record_event(seal=...)`` may seal into the event (see ``ledger``).
SEALS = ("run", "log", "signoff", "files", "violations")
#: Events that seal the rows their callers wrote just before them, unasked: ``run.committed``
#: follows ``set_run_files``, a ``run.checked`` recorded on its own follows ``set_violations`` (the
#: rule check itself appends it with its rows, in one transaction, through ``add_violations``).
#: Sealed there, the rows are bound to the feed the moment they are final, not at the run's end.
IMPLIED_SEALS = {"run.committed": "files", "run.checked": "violations"}
#: A run's log can be gigabytes: checking every page of it before each run would take seconds.
#: Damage there is found when a page is read (one ``PromptrailError``) and by ``verify``.
_UNCHECKED_BEFORE_RUN = ("log_entries",)


def _has_code(exc: BaseException, codes: set[int]) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in codes


def storable(text: str) -> str:
    """``text`` as UTF-8 can carry it (SQLite, JSON-RPC): a byte that was not UTF-8 (kept by
    ``surrogateescape``, as in a file name git printed or a hook's output) shows as ``\\xNN``, a lone
    surrogate (an agent's JSON may carry ``"\\ud800"``) as ``\\ud800``. Other text is returned as is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte stands for
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def storable_values(value: Any) -> Any:
    """``value`` with every string in it (also dict keys, lists, nested) made ``storable``."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_values(key): storable_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_values(item) for item in value]
    return value


class AuditStore:
    """All reads and writes of one repository's audit database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._log_lock = threading.Lock()
        #: The feed's new head (seq, hash) of the open write transaction, staged in a temporary
        #: file; it replaces the anchor once the transaction committed.
        self._pending_anchor: tuple[int, Path] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(exc.strerror or exc) from None
        try:
            self._open()
        except BaseException:
            for name in ("conn", "_log_conn"):
                if hasattr(self, name):
                    getattr(self, name).close()
            raise

    def _open(self) -> None:
        with self._translating():
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock
            # up front instead of failing half-way through a transaction.
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.conn = conn
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self.db = sqlite_utils.Database(conn)
            self._migrate()
            # Log lines arrive by the hundred thousand from a writer thread: they get their own
            # connection, so readers (lens requests) never queue behind a batch insert (WAL lets
            # readers and one writer proceed together).
            self._log_conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._log_conn.execute("PRAGMA busy_timeout=30000")
            self._log_conn.execute("PRAGMA synchronous=NORMAL")

    def _unwritable(self, reason: object) -> PromptrailError:
        return PromptrailError(f"the audit store {self.path} cannot be written ({reason}); check its permissions")

    def _damage(self, detail: object) -> str:
        return (f"the audit store {self.path} is damaged ({detail}); restore it from a backup, or move it and "
                f"{self.anchor_path} aside to start a new audit trail")

    def _translated(self, exc: BaseException) -> PromptrailError | None:
        """The one-line error for an SQLite error the user can act on; None for anything else (a bug)."""
        if _has_code(exc, _UNWRITABLE_CODES):
            return self._unwritable(exc)
        if _has_code(exc, _DAMAGED_CODES):
            return PromptrailError(self._damage(exc))
        return None

    @contextmanager
    def _translating(self) -> Iterator[None]:
        """SQLite errors the user can act on become their ``PromptrailError``; the rest stay as they are."""
        try:
            yield
        except sqlite3.Error as exc:
            translated = self._translated(exc)
            if translated is None:
                raise
            raise translated from None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The store lock for a read, with its errors ``_translating``."""
        with self._lock, self._translating():
            yield

    def check_intact(self) -> None:
        """Refuse a store whose schema or tables (but the log, ``_UNCHECKED_BEFORE_RUN``) are damaged,
        before a run starts: found later, the damage would stop the run after its commit was made."""
        with self._reading():
            tables = [name for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if name not in _UNCHECKED_BEFORE_RUN]
            for table in tables:
                problem = self._integrity_problem(table)
                if problem:
                    raise PromptrailError(self._damage(problem))

    def _integrity_problem(self, table: str | None = None) -> str | None:
        """The first problem ``PRAGMA quick_check`` finds in the file (or one table) as one short
        line (it reports some on several, behind a ``*** in database main ***`` line); None if none."""
        problems = [row[0] for row in self.conn.execute(f'PRAGMA quick_check("{table}")' if table
                                                        else "PRAGMA quick_check")]
        if problems == ["ok"]:
            return None
        lines = [line.strip() for line in (problems[0] if problems else "").splitlines()]
        first = "; ".join(line for line in lines if line and not line.startswith("***")) or "integrity check failed"
        return first if len(first) <= 200 else first[:199] + "…"

    def close(self) -> None:
        with self._lock, self._log_lock:
            self.conn.close()
            self._log_conn.close()

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._reading():
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
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def _write(self):
        return _WriteTransaction(self)

    def _append_event(self, conn: sqlite3.Connection, *, ts: str, kind: str, run_id: str | None,
                      actor: str | None, data: dict[str, Any]) -> dict[str, Any]:
        """Append to the feed inside a write transaction; the anchor follows once it commits. The
        event is hashed as it is stored: every string ``storable``."""
        self._check_anchor(conn)
        head = ledger.append(conn, ts=ts, kind=storable(kind), run_id=storable_values(run_id),
                             actor=storable_values(actor), data=storable_values(data))
        self._stage_anchor(head)
        return head

    # -- runs -----------------------------------------------------------------------------
    def insert_run(self, row: dict[str, Any], *, event_actor: str | None) -> None:
        """Insert a run and its ``run.started`` event. A run inserted already finished (a rollback
        run) has no later final event, so ``run.started`` seals its fields and (empty) log."""
        row = storable_values(row)
        with self._write() as conn:
            self.db["runs"].insert(row)
            data = {"prompt": row["prompt"], "agent": row["agent"], "model": row["model"], "mode": row["mode"],
                    "base_sha": row["base_sha"]}
            if row.get("status") and row["status"] not in ledger.LIVE_STATES:
                data["seal"] = {"run": ledger.seal_run(conn, row["id"]), "log": ledger.seal_log(conn, row["id"])}
            self._append_event(conn, ts=row["started_at"], kind="run.started", run_id=row["id"],
                               actor=event_actor, data=data)

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._write():
            self.db["runs"].update(run_id, storable_values(fields))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._reading():
            rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return rows[0] if rows else None

    def resolve_run_id(self, ref: str) -> str:
        """A full run id or a unique prefix of one → the full id (PromptrailError otherwise)."""
        ref = ref.strip()
        if not ref:
            raise PromptrailError("no run id given; `promptrail history` lists the runs")
        matches = []
        # Run ids are hex: anything else cannot be a prefix of one (and never reaches LIKE, which
        # refuses a pattern of 50,000 characters or more).
        if _RUN_ID_PREFIX.fullmatch(ref):
            with self._reading():
                matches = [r[0] for r in self.conn.execute(
                    "SELECT id FROM runs WHERE id LIKE ? ORDER BY started_at LIMIT 3", [ref + "%"])]
        if not matches:
            # ascii(): quoted, with control characters escaped; a long value shortened.
            shown = ascii(ref[:40]) + (f"… ({len(ref):,} characters)" if len(ref) > 40 else "")
            raise PromptrailError(f"unknown run id {shown}; `promptrail history` lists the runs")
        if len(matches) > 1:
            listed = ", ".join(matches[:2]) + (", ..." if len(matches) > 2 else "")
            raise PromptrailError(f"run id prefix '{ref}' is ambiguous ({listed}); "
                                  "type more characters")
        return matches[0]

    def list_runs(self, *, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self._reading():
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
        with self._reading():
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
        with self._reading():
            marks = ",".join("?" * len(ids))
            return {row["id"]: row for row in self.db.query(f"SELECT * FROM runs WHERE id IN ({marks})", ids)}

    def runs_left_running(self) -> list[dict[str, Any]]:
        with self._reading():
            return list(self.db.query(
                "SELECT * FROM runs WHERE status IN ('queued', 'running', 'committing')"))

    # -- files ----------------------------------------------------------------------------
    def set_run_files(self, run_id: str, files: list[dict[str, Any]]) -> None:
        with self._write():
            self.db["run_files"].delete_where("run_id = ?", [run_id])
            self.db["run_files"].insert_all([{"run_id": run_id, **storable_values(f)} for f in files])

    def run_files(self, run_id: str) -> list[dict[str, Any]]:
        with self._reading():
            return list(self.db.query(
                "SELECT path, old_path, status, additions, deletions FROM run_files "
                "WHERE run_id = ? ORDER BY path", [run_id]))

    def touched_paths(self) -> set[str]:
        """Every path any run ever changed (the lens layer skips blame for all others)."""
        with self._reading():
            return {r[0] for r in self.conn.execute("SELECT DISTINCT path FROM run_files")} | {
                r[0] for r in self.conn.execute(
                    "SELECT DISTINCT old_path FROM run_files WHERE old_path IS NOT NULL")}

    def run_files_version(self) -> tuple[int, int]:
        """Changes whenever a run's files are recorded (cache key for ``touched_paths``); log
        writes, which happen constantly during a run, do not change it."""
        with self._reading():
            return tuple(self.conn.execute("SELECT COALESCE(MAX(rowid), 0), COUNT(*) FROM run_files").fetchone())

    def query(self, sql: str, params: list[Any] | None = None, *, scalar: bool = False) -> Any:
        """A read-only query for aggregate reports (costs); rows as dicts, or one value."""
        with self._reading():
            if scalar:
                return self.conn.execute(sql, params or []).fetchone()[0]
            return list(self.db.query(sql, params or []))

    # -- gates ----------------------------------------------------------------------------------
    def add_signoff(self, row: dict[str, Any], *, event_kind: str, actor: str | None,
                    data: dict[str, Any]) -> dict[str, Any]:
        """Record a sign-off and the feed event that seals it in one transaction: there is never a
        sign-off row that no event announces, nor an event without its row."""
        with self._write() as conn:
            self._check_anchor(conn)
            self.db["signoffs"].insert(storable_values(row))
            sealed = ledger.seal_signoff(conn, row["run_id"], event_kind, data.get("sha"))
            if sealed is not None:
                data = {**data, "seal": {"signoff": sealed}}
            return self._append_event(conn, ts=utc_now(), kind=event_kind, run_id=row["run_id"], actor=actor,
                                      data=data)

    def signoffs(self, run_id: str) -> list[dict[str, Any]]:
        with self._reading():
            return list(self.db.query("SELECT * FROM signoffs WHERE run_id = ? ORDER BY id", [run_id]))

    def add_check(self, row: dict[str, Any]) -> None:
        with self._write():
            self.db["checks"].insert(storable_values(row))

    def checks(self, run_id: str) -> list[dict[str, Any]]:
        with self._reading():
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
            self._insert_violations(run_id, violations)

    def add_violations(self, run_id: str, violations: list[dict[str, Any]], *, replacing_source: str | None = None,
                       event: tuple[str, str | None, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """Add violations to a run's, leaving every other source's (the rule check's) alone.

        ``replacing_source``: first drop the run's earlier violations of that source (a new review
        supersedes the last one; the feed keeps each). ``event``: ``(kind, actor, data)`` appended to
        the feed in the same transaction, so the violations and their event land together or not at
        all; the event seals the run's violations as they now are (``ledger.seal_violations``).
        Without an event the new rows are unsealed, and ``verify`` reports a sealed run's as added.
        Returns the event row, if any."""
        with self._write() as conn:
            if replacing_source is not None:
                self.db["violations"].delete_where("run_id = ? AND source = ?", [run_id, replacing_source])
            self._insert_violations(run_id, violations)
            if event is None:
                return None
            kind, actor, data = event
            data = {**data, "seal": {**(data.get("seal") or {}), "violations": ledger.seal_violations(conn, run_id)}}
            return self._append_event(conn, ts=utc_now(), kind=kind, run_id=run_id, actor=actor, data=data)

    def _insert_violations(self, run_id: str, violations: list[dict[str, Any]]) -> None:
        self.db["violations"].insert_all(
            [{"run_id": run_id, **{key: storable_values(v.get(key)) for key in self.VIOLATION_COLUMNS}}
             for v in violations])

    def violations(self, run_id: str) -> list[dict[str, Any]]:
        with self._reading():
            columns = ", ".join(self.VIOLATION_COLUMNS)
            return list(self.db.query(f"SELECT {columns} FROM violations WHERE run_id = ? "
                                      "ORDER BY path, line, start_col, rule_id, id", [run_id]))

    # -- log ------------------------------------------------------------------------------
    def append_log(self, entries: list[tuple[str, int, str, str, str]]) -> None:
        """Insert (run_id, seq, ts, kind, text) rows in one transaction."""
        if not entries:
            return
        with self._log_lock, self._translating():
            self._log_conn.execute("BEGIN IMMEDIATE")
            try:
                self._log_conn.executemany(
                    "INSERT INTO log_entries (run_id, seq, ts, kind, text) VALUES (?, ?, ?, ?, ?)",
                    ((run_id, seq, ts, kind, storable(text)) for run_id, seq, ts, kind, text in entries))
                self._log_conn.execute("COMMIT")
            except BaseException:
                if self._log_conn.in_transaction:
                    self._log_conn.execute("ROLLBACK")
                raise

    def log(self, run_id: str, *, after_seq: int = 0) -> list[dict[str, Any]]:
        with self._reading():
            return list(self.db.query(
                "SELECT seq, ts, kind, text FROM log_entries WHERE run_id = ? AND seq > ? ORDER BY seq",
                [run_id, after_seq]))

    # -- feed -----------------------------------------------------------------------------
    def record_event(self, kind: str, *, run_id: str | None, actor: str | None,
                     data: dict[str, Any], ts: str | None = None, seal: str | None = None,
                     run_fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append an event to the feed. ``seal`` binds rows of other tables to it, read in the same
        transaction (``data["seal"]``, checked by ``verify``): ``"run"`` the run's key fields and
        log (a run's final event; also its files and violations, unless an earlier event sealed
        them), ``"log"`` the log alone, ``"files"`` the run's changed files, ``"violations"`` all its
        violations, ``"signoff"`` the sign-off row this ``gate.approved``/``gate.rejected`` event
        (``data["sha"]``) announces. ``IMPLIED_SEALS`` names the events that seal without being asked.
        ``run_fields``: columns of ``run_id``'s row set in the same transaction, before the seal
        reads them (a sealed field that changes, and the event that seals the change, land together)."""
        if seal is None and run_id is not None:
            seal = IMPLIED_SEALS.get(kind)
        if seal is not None and (seal not in SEALS or run_id is None):
            raise ValueError(f"cannot seal {seal!r} of run {run_id!r}")
        with self._write() as conn:
            if run_fields:
                self.db["runs"].update(run_id, storable_values(run_fields))
            if seal is not None:
                seals: dict[str, Any] = {}
                if seal == "run":
                    seals["run"] = ledger.seal_run(conn, run_id)
                if seal in ("run", "log"):
                    seals["log"] = ledger.seal_log(conn, run_id)
                # A run that committed nothing (or whose check failed) had no run.committed or
                # run.checked to seal these: its final event seals them (mostly as none), so rows
                # forged for it later are noticed. A run that had keeps those earlier seals.
                earlier = self._sealed_by_earlier_events(conn, run_id) if seal == "run" else set()
                if seal == "files" or (seal == "run" and "files" not in earlier):
                    seals["files"] = ledger.seal_files(conn, run_id)
                if seal == "violations" or (seal == "run" and "violations" not in earlier):
                    seals["violations"] = ledger.seal_violations(conn, run_id)
                if seal == "signoff":
                    seals["signoff"] = ledger.seal_signoff(conn, run_id, kind, data.get("sha"))
                data = {**data, "seal": {key: value for key, value in seals.items() if value is not None}}
            return self._append_event(conn, ts=ts or utc_now(), kind=kind, run_id=run_id, actor=actor, data=data)

    @staticmethod
    def _sealed_by_earlier_events(conn: sqlite3.Connection, run_id: str) -> set[str]:
        """The kinds of seal (``"files"``, ...) the run's events carry so far (a run has a handful)."""
        kinds: set[str] = set()
        for (data,) in conn.execute("SELECT data FROM events WHERE run_id = ? AND instr(data, '\"seal\":{')",
                                    [run_id]):
            seals = json.loads(data).get("seal")
            if isinstance(seals, dict):
                kinds.update(seals)
        return kinds

    # -- the anchor -------------------------------------------------------------------------
    @property
    def anchor_path(self) -> Path:
        return self.path.with_name("feed-head")

    def _anchor_state(self) -> tuple[tuple[int, str] | None, str | None]:
        """``(anchor, None)``; ``(None, None)`` when there is none; ``(None, problem)`` when the
        file exists but cannot be read as ``<seq> <hash>``."""
        try:
            text = self.anchor_path.read_text()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"the feed's anchor {self.anchor_path} cannot be read ({exc.strerror or exc})"
        try:
            seq, digest = text.split()
            return (int(seq), digest), None
        except ValueError:
            return None, f"the feed's anchor {self.anchor_path} is not a '<seq> <hash>' line"

    def _read_anchor(self) -> tuple[int, str] | None:
        return self._anchor_state()[0]

    def _check_anchor(self, conn: sqlite3.Connection) -> None:
        """Refuse to append to a feed that disagrees with its anchor: appending would start a
        new chain over the lost rows (or seal a replaced database) and overwrite the only
        record that they existed."""
        anchor, problem = self._anchor_state()
        if anchor is None and problem is None:
            return
        advice = (f"; nothing was written. `promptrail verify` explains it; to start a new feed on purpose, "
                  f"move {self.anchor_path} aside first")
        if problem:
            raise PromptrailError(f"refusing to write to the audit store {self.path}: {problem}{advice}")
        seq, digest = anchor
        held = conn.execute("SELECT hash FROM events WHERE seq = ?", [seq]).fetchone()
        if held is None:
            count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            raise PromptrailError(
                f"refusing to write to the audit store {self.path}: it holds {count} feed events but its anchor "
                f"{self.anchor_path} records {seq} (events were deleted or the database was replaced){advice}")
        if held[0] != digest:
            raise PromptrailError(
                f"refusing to write to the audit store {self.path}: its feed event {seq} is not the one its anchor "
                f"{self.anchor_path} records (the feed was rewritten or the database replaced){advice}")

    def _stage_anchor(self, head: dict[str, Any]) -> None:
        """Write the new head to a temporary file while the transaction is still open, so an
        anchor that cannot be written rolls the event back (nothing written) instead of leaving
        the feed ahead of its anchor. One file per process and thread: writers never share it."""
        self._discard_anchor()
        temporary = self.anchor_path.with_name(f"{self.anchor_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            temporary.write_text(f"{head['seq']} {head['hash']}\n")
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise self._anchor_unwritable(exc) from None
        self._pending_anchor = (head["seq"], temporary)

    def _publish_anchor(self) -> None:
        """After COMMIT (an anchor never names a row that a crash could still undo), and only
        forwards: another process may already have published a newer head."""
        pending, self._pending_anchor = self._pending_anchor, None
        if pending is None:
            return
        seq, temporary = pending
        current = self._read_anchor()
        try:
            if current is not None and current[0] >= seq:
                temporary.unlink(missing_ok=True)
            else:
                temporary.replace(self.anchor_path)
        except OSError as exc:
            raise self._anchor_unwritable(exc) from None

    def _discard_anchor(self) -> None:
        pending, self._pending_anchor = self._pending_anchor, None
        if pending is not None:
            pending[1].unlink(missing_ok=True)

    def _anchor_unwritable(self, exc: OSError) -> PromptrailError:
        return PromptrailError(f"the audit store's anchor {self.anchor_path} cannot be written "
                               f"({exc.strerror or exc}); check its permissions")

    def feed(self, *, limit: int = 100, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._reading():
            if run_id:
                rows = self.db.query("SELECT * FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT ?",
                                     [run_id, limit])
            else:
                rows = self.db.query("SELECT * FROM events ORDER BY seq DESC LIMIT ?", [limit])
            return [{**r, "data": json.loads(r["data"])} for r in rows]

    def verify(self) -> ledger.Verdict:
        """The hash chain against its anchor first; then ``runs``, ``log_entries``, ``run_files``,
        ``violations`` and ``signoffs`` against the seals in the feed; then every page of the file
        (``PRAGMA quick_check``). One read transaction: a consistent snapshot of all tables. A damaged
        file is a broken verdict, not an error."""
        with self._lock:
            anchor, problem = self._anchor_state()  # before the snapshot, which then holds all it names
            chain = ledger.Verdict(False, 0)
            try:
                self.conn.execute("BEGIN")
                try:
                    chain = ledger.verify(self.conn, anchor)
                    if chain.ok and problem:
                        return ledger.Verdict(False, chain.checked, None, problem, "events")
                    if not chain.ok:
                        return chain
                    verdict = ledger.verify_records(self.conn, chain.checked)
                    problem = self._integrity_problem() if verdict.ok else None
                    if problem:
                        return ledger.Verdict(False, chain.checked, None, self._damage(problem), "store")
                    return verdict
                finally:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
            except ledger.Unreadable as exc:
                if not _has_code(exc.cause, _DAMAGED_CODES):
                    raise exc.cause
                return ledger.Verdict(False, exc.checked, exc.seq, self._damage(exc.cause), "events")
            except sqlite3.Error as exc:  # damage outside the chain: damage is evidence too, never a traceback
                if not _has_code(exc, _DAMAGED_CODES):
                    raise
                return ledger.Verdict(False, chain.checked, None, self._damage(exc), "store")


class _WriteTransaction:
    """``with store._write() as conn``: the store lock plus a BEGIN IMMEDIATE transaction."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self.store
        store._lock.acquire()
        store._discard_anchor()
        try:
            with store._translating():
                store.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            store._lock.release()
            raise
        return store.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        store = self.store
        try:
            if exc_type is None:
                try:
                    store.conn.execute("COMMIT")
                except sqlite3.Error as failure:
                    exc = failure
            if exc is not None and store.conn.in_transaction:
                store.conn.execute("ROLLBACK")
            if exc is None:
                store._publish_anchor()
        finally:
            store._discard_anchor()
            store._lock.release()
        translated = store._translated(exc) if exc is not None else None
        if translated is not None:
            raise translated from None
        if exc is not None and exc_type is None:
            raise exc


def _fts_query(text: str) -> str:
    """Treat user search text as plain words (all must match), not FTS5 syntax."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words) or '""'
