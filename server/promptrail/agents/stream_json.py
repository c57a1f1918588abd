"""Claude Code's ``--output-format stream-json``: line framing and the mapping to agent events.

This module owns two things, shared by the live CLI agent and the replay agent:

- framing: ``LineFramer`` / ``read_lines`` split a byte stream into newline-delimited lines with no
  length cap (the CLI prints single lines of several MB, e.g. a tool result holding a whole file);
- mapping: ``StreamJsonParser`` turns each line into the events of ``promptrail.agents.base`` and
  keeps the CLI's final ``result`` object as the run's ``Finished`` verdict.

The parser never raises: whatever the agent prints is kept in the log (as ``Raw`` when it is not
something we understand) and parsing goes on.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from typing import Any, AsyncIterator

from promptrail.agents.base import (
    AgentEvent,
    Finished,
    Raw,
    Started,
    Text,
    ToolResult,
    ToolUse,
    Usage,
)

CANCELLED = "cancelled"
"""The ``Finished.error`` of a run stopped by ``Agent.cancel()``."""


class LineFramer:
    """Incremental newline framing over byte chunks, linear in the input size.

    The unfinished tail is kept as a list of chunks and joined once when its newline arrives, so a
    multi-MB line delivered in 64 KiB reads is never re-scanned or re-copied per chunk.
    """

    def __init__(self) -> None:
        self._tail: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``, without their ``\\n``."""
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            if chunk:
                self._tail.append(chunk)
            return []
        if self._tail:
            self._tail.append(parts[0])
            parts[0] = b"".join(self._tail)
            self._tail.clear()
        last = parts.pop()
        if last:
            self._tail.append(last)
        return parts

    def flush(self) -> bytes | None:
        """The final line that had no ``\\n`` (at end of input), or None."""
        if not self._tail:
            return None
        line = b"".join(self._tail)
        self._tail.clear()
        return line


async def read_lines(stream: asyncio.StreamReader, chunk_size: int = 65536) -> AsyncIterator[bytes]:
    """Yield the lines of ``stream`` (without ``\\n``) as they complete, the unterminated last one too.

    ``StreamReader.readline`` is not used on purpose: it fails on lines longer than the reader's
    limit (64 KiB by default), and the CLI's lines are routinely longer.
    """
    framer = LineFramer()
    while chunk := await stream.read(chunk_size):
        for line in framer.feed(chunk):
            yield line
    last = framer.flush()
    if last is not None:
        yield last


def decode_line(line: bytes | str) -> str:
    """A line as text: UTF-8 with bad bytes replaced (an agent's output is never rejected), no EOL."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    return line.rstrip("\r\n")


class StreamJsonParser:
    """Maps stream-json lines to ``AgentEvent``s; one instance per agent run.

    ``feed_line`` returns the events of one line, never a ``Finished``: the CLI's ``result``
    object is kept in ``result`` instead, because an agent must yield its ``Finished`` last, after
    whatever the process still prints or does once it has reported. ``finish()`` gives that verdict
    (or an "incomplete" one when there was no ``result``).
    """

    def __init__(self) -> None:
        self.result: Finished | None = None

    def feed_line(self, line: bytes | str) -> list[AgentEvent]:
        text = decode_line(line)
        if not text.strip():
            return []
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return [Raw(text)]
        if not isinstance(obj, dict):
            return [Raw(text)]
        try:
            return self._map(obj, text)
        except Exception:  # noqa: BLE001 - a malformed line must never end the run; keep it verbatim
            return [Raw(text)]

    def finish(self, incomplete_error: str) -> Finished:
        """The run's verdict: the ``result`` seen, else an incomplete failure with ``incomplete_error``."""
        if self.result is not None:
            return self.result
        return Finished(is_error=True, complete=False, error=incomplete_error)

    def finish_cancelled(self) -> Finished:
        """The verdict for a cancelled run; cost and tokens are kept if the CLI already reported them."""
        reported = self.result
        return Finished(
            is_error=True,
            complete=False,
            error=CANCELLED,
            cost_usd=reported.cost_usd if reported else None,
            usage=reported.usage if reported else None,
            num_turns=reported.num_turns if reported else None,
            raw=reported.raw if reported else {},
            # The CLI's own totals, once it reported them: its cost can be computed.
            usage_exact=reported is not None,
            usage_by_model=reported.usage_by_model if reported else {},
        )

    # -- mapping -------------------------------------------------------------------------------

    def _map(self, obj: dict[str, Any], line: str) -> list[AgentEvent]:
        kind = obj.get("type")
        if kind == "system" and obj.get("subtype") == "init":
            return [
                Started(
                    session_id=_opt_str(obj.get("session_id")),
                    model=_opt_str(obj.get("model")),
                    cwd=_opt_str(obj.get("cwd")),
                )
            ]
        if kind in ("assistant", "user"):
            blocks = _content_blocks(obj)
            if blocks is None:
                return [Raw(line)]  # a message shape we do not know: keep it whole
            if kind == "user":
                return [_user_block(block) for block in blocks]
            return [_assistant_block(block) for block in blocks if not _is_empty_text(block)]
        if kind == "result":
            if self.result is not None:
                # The first verdict stands; a second one is kept in the log, not silently applied.
                return [Raw(f"[duplicate result ignored] {line}")]
            self.result = _finished_from_result(obj)
            return []
        # Other system events (hooks, compaction, retries...) and types newer than this parser.
        return [Raw(line)]


