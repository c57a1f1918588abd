"""The activity feed's hash chain, and the seals that bind the other tables to it.

Every row of ``events`` carries ``prev_hash`` and ``hash = sha256(prev_hash || canonical JSON of
the row)``; the row's ``seq`` is inside the hashed JSON, so altering, deleting or reordering rows
breaks the chain at the first affected row, which ``verify`` reports.

A chain alone cannot show that its *last* rows were cut off, so the store also keeps the head
(seq and hash of the newest row) in an anchor file beside the database; ``verify`` checks the
chain against it, and the store refuses to append to a feed that disagrees with its anchor.

``show`` and ``log`` read ``runs``, ``log_entries``, ``run_files``, ``violations`` and ``signoffs``,
not the feed, so events also carry *seals* of those rows under ``data["seal"]``: a run's final
event (``run.succeeded``, ...) seals its key fields (``seal["run"]``) and a digest of its log
(``seal["log"]``), ``run.committed`` a digest of the files the commit changed (``seal["files"]``),
``run.checked`` and ``run.reviewed`` a digest of all the run's violations (``seal["violations"]``),
a sign-off event the sign-off row (``seal["signoff"]``); ``run.started`` already carries the prompt.
``verify_records`` recomputes them all after the chain itself checked out.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

GENESIS = "0" * 64
_HASHED_FIELDS = ("seq", "ts", "kind", "run_id", "actor", "data")

#: The run columns a run's final event seals (``gate_status`` changes later and is not sealed).
SEALED_RUN_COLUMNS = ("prompt", "actor_name", "actor_email", "commit_sha", "status", "cost_usd",
                      "cost_reported_usd", "tokens_input", "tokens_output", "tokens_cache_read",
                      "tokens_cache_write", "base_sha", "branch")
SEALED_SIGNOFF_COLUMNS = ("id", "actor_name", "actor_email", "decision", "commit_sha", "comment", "ts")
SIGNOFF_KINDS = {"gate.approved": "approve", "gate.rejected": "reject"}
#: The ``run_files`` columns a files seal hashes, per row in the table's key order (path).
SEALED_FILE_COLUMNS = ("path", "old_path", "status", "additions", "deletions")
#: The ``violations`` columns a violations seal hashes, per row in ``id`` order. The id is each
#: row's identity: a row deleted and inserted again with the same content still reads as altered.
SEALED_VIOLATION_COLUMNS = ("id", "rule_id", "path", "line", "start_col", "end_col", "severity", "message",
                            "source", "rule_file", "rule_line")
#: A run in these states is still going; its final event (if it ever comes) seals it.
LIVE_STATES = ("queued", "running", "committing")


def canonical(row: dict[str, Any]) -> str:
    """The exact bytes that are hashed: the sealed fields, sorted keys, no whitespace."""
    return json.dumps({k: row[k] for k in _HASHED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def seal(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def append(conn: sqlite3.Connection, *, ts: str, kind: str, run_id: str | None, actor: str | None,
           data: dict[str, Any]) -> dict[str, Any]:
    """Append one event. The caller holds a write transaction (BEGIN IMMEDIATE), so the read of
    the chain's head and the insert are one atomic step even across processes."""
    head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    row = {"seq": seq, "ts": ts, "kind": kind, "run_id": run_id, "actor": actor,
           "data": json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)}
    row["prev_hash"] = prev_hash
    row["hash"] = seal(prev_hash, row)
    conn.execute(
        "INSERT INTO events (seq, ts, kind, run_id, actor, data, prev_hash, hash) "
        "VALUES (:seq, :ts, :kind, :run_id, :actor, :data, :prev_hash, :hash)", row)
    return row


