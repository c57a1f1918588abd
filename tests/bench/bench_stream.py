"""100,000 agent output lines through the real ``promptrail serve``: a replayed transcript of 100,000
assistant text blocks (``_common.stream_fixture``) run with ``promptrail.runPrompt``.

- Every ``promptrail/log`` entry is counted by the client until the final ``promptrail/runStatus``;
  all 100,000 text entries must arrive with gap-free ``seq``, and the audit store must hold them all.
- Throughput = 100,000 / (runPrompt sent → final runStatus received); target ≥ 30,000 lines/s.
  Baseline for the ratio: reading + ``json.loads`` of the transcript's lines in plain Python.
- While it streams, a ``textDocument/codeLens`` request for an AI-touched file goes out every ~20 ms
  (one at a time); target p95 ≤ 100 ms. Pass 1 keeps the buffer unchanged (the lens cache may
  answer); pass 2 (stricter) edits the buffer before each request, so every one blames again.

Each pass runs in a fresh copy of the fixture repository, so re-runs start from the same store.

    .venv/bin/python tests/bench/bench_stream.py [--passes 1|2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (BENCH_DIR, SERVER_COMMAND, STREAM_LINES, LspClient, RpcError, StreamFixture, Table, median,
                     ms, note, p95, stream_fixture)

TARGET_RATE = 30_000
TARGET_P95_S = 0.100
LENS_PERIOD_S = 0.020
RUN_TIMEOUT_S = 120.0
#: The server command (``--server`` swaps it, e.g. for a patched or profiled server in an experiment).
SERVER = SERVER_COMMAND


@dataclass
class Pass:
    name: str
    elapsed: float = 0.0
    text_entries: int = 0
    entries: int = 0
    gap_free: bool = False
    batches: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    lens: list[float] = field(default_factory=list)
    lens_counts: set[int] = field(default_factory=set)
    first_text_at: float = 0.0
    last_text_at: float = 0.0
    store_text: int = 0
    store_rows: int = 0
    store_gap_free: bool = False
    #: Why the pass could not finish (e.g. a garbled message from the server), or None.
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Every text line reached the client and the store, numbered 1..n without a gap on both."""
        return (self.text_entries == STREAM_LINES and self.gap_free and self.store_text == STREAM_LINES
                and self.store_gap_free and self.store_rows == self.entries)


def parse_baseline(transcript: Path) -> float:
    t0 = time.perf_counter()
    with open(transcript, "rb") as handle:
        for line in handle:
            json.loads(line)
    return time.perf_counter() - t0


async def one_pass(fixture: StreamFixture, name: str, edit_buffer: bool) -> Pass:
    result = Pass(name)
    try:
        await _drive(fixture, result, edit_buffer)
    except (RpcError, TimeoutError, asyncio.TimeoutError) as exc:  # reported as a MISS, never lost
        result.error = str(exc) or type(exc).__name__
    return result


async def _drive(fixture: StreamFixture, result: Pass, edit_buffer: bool) -> None:
    name = result.name
    work = BENCH_DIR / "scratch" / f"stream-{name.split()[0]}"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(fixture.repo, work, symlinks=True)
    client = LspClient()
    await client.start(SERVER, cwd=work)
    try:
        await client.initialize(work)
        path = work / fixture.ai_file
        text = path.read_text()
        uri = client.did_open(path, text)
        lenses, _ = await client.code_lens(uri)  # the editor had the file open: lenses shown
        assert lenses, "the AI-touched file has no lens before the stream"

        seen: dict[str, list[tuple[int, str]]] = {}
        done = asyncio.Event()
        run_id: list[str] = []
        arrival: dict[str, float] = {}

        def on_log(params: dict[str, Any]) -> None:
            now = time.perf_counter()
            result.batches += 1
            into = seen.setdefault(params["runId"], [])
            for entry in params["entries"]:
                into.append((entry["seq"], entry["kind"]))
                if entry["kind"] == "text":
                    if not result.first_text_at:
                        result.first_text_at = now
                    result.last_text_at = now

        def on_status(params: dict[str, Any]) -> None:
            if params.get("final") and (not run_id or params["runId"] == run_id[0]):
                result.status = params
                arrival["final"] = time.perf_counter()
                done.set()

        client.on("promptrail/log", on_log)
        client.on("promptrail/runStatus", on_status)

        future, sent = client.send_request("workspace/executeCommand", {
            "command": "promptrail.runPrompt",
            "arguments": [{"prompt": "narrate a very long session", "agent": "replay",
                           "transcript": str(fixture.transcript), "workspaceFolder": work.as_uri()}]})
        answer, _ = await asyncio.wait_for(future, 60)
        run_id.append(answer["runId"])

        version = 1
        deadline = time.perf_counter() + RUN_TIMEOUT_S
        while not done.is_set():
            started = time.perf_counter()
            if started > deadline:
                raise TimeoutError(f"no final runStatus within {RUN_TIMEOUT_S:g} s")
            if edit_buffer:
                version += 1
                client.notify("textDocument/didChange", {
                    "textDocument": {"uri": uri, "version": version},
                    "contentChanges": [{"text": text + f"# edit {version}\n"}]})
            lenses, seconds = await client.code_lens(uri)
            if done.is_set() and started > arrival["final"]:
                break
            result.lens.append(seconds)
            result.lens_counts.add(len(lenses))
            await asyncio.sleep(max(0.0, LENS_PERIOD_S - (time.perf_counter() - started)))
        result.elapsed = arrival["final"] - sent

        mine = seen.get(run_id[0], [])
        result.entries = len(mine)
        result.text_entries = sum(1 for _, kind in mine if kind == "text")
        result.gap_free = [seq for seq, _ in mine] == list(range(1, len(mine) + 1))
        strays = set(seen) - {run_id[0]}
        assert not strays, f"log entries for other runs: {strays}"

        database = sqlite3.connect(f"file:{work / '.git' / 'promptrail' / 'audit.db'}?mode=ro", uri=True)
        rows, texts, low, high, distinct = database.execute(
            "SELECT COUNT(*), SUM(kind = 'text'), MIN(seq), MAX(seq), COUNT(DISTINCT seq) FROM log_entries "
            "WHERE run_id = ?", [run_id[0]]).fetchone()
        database.close()
        result.store_rows, result.store_text = rows, texts or 0
        result.store_gap_free = (low, high, distinct) == (1, rows, rows)
    finally:
        await client.stop()
        shutil.rmtree(work, ignore_errors=True)
        # A run cut short (a failed pass) keeps its worktree by design; this copy is gone, so is that.
        for worktrees in (BENCH_DIR / "home" / ".cache" / "promptrail" / "worktrees").glob(f"{work.name}-*"):
            shutil.rmtree(worktrees, ignore_errors=True)


