"""The activity feed's hash chain: append-only rows, each sealed by the hash of the one before.

Every row of ``events`` carries ``prev_hash`` and ``hash = sha256(prev_hash || canonical JSON of
the row)``; the row's ``seq`` is inside the hashed JSON, so altering, deleting or reordering rows
breaks the chain at the first affected row, which ``verify`` reports.

A chain alone cannot show that its *last* rows were cut off, so the store also keeps the head
(seq and hash of the newest row) in an anchor file beside the database; ``verify`` checks the
chain against it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
_HASHED_FIELDS = ("seq", "ts", "kind", "run_id", "actor", "data")


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


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify(conn: sqlite3.Connection, anchor: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain in storage order; report the first row that does not follow from its
    predecessor, or a chain that ends before the ``anchor`` (seq, hash) it must reach."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    cursor = conn.execute(
        "SELECT seq, ts, kind, run_id, actor, data, prev_hash, hash FROM events ORDER BY rowid")
    for values in cursor:
        row = dict(zip(("seq", "ts", "kind", "run_id", "actor", "data", "prev_hash", "hash"), values))
        seq = row["seq"]
        if seq != expected_seq:
            what = "deleted" if seq > expected_seq else "reordered or duplicated"
            return Verdict(False, checked, seq,
                           f"row {seq}: expected row {expected_seq} here; a row was {what}")
        if row["prev_hash"] != prev_hash:
            return Verdict(False, checked, seq, f"row {seq}: prev_hash does not match row {seq - 1}'s hash")
        if seal(prev_hash, row) != row["hash"]:
            return Verdict(False, checked, seq, f"row {seq}: content does not match its hash (row altered)")
        if anchor and seq == anchor[0] and row["hash"] != anchor[1]:
            return Verdict(False, checked, seq, f"row {seq}: does not match the recorded head of the feed")
        prev_hash, expected_seq, checked = row["hash"], seq + 1, checked + 1
    if anchor and expected_seq <= anchor[0]:
        return Verdict(False, checked, expected_seq,
                       f"row {expected_seq}: missing; the feed had {anchor[0]} rows (rows were deleted from its end)")
    return Verdict(True, checked)