# -- seals ------------------------------------------------------------------------------------------
def log_line_json(seq: int, ts: str, kind: str, text: str) -> str:
    """Exactly ``json.dumps([seq, ts, kind, text], separators=(",", ":"), ensure_ascii=False)``,
    built from json's own string escaper: a 100,000-line log is hashed at every run's end and at
    every ``verify``, and the encoder's per-call setup cost three times the escaping itself."""
    return f"[{seq:d},{encode_basestring(ts)},{encode_basestring(kind)},{encode_basestring(text)}]"


class LogDigest:
    """sha256 over the canonical JSON ``[seq, ts, kind, text]`` of each log entry, one per line,
    in seq order; with the count and the last seq it covers (a gate simulation later appends
    to a finished run's log, past the sealed range)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0
        self.through_seq = 0

    def add(self, seq: int, ts: str, kind: str, text: str) -> None:
        self._hash.update(log_line_json(seq, ts, kind, text).encode("utf-8") + b"\n")
        self.count += 1
        self.through_seq = seq

    def as_seal(self) -> dict[str, Any]:
        return {"count": self.count, "through_seq": self.through_seq, "sha256": self._hash.hexdigest()}


_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class RowsDigest:
    """sha256 over the canonical JSON list of each row's sealed columns, one per line, in the
    order the seal names; with the count. A run may have thousands of violations: one pass, no sort."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, values: Any) -> None:
        self._hash.update(_ROW_ENCODER.encode(list(values)).encode("utf-8") + b"\n")
        self.count += 1

    def as_seal(self) -> dict[str, Any]:
        return {"count": self.count, "sha256": self._hash.hexdigest()}


def _seal_rows(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], order: str,
               run_id: str) -> dict[str, Any]:
    digest = RowsDigest()
    for values in conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE run_id = ? ORDER BY {order}",
                               [run_id]):
        digest.add(values)
    return digest.as_seal()


