"""ClaudeCliAgent against real subprocesses: small stand-in ``claude`` scripts that print stream-json.

Each stand-in is a Python script written into tmp_path; it can record its own pid and the pid of a
child it starts in ``pids``, so tests can prove the whole process group is gone afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from promptrail.agents.base import Finished, Raw, Started, Text, Usage
from promptrail.agents.claude_cli import ClaudeCliAgent

PRELUDE = f"""#!{sys.executable}
import json, os, signal, subprocess, sys, time

def emit(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\\n")
    sys.stdout.flush()

def text(t):
    return {{"type": "assistant", "message": {{"content": [{{"type": "text", "text": t}}]}}}}

def result(is_error=False, text="done", subtype="success"):
    return {{"type": "result", "subtype": subtype, "is_error": is_error, "result": text,
            "num_turns": 1, "total_cost_usd": 0.0125,
            "usage": {{"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 3,
                      "cache_creation_input_tokens": 4}}}}

def record_pids(with_child=True):
    pids = [os.getpid()]
    if with_child:
        pids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid)
    with open("pids", "w") as f:
        json.dump(pids, f)

INIT = {{"type": "system", "subtype": "init", "session_id": "sess-1", "model": "claude-test",
        "cwd": os.getcwd()}}
"""

SUCCESS_USAGE = Usage(input=100, output=20, cache_read=3, cache_write=4)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


def stand_in(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-claude"
    script.write_text(PRELUDE + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


async def run(agent: ClaudeCliAgent, work: Path, prompt: str = "do it") -> list:
    return [event async for event in agent.events(prompt, work)]


def only_finished(events: list) -> Finished:
    finished = [event for event in events if isinstance(event, Finished)]
    assert len(finished) == 1 and events[-1] is finished[0]
    return finished[0]


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie waiting for a reaper counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def assert_gone(pids_file: Path) -> None:
    pids = json.loads(pids_file.read_text())
    deadline = time.monotonic() + 3
    while any(is_alive(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert [pid for pid in pids if is_alive(pid)] == []


async def test_line_split_across_writes_is_one_event(tmp_path, work):
    path = stand_in(tmp_path, """
        emit(INIT)
        line = json.dumps(text("split in three parts")) + "\\n"
        for part in (line[:7], line[7:30], line[30:]):
            sys.stdout.write(part)
            sys.stdout.flush()
            time.sleep(0.1)
        emit(result())
    """)
    events = await run(ClaudeCliAgent(claude_path=path), work)
    assert events[:-1] == [
        Started(session_id="sess-1", model="claude-test", cwd=str(work.resolve())),
        Text("split in three parts"),
    ]
    finished = only_finished(events)
    assert (finished.is_error, finished.complete, finished.result) == (False, True, "done")
    assert (finished.cost_usd, finished.usage, finished.num_turns) == (0.0125, SUCCESS_USAGE, 1)


async def test_a_5_mb_line_arrives_whole(tmp_path, work):
    # Multi-byte characters, so 64 KiB reads also split UTF-8 sequences.
    big = "promptrail é€ 🚀 " * (5 * 1024 * 1024 // 22)
    (tmp_path / "big.txt").write_text(big, encoding="utf-8")
    path = stand_in(tmp_path, f"""
        emit(INIT)
        emit(text(open({str(tmp_path / "big.txt")!r}, encoding="utf-8").read()))
        emit(result())
    """)
    events = await run(ClaudeCliAgent(claude_path=path), work)
    assert len(big.encode()) > 5 * 1000 * 1000
    texts = [event for event in events if isinstance(event, Text)]
    assert len(texts) == 1 and texts[0].text == big
    assert only_finished(events).is_error is False


async def test_non_json_line_is_kept_and_the_run_goes_on(tmp_path, work):
    path = stand_in(tmp_path, """
        emit(INIT)
        print("Warning: this is not JSON {", flush=True)
        emit(text("still going"))
        emit(result())
    """)
    events = await run(ClaudeCliAgent(claude_path=path), work)
    assert events[1:3] == [Raw("Warning: this is not JSON {", stream="stdout"), Text("still going")]
    finished = only_finished(events)
    assert (finished.is_error, finished.complete) == (False, True)


async def test_is_error_under_subtype_success_and_exit_0_is_a_failure(tmp_path, work):
    path = stand_in(tmp_path, """
        emit(INIT)
        emit(result(is_error=True, text="API Error: 529 overloaded", subtype="success"))
        sys.exit(0)
    """)
    finished = only_finished(await run(ClaudeCliAgent(claude_path=path), work))
    assert (finished.is_error, finished.complete) == (True, True)
    assert finished.error == "API Error: 529 overloaded"
    assert finished.cost_usd == 0.0125


async def test_exit_without_result_is_incomplete_with_unknown_cost(tmp_path, work):
    path = stand_in(tmp_path, """
        emit(INIT)
        print("Error: first problem", file=sys.stderr, flush=True)
        print("Error: Invalid API key", file=sys.stderr, flush=True)
        sys.exit(3)
    """)
    events = await run(ClaudeCliAgent(claude_path=path), work)
    assert Raw("Error: Invalid API key", stream="stderr") in events
    assert only_finished(events) == Finished(
        is_error=True,
        complete=False,
        error="claude exited with code 3 without a result; last stderr: Error: Invalid API key",
        cost_usd=None,
    )


async def test_process_lingering_after_result_is_ended_and_the_run_succeeds(tmp_path, work):
    path = stand_in(tmp_path, """
        record_pids()
        emit(INIT)
        emit(result())
        time.sleep(60)
    """)
    started = time.monotonic()
    events = await run(ClaudeCliAgent(claude_path=path, linger_timeout=0.5, kill_grace=1.0), work)
    elapsed = time.monotonic() - started
    finished = only_finished(events)
    assert (finished.is_error, finished.complete, finished.cost_usd) == (False, True, 0.0125)
    assert elapsed < 3.5, elapsed  # linger 0.5 s + SIGTERM; nowhere near the script's 60 s
    await assert_gone(work / "pids")


async def test_a_process_outside_the_group_holding_stdout_does_not_delay_the_end(tmp_path, work):
    # The escaped process keeps the pipes open, so "the pipes closed" must not be what tells us
    # that claude has exited (asyncio's proc.wait() waits for both).
    path = stand_in(tmp_path, """
        escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                   start_new_session=True)
        with open("escaped.pid", "w") as f:
            f.write(str(escaped.pid))
        emit(INIT)
        time.sleep(60)
    """)
    agent = ClaudeCliAgent(claude_path=path, kill_grace=5.0)
    events = []
    try:
        async for event in agent.events("do it", work):
            events.append(event)
            if isinstance(event, Started):
                started = time.monotonic()
                await agent.cancel()
        assert time.monotonic() - started < 2  # SIGTERM is obeyed at once; no wait for kill_grace
        assert only_finished(events).error == "cancelled"
    finally:
        os.kill(int((work / "escaped.pid").read_text()), signal.SIGKILL)


async def test_cancel_mid_run_ends_the_process_group(tmp_path, work):
    path = stand_in(tmp_path, """
        record_pids()
        emit(INIT)
        emit(text("working"))
        time.sleep(60)
    """)
    agent = ClaudeCliAgent(claude_path=path)
    events = []
    async for event in agent.events("do it", work):
        events.append(event)
        if event == Text("working"):
            await agent.cancel()
    assert only_finished(events) == Finished(is_error=True, complete=False, error="cancelled")
    await assert_gone(work / "pids")
    await agent.cancel()  # idempotent, also after the end


async def test_cancel_from_another_task_kills_a_process_that_ignores_sigterm(tmp_path, work):
    path = stand_in(tmp_path, """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        record_pids(with_child=False)
        emit(INIT)
        time.sleep(60)
    """)
    agent = ClaudeCliAgent(claude_path=path, kill_grace=0.3)
    consumer = asyncio.create_task(run(agent, work))
    while not (work / "pids").exists():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await asyncio.gather(agent.cancel(), agent.cancel())
    events = await asyncio.wait_for(consumer, 5)
    assert time.monotonic() - started < 3
    assert events[0] == Started(session_id="sess-1", model="claude-test", cwd=str(work.resolve()))
    assert only_finished(events).error == "cancelled"
    await assert_gone(work / "pids")


async def test_cancel_before_start_runs_nothing(tmp_path, work):
    path = stand_in(tmp_path, "record_pids(with_child=False)\n")
    agent = ClaudeCliAgent(claude_path=path)
    await agent.cancel()
    assert await run(agent, work) == [Finished(is_error=True, complete=False, error="cancelled")]
    assert not (work / "pids").exists()


async def test_silence_watchdog_ends_a_mute_process(tmp_path, work):
    path = stand_in(tmp_path, """
        record_pids()
        emit(INIT)
        time.sleep(60)
    """)
    started = time.monotonic()
    events = await run(ClaudeCliAgent(claude_path=path, silence_timeout=0.5), work)
    assert time.monotonic() - started < 3.5
    assert only_finished(events) == Finished(
        is_error=True,
        complete=False,
        error="claude printed nothing for 0.5 s and was stopped by the silence watchdog",
    )
    await assert_gone(work / "pids")


async def test_binary_not_found(tmp_path, work):
    missing = str(tmp_path / "no-such-claude")
    assert await run(ClaudeCliAgent(claude_path=missing), work) == [
        Finished(
            is_error=True,
            complete=False,
            error=f"claude CLI not found at '{missing}'; install it with "
            "`npm install -g @anthropic-ai/claude-code` or set --claude-path",
        )
    ]


async def test_a_flood_on_stderr_does_not_block_stdout(tmp_path, work):
    # 2 MB on stderr before any stdout: far more than a pipe buffer holds.
    path = stand_in(tmp_path, """
        for i in range(200):
            sys.stderr.write(f"progress {i} " + "." * 10_000 + "\\n")
        sys.stderr.flush()
        emit(INIT)
        emit(result())
    """)
    events = await asyncio.wait_for(run(ClaudeCliAgent(claude_path=path), work), 10)
    assert len([e for e in events if isinstance(e, Raw) and e.stream == "stderr"]) == 200
    assert only_finished(events).is_error is False


async def test_consumer_stopping_early_still_ends_and_reaps_the_process(tmp_path, work):
    path = stand_in(tmp_path, """
        record_pids()
        emit(INIT)
        time.sleep(60)
    """)
    agent = ClaudeCliAgent(claude_path=path)
    async with contextlib.aclosing(agent.events("do it", work)) as events:
        async for event in events:
            assert isinstance(event, Started)
            break
    await assert_gone(work / "pids")


async def test_command_line_cwd_and_environment(tmp_path, work):
    path = stand_in(tmp_path, """
        with open("seen.json", "w") as f:
            json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "stdin": sys.stdin.read(),
                       "var": os.environ.get("PROMPTRAIL_TEST_VAR"), "home": os.environ.get("HOME")}, f)
        emit(result())
    """)
    agent = ClaudeCliAgent(
        claude_path=path, model="claude-x", extra_args=["--allowedTools", "Bash", "Edit"],
        env={"PROMPTRAIL_TEST_VAR": "yes"},
    )
    await run(agent, work, prompt="- a prompt that starts with a dash")
    seen = json.loads((work / "seen.json").read_text())
    assert seen["argv"] == [
        "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits",
        "--model", "claude-x", "--allowedTools", "Bash", "Edit", "--", "- a prompt that starts with a dash",
    ]
    assert seen["cwd"] == str(work.resolve())
    assert seen["stdin"] == ""
    assert seen["var"] == "yes"
    assert seen["home"] == os.environ.get("HOME")

    sealed = ClaudeCliAgent(claude_path=path, env={"PROMPTRAIL_TEST_VAR": "only"}, inherit_env=False)
    await run(sealed, work)
    seen = json.loads((work / "seen.json").read_text())
    assert (seen["var"], seen["home"]) == ("only", None)


async def test_a_run_whose_claude_lingers_5_s_after_its_result_succeeds(tmp_path, repo):
    # The whole pipeline with the default linger time: the process is still alive 5 s after its
    # `result`, so it is ended, and the run is judged by the result (succeeded), not by the kill.
    from promptrail.runs import RunRequest, start_run
    from promptrail.workspace import Workspace

    pids = tmp_path / "pids"
    path = stand_in(tmp_path, f"""
        with open({str(pids)!r}, "w") as f:
            json.dump([os.getpid()], f)
        emit(INIT)
        with open("made.py", "w") as f:
            f.write("MADE = True\\n")
        emit(result())
        time.sleep(60)
    """)
    assert ClaudeCliAgent(claude_path=path).linger_timeout == 5.0
    started = time.monotonic()
    run = await start_run(Workspace(repo), RunRequest(prompt="make it", agent="claude-cli", claude_path=path))
    data = await run.wait()
    elapsed = time.monotonic() - started
    assert (data["status"], data["cost_usd"], data["error"]) == ("succeeded", 0.0125, None)
    assert [f["path"] for f in data["files"]] == ["made.py"]
    assert 5.0 <= elapsed < 15, elapsed  # waited the linger time, then ended it; not the script's 60 s
    await assert_gone(pids)


async def test_a_relative_claude_path_is_the_one_next_to_where_the_run_was_started(tmp_path, repo, monkeypatch):
    # The agent runs in the run's worktree: a relative path given here must still name this file there.
    from promptrail.runs import RunRequest, start_run
    from promptrail.workspace import Workspace

    stand_in(tmp_path, """
        emit(INIT)
        with open("made.py", "w") as f:
            f.write("MADE = True\\n")
        emit(result())
    """)
    monkeypatch.chdir(tmp_path)
    run = await start_run(Workspace(repo), RunRequest(prompt="make it", agent="claude-cli",
                                                      claude_path="./fake-claude"))
    data = await run.wait()
    assert (data["status"], [f["path"] for f in data["files"]]) == ("succeeded", ["made.py"])
