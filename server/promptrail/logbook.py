"""A run's log book: every line an agent (or a gate check) prints, numbered gap-free, redacted,
sent to the faces at once and written to the audit store in batches from a background thread,
so 100,000 lines a run never stall the event loop and none is dropped."""

from __future__ import annotations

import asyncio
import queue
import threading

from promptrail.audit.store import AuditStore, storable, utc_now
from promptrail.events import EventSink, LogEntry
from promptrail.redact import REDACTED, opens_private_key, private_key_end, redact


class LogBook:
    """A run's log: numbers entries gap-free, sends each to the faces at once, and writes them
    to the store in batches from a background thread (so 100k lines don't stall the loop).

    Every entry is redacted. A private key printed one line per entry (a process's plain output)
    is caught across entries: after an entry that opens a ``-----BEGIN … PRIVATE KEY-----`` without
    its END line, each following entry *of the same kind* (the same stream) is ``[REDACTED]``, up to
    and including the one with the ``-----END … PRIVATE KEY-----`` line (text after that line is
    kept, redacted as usual), or until ``KEY_LINES_MAX`` lines have been swallowed without an END
    line (a key shown truncated must not blank the rest of a 100k-line log)."""

    BATCH = 500
    #: A 16384-bit RSA key in PEM is about 200 lines; anything longer was not a key's body.
    KEY_LINES_MAX = 500

    def __init__(self, store: AuditStore, run_id: str, sink: EventSink, start_seq: int = 0) -> None:
        self.store, self.run_id, self.sink = store, run_id, sink
        #: A gate simulation appends to a finished run's log, continuing its numbering.
        self.seq = start_seq
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name=f"log-{run_id}", daemon=True)
        self._writer.start()
        self.write_error: BaseException | None = None
        #: kind → lines swallowed so far, for each stream inside a private key.
        self._open_keys: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        self.seq += 1
        # Made storable here, not only by the store: the faces must see the text that is stored.
        entry = LogEntry(self.run_id, self.seq, utc_now(), kind, self._redact(kind, storable(text)))
        self._queue.put((entry.run_id, entry.seq, entry.ts, entry.kind, entry.text))
        self.sink.emit(entry)

    def _redact(self, kind: str, text: str) -> str:
        swallowed = self._open_keys.get(kind)
        if swallowed is None:
            if "-----BEGIN" in text and opens_private_key(text):
                self._open_keys[kind] = 0
            return redact(text)
        end = private_key_end(text)
        if end is None:
            swallowed += text.count("\n") + 1
            if swallowed >= self.KEY_LINES_MAX:
                del self._open_keys[kind]
            else:
                self._open_keys[kind] = swallowed
            return REDACTED
        del self._open_keys[kind]
        rest = text[end:]
        return REDACTED + (self._redact(kind, rest) if rest else "")

    def _write_loop(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                batch.pop()
                done = True
            rows = [row for row in batch if row is not None]
            try:
                self.store.append_log(rows)
            except BaseException as exc:  # noqa: BLE001 - surfaced by close()
                self.write_error = exc
                return

    async def close(self) -> None:
        """Flush every entry to the store before the run's final status is written."""
        self._queue.put(None)
        await asyncio.to_thread(self._writer.join)
        if self.write_error:
            raise self.write_error