def seal_files(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    return _seal_rows(conn, "run_files", SEALED_FILE_COLUMNS, "path", run_id)


def seal_violations(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    """All the run's violations, whatever their source. Violations arrive in steps (the rule
    check's with ``run.checked``, a model review's later with ``run.reviewed``, which replaces the
    previous review's), so every event that changes them seals the whole set again, in the same
    transaction as the change, and ``verify`` compares the rows with the newest seal only. A seal
    per source would not notice a forged row of a source nobody sealed; the whole set is one
    hash over at most a few thousand rows, at each of a handful of events."""
    return _seal_rows(conn, "violations", SEALED_VIOLATION_COLUMNS, "id", run_id)


def seal_log(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    digest = LogDigest()
    for entry in conn.execute("SELECT seq, ts, kind, text FROM log_entries WHERE run_id = ? ORDER BY seq",
                              [run_id]):
        digest.add(*entry)
    return digest.as_seal()


def seal_run(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    columns = ", ".join(SEALED_RUN_COLUMNS)
    values = conn.execute(f"SELECT {columns} FROM runs WHERE id = ?", [run_id]).fetchone()
    return dict(zip(SEALED_RUN_COLUMNS, values)) if values else None


def seal_signoff(conn: sqlite3.Connection, run_id: str, kind: str, sha: str | None) -> dict[str, Any] | None:
    """The newest sign-off row of ``run_id`` that matches a ``gate.approved``/``gate.rejected``
    event of ``kind`` on ``sha`` and that no earlier event has sealed yet."""
    sealed: set[int] = set()
    for (data,) in conn.execute("SELECT data FROM events WHERE run_id = ? AND kind IN (?, ?)",
                                [run_id, *SIGNOFF_KINDS]):
        signoff = (json.loads(data).get("seal") or {}).get("signoff")
        if isinstance(signoff, dict):
            sealed.add(signoff["id"])
    columns = ", ".join(SEALED_SIGNOFF_COLUMNS)
    for values in conn.execute(f"SELECT {columns} FROM signoffs WHERE run_id = ? AND decision = ? "
                               "AND commit_sha IS ? ORDER BY id DESC", [run_id, SIGNOFF_KINDS[kind], sha]):
        if values[0] not in sealed:
            return dict(zip(SEALED_SIGNOFF_COLUMNS, values))
    return None


# -- verification ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    # Added later; left out of ==, so a verdict still compares by what it always said.
    #: Where the first problem is: ``events`` (the chain or its anchor), ``runs``,
    #: ``log_entries``, ``run_files``, ``violations``, ``signoffs`` or ``store`` (the database file
    #: is damaged); None when ok.
    table: str | None = field(default=None, compare=False)
    #: What the cross-check compared against the feed's seals (when it got that far).
    runs_checked: int = field(default=0, compare=False)
    log_entries_checked: int = field(default=0, compare=False)
    signoffs_checked: int = field(default=0, compare=False)
    run_files_checked: int = field(default=0, compare=False)
    violations_checked: int = field(default=0, compare=False)


class Unreadable(Exception):
    """The chain could not be read at row ``seq``: SQLite failed (``cause``) after ``checked`` intact rows."""

    def __init__(self, checked: int, seq: int, cause: sqlite3.Error) -> None:
        super().__init__(f"row {seq}: {cause}")
        self.checked, self.seq, self.cause = checked, seq, cause


def verify(conn: sqlite3.Connection, anchor: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain in storage order; report the first row that does not follow from its
    predecessor, or a chain that ends before the ``anchor`` (seq, hash) it must reach. A row that
    cannot be read raises ``Unreadable``, saying how far the chain was intact."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    try:
        for values in conn.execute(
                "SELECT seq, ts, kind, run_id, actor, data, prev_hash, hash FROM events ORDER BY rowid"):
            row = dict(zip(("seq", "ts", "kind", "run_id", "actor", "data", "prev_hash", "hash"), values))
            seq = row["seq"]
            if seq != expected_seq:
                what = "deleted" if seq > expected_seq else "reordered or duplicated"
                return Verdict(False, checked, seq,
                               f"row {seq}: expected row {expected_seq} here; a row was {what}", "events")
            if row["prev_hash"] != prev_hash:
                return Verdict(False, checked, seq, f"row {seq}: prev_hash does not match row {seq - 1}'s hash",
                               "events")
            if seal(prev_hash, row) != row["hash"]:
                return Verdict(False, checked, seq, f"row {seq}: content does not match its hash (row altered)",
                               "events")
            if anchor and seq == anchor[0] and row["hash"] != anchor[1]:
                return Verdict(False, checked, seq, f"row {seq}: does not match the recorded head of the feed",
                               "events")
            prev_hash, expected_seq, checked = row["hash"], seq + 1, checked + 1
    except sqlite3.DatabaseError as exc:
        raise Unreadable(checked, expected_seq, exc) from exc
    if anchor and expected_seq <= anchor[0]:
        return Verdict(False, checked, expected_seq,
                       f"row {expected_seq}: missing; the feed had {anchor[0]} rows (rows were deleted from its end)",
                       "events")
    return Verdict(True, checked)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def counted(count: Any, noun: str) -> str:
    """``1 file``, ``1,234 files`` (a count read from a seal may be anything)."""
    shown = f"{count:,}" if isinstance(count, int) else str(count)
    return f"{shown} {noun}" + ("" if count == 1 else "s")


def verify_records(conn: sqlite3.Connection, checked: int) -> Verdict:
    """Compare ``runs``, ``log_entries``, ``run_files``, ``violations`` and ``signoffs`` with the
    seals in the (already verified) feed; report the first row that differs, is missing, or was
    never sealed.

    Events written before seals existed carry none; their runs are compared only as far as
    those events go (the prompt of ``run.started``; a sign-off's run, SHA, decision and comment),
    and a run's files or violations only once an event sealed them."""
    started: dict[str, tuple[int, str]] = {}              # run id → (seq, sealed prompt)
    final: dict[str, tuple[int, str, dict[str, Any]]] = {}  # run id → (seq, kind, sealed run fields)
    logs: dict[str, tuple[int, dict[str, Any]]] = {}       # run id → (seq, newest log seal)
    row_seals: dict[str, dict[str, tuple[int, str, dict[str, Any]]]] = {"files": {}, "violations": {}}
    signoff_events: dict[int, tuple[int, str, str, dict[str, Any]]] = {}  # sign-off id → (seq, kind, run, seal)
    legacy_signoffs: list[tuple[int, str, str, dict[str, Any]]] = []    # (seq, kind, run, data) without a seal
    for seq, kind, run_id, data in conn.execute(
            "SELECT seq, kind, run_id, data FROM events WHERE kind IN ('run.started', ?, ?) "
            "OR instr(data, '\"seal\":{') ORDER BY seq", list(SIGNOFF_KINDS)):
        payload = json.loads(data)
        seals = payload.get("seal") if isinstance(payload.get("seal"), dict) else {}
        if kind == "run.started":
            started.setdefault(run_id, (seq, payload.get("prompt")))
        if isinstance(seals.get("run"), dict):
            final[run_id] = (seq, kind, seals["run"])
        if isinstance(seals.get("log"), dict):
            logs[run_id] = (seq, seals["log"])
        for key, newest in row_seals.items():
            if isinstance(seals.get(key), dict):
                newest[run_id] = (seq, kind, seals[key])
        if kind in SIGNOFF_KINDS:
            if isinstance(seals.get("signoff"), dict):
                signoff_events[seals["signoff"]["id"]] = (seq, kind, run_id, seals["signoff"])
            else:
                legacy_signoffs.append((seq, kind, run_id, payload))

    def broken(seq: int | None, reason: str, table: str) -> Verdict:
        return Verdict(False, checked, seq, reason, table)

    # Runs: every row was announced by a run.started event, and matches its final event's seal.
    columns = ", ".join(SEALED_RUN_COLUMNS)
    runs = {values[0]: dict(zip(SEALED_RUN_COLUMNS, values[1:]))
            for values in conn.execute(f"SELECT id, {columns} FROM runs")}
    for run_id, (seq, prompt) in sorted(started.items(), key=lambda item: item[1][0]):
        row = runs.get(run_id)
        if row is None:
            return broken(seq, f"run {run_id}: deleted from the runs table (announced by event {seq})", "runs")
        if row["prompt"] != prompt:
            return broken(seq, f"run {run_id}: prompt differs from the sealed run.started event", "runs")
        if run_id in final:
            sealed_seq, kind, sealed = final[run_id]
            for column in SEALED_RUN_COLUMNS:
                if column in sealed and row[column] != sealed[column]:
                    values = "" if column == "prompt" else \
                        f" (sealed {_shown(sealed[column])}, found {_shown(row[column])})"
                    return broken(sealed_seq, f"run {run_id}: {column} differs from the sealed {kind} event{values}",
                                  "runs")
    unannounced = sorted(set(runs) - set(started))
    if unannounced:
        return broken(None, f"run {unannounced[0]}: not in the feed (no run.started event)", "runs")

    # Logs: one ordered scan (the primary key's order), hashing only what a seal covers.
    entries = 0
    digests = {run_id: LogDigest() for run_id in logs}
    for run_id, seq, ts, kind, text in conn.execute(
            "SELECT run_id, seq, ts, kind, text FROM log_entries ORDER BY run_id, seq"):
        digest = digests.get(run_id)
        if digest is not None and seq <= logs[run_id][1].get("through_seq", seq):
            digest.add(seq, ts, kind, text)
            entries += 1
    for run_id, (seq, sealed) in sorted(logs.items(), key=lambda item: item[1][0]):
        found = digests[run_id].as_seal()
        if (sealed.get("count"), sealed.get("sha256")) != (found["count"], found["sha256"]):
            detail = (f"sealed {sealed.get('count')} entries, found {found['count']}"
                      if sealed.get("count") != found["count"]
                      else f"sealed {found['count']} entries, found as many with different content")
            return broken(seq, f"run {run_id}: its log was altered ({detail})", "log_entries")

    # Files and violations: one scan of each table in its index's order, hashing only sealed runs.
    rows_checked: dict[str, int] = {}
    for key, table, columns, order, noun in (("files", "run_files", SEALED_FILE_COLUMNS, "path", "file"),
                                             ("violations", "violations", SEALED_VIOLATION_COLUMNS, "id",
                                              "violation")):
        sealed_runs = row_seals[key]
        digests = {run_id: RowsDigest() for run_id in sealed_runs}
        for run_id, *values in conn.execute(f"SELECT run_id, {', '.join(columns)} FROM {table} "
                                            f"ORDER BY run_id, {order}"):
            digest = digests.get(run_id)
            if digest is not None:
                digest.add(values)
            elif run_id not in started:  # every run was announced, since the first feeds: a row of none was added
                return broken(None, f"a {noun} row names run {_shown(run_id)}, which the feed never started", table)
        for run_id, (seq, kind, sealed) in sorted(sealed_runs.items(), key=lambda item: item[1][0]):
            found = digests[run_id].as_seal()
            if (sealed.get("count"), sealed.get("sha256")) != (found["count"], found["sha256"]):
                what = "changed files" if key == "files" else "violations"
                shown = counted(sealed.get("count"), noun)
                detail = (f"sealed {shown}, found {found['count']}" if sealed.get("count") != found["count"]
                          else f"sealed {shown}, found as many with different content")
                return broken(seq, f"run {run_id}: its {what} differ from the sealed {kind} event ({detail})", table)
        rows_checked[table] = sum(digest.count for digest in digests.values())

    # Sign-offs: each row has exactly one sealed event, and each sealed event its row.
    columns = ", ".join(SEALED_SIGNOFF_COLUMNS)
    signoffs = [dict(zip(SEALED_SIGNOFF_COLUMNS, values[1:]), run_id=values[0])
                for values in conn.execute(f"SELECT run_id, {columns} FROM signoffs ORDER BY id")]
    present = {row["id"] for row in signoffs}
    for row in signoffs:
        event = signoff_events.get(row["id"])
        if event is not None:
            seq, kind, run_id, sealed = event
            if run_id != row["run_id"]:
                return broken(seq, f"sign-off {row['id']} of run {row['run_id']}: sealed for run {run_id} "
                                   f"in event {seq}", "signoffs")
            for column in SEALED_SIGNOFF_COLUMNS:
                if row[column] != sealed.get(column):
                    return broken(seq, f"sign-off {row['id']} of run {run_id}: {column} differs from the sealed "
                                       f"{kind} event (sealed {_shown(sealed.get(column))}, "
                                       f"found {_shown(row[column])})", "signoffs")
            continue
        legacy = next((e for e in legacy_signoffs if e[2] == row["run_id"]
                       and SIGNOFF_KINDS[e[1]] == row["decision"] and e[3].get("sha") == row["commit_sha"]
                       and e[3].get("comment") == row["comment"]), None)
        if legacy is None:
            return broken(None, f"sign-off {row['id']} of run {row['run_id']}: not in the feed", "signoffs")
        legacy_signoffs.remove(legacy)
    for signoff_id, (seq, kind, run_id, _) in sorted(signoff_events.items(), key=lambda item: item[1][0]):
        if signoff_id not in present:
            return broken(seq, f"sign-off {signoff_id} of run {run_id}: deleted (sealed in event {seq})", "signoffs")
    if legacy_signoffs:
        seq, kind, run_id, _ = legacy_signoffs[0]
        return broken(seq, f"the sign-off of run {run_id} recorded by event {seq} ({kind}) was deleted", "signoffs")
    return Verdict(True, checked, runs_checked=len(final), log_entries_checked=entries,
                   signoffs_checked=len(signoffs), run_files_checked=rows_checked["run_files"],
                   violations_checked=rows_checked["violations"])
