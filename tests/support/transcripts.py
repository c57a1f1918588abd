"""Builds Claude Code stream-json transcripts for tests, in the exact shape the real CLI prints
(see tests/fixtures/claude-2.1.197-sample.jsonl), so the replay agent can act out any scenario:
which files are written or edited, what the agent says, and how the session ends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDED_CWD = "/home/dev/project"


@dataclass
class Write:
    path: str
    content: str


@dataclass
class Edit:
    path: str
    old: str
    new: str


@dataclass
class Say:
    text: str


@dataclass
class Bash:
    """A shell command the agent ran (a replay shows it; it does not run it)."""

    command: str


def transcript_lines(steps: list[Any], *, cost: float | None = 0.0123, is_error: bool = False,
                     result: bool = True, usage: dict[str, int] | None = None) -> list[dict[str, Any]]:
    usage = usage or {"input_tokens": 2000, "output_tokens": 150, "cache_read_input_tokens": 500,
                      "cache_creation_input_tokens": 100}
    lines: list[dict[str, Any]] = [{"type": "system", "subtype": "init", "cwd": RECORDED_CWD,
                                    "session_id": "s-test", "model": "claude-test"}]
    for number, step in enumerate(steps, 1):
        if isinstance(step, Say):
            block = {"type": "text", "text": step.text}
            lines.append({"type": "assistant", "message": {"content": [block]}})
            continue
        tool_id = f"toolu_{number:02d}"
        if isinstance(step, Bash):
            tool = {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": step.command}}
        elif isinstance(step, Write):
            tool = {"type": "tool_use", "id": tool_id, "name": "Write",
                    "input": {"file_path": f"{RECORDED_CWD}/{step.path}", "content": step.content}}
        else:
            tool = {"type": "tool_use", "id": tool_id, "name": "Edit",
                    "input": {"file_path": f"{RECORDED_CWD}/{step.path}", "old_string": step.old,
                              "new_string": step.new, "replace_all": False}}
        lines.append({"type": "assistant", "message": {"content": [tool]}})
        lines.append({"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}]}})
    if result:
        final = {"type": "result", "subtype": "success", "is_error": is_error, "num_turns": len(steps),
                 "result": "failed badly" if is_error else "done", "usage": usage}
        if cost is not None:
            final["total_cost_usd"] = cost
        lines.append(final)
    return lines


def write_transcript(path: Path, steps: list[Any], **kwargs: Any) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in transcript_lines(steps, **kwargs)))
    return path
