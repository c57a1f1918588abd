"""Replaying a recorded Claude Code session (a stream-json transcript) as an agent run.

This module owns the replay agent, the offline default of ``promptrail demo``: it yields the events
the live CLI produced, through the same ``StreamJsonParser``, and re-applies the session's file
changes (Write, Edit, MultiEdit) in the new working directory, confined to it. Nothing is executed:
Bash, Read and every other tool are only replayed as events. Cost and tokens are the recorded ones.
"""

from __future__ import annotations

import asyncio
import posixpath
from pathlib import Path, PurePosixPath
from typing import Any, AsyncIterator

from promptrail.agents.base import Agent, AgentEvent, Finished, Raw, Started, ToolResult, ToolUse
from promptrail.agents.stream_json import CANCELLED, LineFramer, StreamJsonParser

FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit"})
NOTE_STREAM = "stderr"
"""``Raw.stream`` of the replay's own notes (a refused or failed file change): its diagnostics."""


class ReplayRefused(Exception):
    """A recorded file change that must not or cannot be applied; the message says why."""


class ReplayAgent(Agent):
    """Replays ``transcript``; ``delay`` seconds pass between lines (for demos and cancel tests)."""

    name = "replay"
    label = "replayed session"

    def __init__(self, transcript: Path, delay: float = 0.0) -> None:
        self.transcript = Path(transcript)
        self.delay = delay
        self._cancelled = asyncio.Event()

    async def events(self, prompt: str, cwd: Path) -> AsyncIterator[AgentEvent]:
        try:
            data = await asyncio.to_thread(self.transcript.read_bytes)
        except FileNotFoundError:
            yield Finished(is_error=True, complete=False, error=f"transcript not found: {self.transcript}")
            return
        except OSError as exc:
            yield Finished(
                is_error=True,
                complete=False,
                error=f"transcript not found: {self.transcript} ({exc.strerror or exc})",
            )
            return

        parser = StreamJsonParser()
        lines = await asyncio.to_thread(_split_lines, data)
        root = Path(cwd)
        recorded_cwd: str | None = None
        # A file tool is applied when its recorded result shows it succeeded: a change the session
        # failed to make (no match, permission denied...) left the files as they were.
        pending: dict[str, ToolUse] = {}
        for start in range(0, len(lines), _CHUNK):
            chunk = lines[start:start + _CHUNK]
            # Parsed in a thread, a chunk at a time: the event loop (and every editor request
            # during a run) never waits for a long transcript, and events flow from the start.
            per_line = await asyncio.to_thread(lambda chunk=chunk: [parser.feed_line(line) for line in chunk])
            for index, events in enumerate(per_line, start):
                if index and self.delay:
                    await self._pause()
                elif index % 64 == 0:
                    await asyncio.sleep(0)  # without a delay nothing here awaits: let the loop breathe
                if self._cancelled.is_set():
                    # Not parser.finish_cancelled(): the parser may have read ahead to the recorded
                    # result, whose cost this replay, stopped part-way, did not reach.
                    yield Finished(is_error=True, complete=False, error=CANCELLED)
                    return
                for event in events:
                    if isinstance(event, ToolResult) and event.tool_use_id in pending:
                        use = pending.pop(event.tool_use_id)
                        refusal = None if event.is_error else await _apply(use, recorded_cwd, root)
                        if refusal:
                            yield Raw(f"replay: {use.name} {use.input.get('file_path')!r} not applied: {refusal}",
                                      stream=NOTE_STREAM)
                            # The recorded "updated successfully" is not true here: said as what it is.
                            event = ToolResult(event.tool_use_id, f"not applied in this replay ({refusal}); the "
                                                                  f"recording said: {event.content}", is_error=True)
                    yield event
                    if isinstance(event, Started) and recorded_cwd is None:
                        recorded_cwd = event.cwd
                    elif isinstance(event, ToolUse) and event.name in FILE_TOOLS:
                        pending[event.id] = event
        yield parser.finish("the transcript ended without a result")

    async def cancel(self) -> None:
        self._cancelled.set()

    async def _pause(self) -> None:
        try:
            await asyncio.wait_for(self._cancelled.wait(), self.delay)
        except TimeoutError:
            pass


_CHUNK = 2000


async def _apply(use: ToolUse, recorded_cwd: str | None, root: Path) -> str | None:
    """Make a recorded file change; why not (not an exception) when it cannot be made."""
    try:
        await asyncio.to_thread(apply_file_tool, use, recorded_cwd, root)
    except ReplayRefused as refusal:
        return str(refusal)
    return None


