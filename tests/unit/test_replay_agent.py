"""ReplayAgent: the recorded sample replayed into a fresh directory, and the edits it must refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from promptrail.agents.base import Finished, Raw, Started, ToolResult, ToolUse, Usage
from promptrail.agents.replay import ReplayAgent

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "claude-2.1.197-sample.jsonl"
RECORDED_CWD = "/home/dev/project"


async def replay(transcript: Path, cwd: Path, **kwargs) -> list:
    return [event async for event in ReplayAgent(transcript, **kwargs).events("ignored", cwd)]


def transcript(tmp_path: Path, *objects: dict) -> Path:
    path = tmp_path / "session.jsonl"
    lines = [{"type": "system", "subtype": "init", "cwd": RECORDED_CWD, "session_id": "s"}, *objects,
             {"type": "result", "subtype": "success", "is_error": False, "result": "ok", "total_cost_usd": 0.01}]
    path.write_text("".join(json.dumps(obj) + "\n" for obj in lines))
    return path


def tool(name: str, tool_input: dict, tool_id: str = "t1") -> dict:
    return {"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}]}}


def tool_result(tool_id: str = "t1", is_error: bool = False) -> dict:
    return {"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": tool_id, "content": "ok", "is_error": is_error}]}}


def notes(events: list) -> list[str]:
    return [event.text for event in events if isinstance(event, Raw) and event.stream == "stderr"]


async def test_sample_replays_into_the_directory_with_the_recorded_verdict(tmp_path):
    events = await replay(SAMPLE, tmp_path)

    assert (tmp_path / "greet.py").read_text() == "def greet(name):\n    return f'Hello, {name}!'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greet.py"]  # Bash was not run
    assert events[0] == Started(
        session_id="5df05ac5-02c2-40ce-be84-54c03ed06b79", model="claude-opus-4-8[1m]", cwd=RECORDED_CWD
    )
    assert [e.name for e in events if isinstance(e, ToolUse)] == ["Write", "Edit", "Bash"]
    assert notes(events) == []
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert (finished.is_error, finished.complete, finished.cost_usd, finished.num_turns) == (False, True, 0.0325, 4)
    assert finished.usage == Usage(input=4800, output=340)


async def test_escapes_are_refused_and_the_replay_goes_on(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / ".git").mkdir()
    (tmp_path / "outside").mkdir()
    (work / "link").symlink_to(tmp_path / "outside")
    attempts = [
        f"{RECORDED_CWD}/../evil.txt",
        "../evil.txt",
        "sub/../../evil.txt",
        "/etc/evil.txt",
        f"{RECORDED_CWD}/.git/config",
        ".git/hooks/pre-commit",
        "link/evil.txt",
    ]
    objects = []
    for index, path in enumerate(attempts):
        objects += [tool("Write", {"file_path": path, "content": "pwned"}, f"t{index}"), tool_result(f"t{index}")]
    objects += [tool("Write", {"file_path": f"{RECORDED_CWD}/ok/fine.txt", "content": "fine\n"}, "last"),
                tool_result("last")]

    events = await replay(transcript(tmp_path, *objects), work)

    assert notes(events) == [
        f"replay: Write '{RECORDED_CWD}/../evil.txt' not applied: outside the recorded session's directory "
        f"({RECORDED_CWD})",
        "replay: Write '../evil.txt' not applied: escapes the working directory",
        "replay: Write 'sub/../../evil.txt' not applied: escapes the working directory",
        f"replay: Write '/etc/evil.txt' not applied: outside the recorded session's directory ({RECORDED_CWD})",
        f"replay: Write '{RECORDED_CWD}/.git/config' not applied: inside .git",
        "replay: Write '.git/hooks/pre-commit' not applied: inside .git",
        "replay: Write 'link/evil.txt' not applied: a symlink leads outside the working directory",
    ]
    assert [p.name for p in (tmp_path / "outside").iterdir()] == []
    assert list((work / ".git").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()
    assert (work / "ok" / "fine.txt").read_text() == "fine\n"
    assert events[-1].is_error is False


async def test_failed_edits_are_noted_and_the_replay_goes_on(tmp_path):
    (tmp_path / "a.txt").write_text("one two two\n")
    path = transcript(
        tmp_path,
        tool("Edit", {"file_path": "a.txt", "old_string": "three", "new_string": "3"}, "e1"), tool_result("e1"),
        tool("Edit", {"file_path": "a.txt", "old_string": "two", "new_string": "2"}, "e2"), tool_result("e2"),
        tool("Edit", {"file_path": "missing.txt", "old_string": "x", "new_string": "y"}, "e3"), tool_result("e3"),
        tool("Edit", {"file_path": "a.txt", "old_string": "two", "new_string": "2", "replace_all": True}, "e4"),
        tool_result("e4"),
    )
    events = await replay(path, tmp_path)
    assert notes(events) == [
        "replay: Edit 'a.txt' not applied: old_string not found",
        "replay: Edit 'a.txt' not applied: old_string occurs 2 times and replace_all is not set",
        "replay: Edit 'missing.txt' not applied: the file does not exist",
    ]
    # The recorded "ok" of an edit not made here is not passed on as a success.
    assert [(r.tool_use_id, r.content, r.is_error) for r in events if isinstance(r, ToolResult)] == [
        ("e1", "not applied in this replay (old_string not found); the recording said: ok", True),
        ("e2", "not applied in this replay (old_string occurs 2 times and replace_all is not set); the recording "
               "said: ok", True),
        ("e3", "not applied in this replay (the file does not exist); the recording said: ok", True),
        ("e4", "ok", False)]
    assert (tmp_path / "a.txt").read_text() == "one 2 2\n"
    assert events[-1].is_error is False


async def test_multi_edit_applies_all_edits_or_none(tmp_path):
    (tmp_path / "m.py").write_text("a = 1\nb = 2\n")
    path = transcript(
        tmp_path,
        tool("MultiEdit", {"file_path": f"{RECORDED_CWD}/m.py", "edits": [
            {"old_string": "a = 1", "new_string": "a = 10"},
            {"old_string": "b = 2", "new_string": "b = 20"},
        ]}, "m1"), tool_result("m1"),
        tool("MultiEdit", {"file_path": "m.py", "edits": [
            {"old_string": "a = 10", "new_string": "a = 100"},
            {"old_string": "nope", "new_string": "x"},
        ]}, "m2"), tool_result("m2"),
        tool("MultiEdit", {"file_path": "new.py", "edits": [
            {"old_string": "", "new_string": "x = 1\n"},
            {"old_string": "x = 1", "new_string": "x = 2"},
        ]}, "m3"), tool_result("m3"),
    )
    events = await replay(path, tmp_path)
    assert (tmp_path / "m.py").read_text() == "a = 10\nb = 20\n"
    assert (tmp_path / "new.py").read_text() == "x = 2\n"
    assert notes(events) == ["replay: MultiEdit 'm.py' not applied: old_string not found"]


async def test_text_utf8_cannot_carry_is_refused_and_the_replay_goes_on(tmp_path):
    # JSON can carry a lone surrogate ("\\ud800"); a file name byte that was not UTF-8 comes as
    # "\\udcff" (Python's surrogateescape) and is written as that byte.
    (tmp_path / "e.txt").write_text("old\n")
    path = transcript(
        tmp_path,
        tool("Write", {"file_path": "a.txt", "content": "lone \ud800 surrogate"}, "w1"), tool_result("w1"),
        tool("Write", {"file_path": "b\ud800.txt", "content": "x"}, "w2"), tool_result("w2"),
        tool("Edit", {"file_path": "e.txt", "old_string": "old", "new_string": "\udfff"}, "w3"), tool_result("w3"),
        tool("Write", {"file_path": "bad\udcffname.txt", "content": "kept\n"}, "w4"), tool_result("w4"),
    )
    events = await replay(path, tmp_path)
    assert notes(events) == [
        "replay: Write 'a.txt' not applied: the new content has a lone surrogate (\\ud800) at character 6, "
        "which UTF-8 cannot carry",
        "replay: Write 'b\\ud800.txt' not applied: the path has a lone surrogate (\\ud800) at character 2, "
        "which UTF-8 cannot carry",
        "replay: Edit 'e.txt' not applied: the new content has a lone surrogate (\\udfff) at character 1, "
        "which UTF-8 cannot carry",
    ]
    assert sorted(p.name.encode("utf-8", "surrogateescape") for p in tmp_path.iterdir() if p.suffix == ".txt") == \
        [b"bad\xffname.txt", b"e.txt"]
    assert (tmp_path / "e.txt").read_text() == "old\n"
    assert events[-1].is_error is False


async def test_a_change_that_failed_in_the_recording_is_not_made(tmp_path):
    path = transcript(
        tmp_path,
        tool("Write", {"file_path": "denied.txt", "content": "no"}, "w1"), tool_result("w1", is_error=True),
    )
    events = await replay(path, tmp_path)
    assert not (tmp_path / "denied.txt").exists()
    assert notes(events) == []


async def test_missing_transcript(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert await replay(missing, tmp_path) == [
        Finished(is_error=True, complete=False, error=f"transcript not found: {missing}")
    ]


async def test_transcript_without_result_is_incomplete(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:-1]))
    finished = (await replay(path, tmp_path))[-1]
    assert finished == Finished(
        is_error=True, complete=False, error="the transcript ended without a result", cost_usd=None
    )


async def test_cancel_stops_at_the_next_line(tmp_path):
    shutil.copy(SAMPLE, tmp_path / "sample.jsonl")
    agent = ReplayAgent(tmp_path / "sample.jsonl", delay=0.05)
    events = []
    async for event in agent.events("ignored", tmp_path):
        events.append(event)
        if isinstance(event, Started):
            await agent.cancel()
    assert events == [events[0], Finished(is_error=True, complete=False, error="cancelled")]
    assert not (tmp_path / "greet.py").exists()