async def main(fixture: StreamFixture, passes: int) -> None:
    baseline = median([parse_baseline(fixture.transcript) for _ in range(3)])
    runs = [await one_pass(fixture, "1 unchanged buffer", edit_buffer=False)]
    if passes > 1:
        runs.append(await one_pass(fixture, "2 buffer edited before each request", edit_buffer=True))

    table = Table(f"bench_stream: {STREAM_LINES:,} agent text lines through promptrail serve (runPrompt, replay)")
    base_rate = STREAM_LINES / baseline
    table.add("read + json.loads of the transcript (baseline)", 3, ms(baseline), "", "", "",
              f"{base_rate:,.0f} lines/s")
    for run in runs:
        if run.error is not None:
            table.add(f"pass {run.name}: FAILED, see below", 1, "", "", "", "", "", False)
            continue
        rate = STREAM_LINES / run.elapsed
        if run is runs[0]:
            table.add(f"pass {run.name[:1]}: runPrompt → final runStatus", 1, ms(run.elapsed), "", ms(baseline),
                      f"{run.elapsed / baseline:.1f}x", f">= {TARGET_RATE:,}/s (got {rate:,.0f}/s)",
                      rate >= TARGET_RATE and run.complete)
        else:
            table.add(f"pass {run.name[:1]}: runPrompt → final runStatus (context)", 1, ms(run.elapsed), "",
                      ms(baseline), f"{run.elapsed / baseline:.1f}x", f"got {rate:,.0f}/s")
        table.add(f"pass {run.name}: codeLens during stream", len(run.lens), ms(median(run.lens)),
                  ms(p95(run.lens)), "", "", f"p95 <= {TARGET_P95_S * 1000:.0f} ms",
                  p95(run.lens) <= TARGET_P95_S)
    table.print()
    for run in runs:
        if run.error is not None:
            note(f"pass {run.name}: FAILED after {len(run.lens)} lens requests and "
                 f"{run.entries or 'an unknown number of'} log entries: {run.error}")
            continue
        note(f"pass {run.name}: completeness {'OK' if run.complete else 'FAILED'}: all {STREAM_LINES:,} text "
             f"entries at the client and in the store, seq gap-free on both sides")
        note(f"pass {run.name}: status {run.status.get('status')} · client got {run.entries:,} entries "
             f"({run.text_entries:,} text) in {run.batches} notifications, seq gap-free: {run.gap_free} · "
             f"store: {run.store_rows:,} rows ({run.store_text:,} text), seq 1..n gap-free: {run.store_gap_free}")
        note(f"pass {run.name}: first → last text entry {ms(run.last_text_at - run.first_text_at)} "
             f"({STREAM_LINES / max(run.last_text_at - run.first_text_at, 1e-9):,.0f} lines/s while streaming); "
             f"lens max {ms(max(run.lens))}, lens counts seen {sorted(run.lens_counts)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=2, choices=(1, 2))
    parser.add_argument("--server", help="another server command line (default: python -m promptrail serve)")
    options = parser.parse_args()
    if options.server:
        SERVER = shlex.split(options.server)
    asyncio.run(main(stream_fixture(), options.passes))  # the fixture is built outside the loop