def _content_blocks(obj: dict[str, Any]) -> list[Any] | None:
    """The message's content blocks (a plain string content is one text block); None if absent."""
    message = obj.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else None


def _is_empty_text(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and not block.get("text")


def _assistant_block(block: Any) -> AgentEvent:
    if isinstance(block, dict):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            return Text(block["text"])
        if kind == "tool_use":
            tool_input = block.get("input")
            return ToolUse(
                id=str(block.get("id") or ""),
                name=str(block.get("name") or ""),
                input=tool_input if isinstance(tool_input, dict) else {"input": tool_input},
            )
    # thinking, redacted_thinking, server tool blocks...: kept, not interpreted.
    return Raw(_compact_json(block))


def _user_block(block: Any) -> AgentEvent:
    if isinstance(block, dict) and block.get("type") == "tool_result":
        return ToolResult(
            tool_use_id=str(block.get("tool_use_id") or ""),
            content=flatten_content(block.get("content")),
            is_error=block.get("is_error") is True,
        )
    return Raw(_compact_json(block))


def flatten_content(content: Any) -> str:
    """A tool result's content as text: a string as is; a list of blocks joined by newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_block_text(block) for block in content)
    return _compact_json(content)


def _block_text(block: Any) -> str:
    if isinstance(block, dict):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            return block["text"]
        if block.get("type") == "image":
            return "[image]"
    if isinstance(block, str):
        return block
    return _compact_json(block)


def _finished_from_result(obj: dict[str, Any]) -> Finished:
    # ``is_error`` is the CLI's own verdict; ``subtype`` is "success" even for API errors, and the
    # exit code says nothing either. A result without a proper ``is_error: false`` is not a success.
    is_error = obj.get("is_error") is not False
    result_text = obj.get("result") if isinstance(obj.get("result"), str) else ""
    num_turns = obj.get("num_turns")
    usage = _usage(obj.get("usage"))
    by_model = _usage_by_model(obj.get("modelUsage"), usage.cache_write_1h if usage else 0)
    if by_model:
        # ``modelUsage`` counts every model's calls (``usage`` leaves out a helper model's), and
        # after a dropped stream the CLI retries without streaming and reports zero ``usage``.
        usage = sum(by_model.values(), Usage())
    cost = _opt_number(obj.get("total_cost_usd"))
    if is_error and cost == 0 and (usage is None or usage.total() == 0):
        # No API call succeeded (401, 5xx): the CLI prints 0, but nothing was measured. Unknown
        # cost is NULL, never 0.
        cost = None
    return Finished(
        is_error=is_error,
        complete=True,
        result=result_text,
        error=_failure_text(obj, result_text) if is_error else None,
        cost_usd=cost,
        usage=usage,
        num_turns=num_turns if isinstance(num_turns, int) and not isinstance(num_turns, bool) else None,
        raw=obj,
        usage_by_model=by_model,
    )


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    breakdown = usage.get("cache_creation") if isinstance(usage.get("cache_creation"), dict) else {}
    return Usage(
        input=_count(usage.get("input_tokens")),
        output=_count(usage.get("output_tokens")),
        cache_read=_count(usage.get("cache_read_input_tokens")),
        cache_write=_count(usage.get("cache_creation_input_tokens")),
        cache_write_1h=_count(breakdown.get("ephemeral_1h_input_tokens")),
    )


def _usage_by_model(per_model: Any, cache_write_1h: int) -> dict[str, Usage]:
    """``modelUsage`` (camelCase counts per model) as ``Usage``s, without the models that used nothing.

    It has no 1-hour cache breakdown; ``usage``'s (``cache_write_1h``) goes to the model that wrote
    the most to the cache: the main conversation, not a helper model's short calls."""
    if not isinstance(per_model, dict):
        return {}
    parts = {str(name): Usage(
        input=_count(counts.get("inputTokens")),
        output=_count(counts.get("outputTokens")),
        cache_read=_count(counts.get("cacheReadInputTokens")),
        cache_write=_count(counts.get("cacheCreationInputTokens")),
    ) for name, counts in per_model.items() if isinstance(counts, dict)}
    parts = {name: usage for name, usage in parts.items() if usage.total()}
    if cache_write_1h and parts:
        writer = max(parts, key=lambda name: parts[name].cache_write)
        parts[writer] = replace(parts[writer], cache_write_1h=min(cache_write_1h, parts[writer].cache_write))
    return parts


def _failure_text(obj: dict[str, Any], result_text: str) -> str:
    parts: list[str] = []
    errors = obj.get("errors")
    if isinstance(errors, list):
        parts.extend(e if isinstance(e, str) else _compact_json(e) for e in errors)
    elif isinstance(errors, str) and errors:
        parts.append(errors)
    if result_text and result_text not in parts:
        parts.insert(0, result_text)
    status = obj.get("api_error_status")
    if status not in (None, "", 0) and str(status) not in " ".join(parts):
        parts.append(f"API error status {status}")
    if not parts:
        parts.append(f"claude reported an error (subtype {obj.get('subtype')!r})")
    return "; ".join(parts)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


#: Above this a token count is no count (no run reads 2**53 tokens), and SQLite could not store it.
MAX_TOKENS = 2**53


def _count(value: Any) -> int:
    number = _opt_number(value)
    return int(number) if number is not None and 0 <= number <= MAX_TOKENS else 0


def _compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return repr(value)