def _split_lines(data: bytes) -> list[bytes]:
    framer = LineFramer()
    lines = framer.feed(data)
    last = framer.flush()
    return lines if last is None else [*lines, last]


def apply_file_tool(use: ToolUse, recorded_cwd: str | None, root: Path) -> Path:
    """Apply a recorded Write/Edit/MultiEdit under ``root``; the file written, or ``ReplayRefused``."""
    target = confine(use.input.get("file_path"), recorded_cwd, root)
    if use.name == "Write":
        content = use.input.get("content")
        if not isinstance(content, str):
            raise ReplayRefused("the recorded Write has no text content")
        new_text = content
    else:
        edits = [use.input] if use.name == "Edit" else use.input.get("edits")
        if not isinstance(edits, list) or not edits:
            raise ReplayRefused("the recorded MultiEdit has no edits")
        # All edits of a MultiEdit apply, or none do (as in Claude Code): they are made in memory.
        new_text = _replace(_read_text(target), edits[0])
        for edit in edits[1:]:
            new_text = _replace(new_text, edit)
    data = _encoded(new_text, "the new content", "strict")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise ReplayRefused(f"cannot write: {exc.strerror or exc}") from exc
    return target


def confine(file_path: Any, recorded_cwd: str | None, root: Path) -> Path:
    """Where a recorded path lands under ``root``; ``ReplayRefused`` if it would land outside.

    Absolute paths are taken relative to the recorded session's cwd; relative ones to ``root``.
    Refused: ``..`` escapes, anything under ``.git``, and symlinks that lead out of ``root``.
    """
    if not isinstance(file_path, str) or not file_path:
        raise ReplayRefused("the recorded call has no file_path")
    if "\0" in file_path:
        raise ReplayRefused("the path contains a NUL byte")
    # A byte that was not UTF-8 (surrogateescape, as Python reads such a file name) stays that byte.
    _encoded(file_path, "the path", "surrogateescape")
    path = PurePosixPath(posixpath.normpath(file_path))
    if path.is_absolute():
        if recorded_cwd is None or not path.is_relative_to(posixpath.normpath(recorded_cwd)):
            raise ReplayRefused(f"outside the recorded session's directory ({recorded_cwd})")
        path = path.relative_to(posixpath.normpath(recorded_cwd))
    if path.parts[:1] == ("..",):
        raise ReplayRefused("escapes the working directory")
    if any(part.lower() == ".git" for part in path.parts):
        raise ReplayRefused("inside .git")
    if not path.parts or path == PurePosixPath("."):
        raise ReplayRefused("names the working directory itself")
    target = root / path
    if not target.resolve().is_relative_to(root.resolve()):
        raise ReplayRefused("a symlink leads outside the working directory")
    return target


def _encoded(text: str, what: str, errors: str) -> bytes:
    """``text`` as UTF-8; ``ReplayRefused`` when it holds a lone surrogate (JSON can carry ``"\\ud800"``)."""
    try:
        return text.encode("utf-8", errors)
    except UnicodeEncodeError as exc:
        raise ReplayRefused(f"{what} has a lone surrogate (\\u{ord(text[exc.start]):04x}) at character "
                            f"{exc.start + 1}, which UTF-8 cannot carry") from None


def _read_text(target: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    if not target.exists():
        return None
    try:
        return target.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReplayRefused("the file is not UTF-8 text") from exc
    except OSError as exc:
        raise ReplayRefused(f"cannot read: {exc.strerror or exc}") from exc


def _replace(text: str | None, edit: Any) -> str:
    if not isinstance(edit, dict):
        raise ReplayRefused("a recorded edit is not an object")
    old, new = edit.get("old_string"), edit.get("new_string")
    if not isinstance(old, str) or not isinstance(new, str):
        raise ReplayRefused("a recorded edit has no old_string/new_string")
    if old == "":
        # Claude Code creates a file with an empty old_string; on existing content it is an error.
        if text:
            raise ReplayRefused("old_string is empty but the file is not")
        return new
    if text is None:
        raise ReplayRefused("the file does not exist")
    count = text.count(old)
    if count == 0:
        raise ReplayRefused("old_string not found")
    if edit.get("replace_all") is True:
        return text.replace(old, new)
    if count > 1:
        raise ReplayRefused(f"old_string occurs {count} times and replace_all is not set")
    return text.replace(old, new, 1)
