"""A scripted fake of the Anthropic Messages API, served on 127.0.0.1 for tests.

This module owns the wire protocol that the real Claude Code CLI and the ``anthropic`` Python SDK
speak to ``ANTHROPIC_BASE_URL``: ``POST /v1/messages`` (the CLI adds ``?beta=true``) answered either
as Server-Sent Events (``stream: true``) or as one JSON message, the Anthropic error body for HTTP
errors, and harmless answers to the other endpoints the CLI probes. Nothing here ever talks to the
real API.

A test hands ``FakeAnthropic`` a *script*: a list of replies, consumed one per **agent turn**:

    with FakeAnthropic([Turn("Writing it.", [ToolCall("Write", {...})]), Turn("Done.")]) as api:
        run_the_agent(base_url=api.url)
        assert len(api.agent_requests) == 2

Reply kinds: ``Turn`` (text and/or tool_use blocks, with usage numbers), ``HttpError`` (status plus
Anthropic error JSON, optionally repeated so client retries see it too) and ``Disconnect`` (the SSE
stream starts, then the connection drops). When the script is exhausted every further agent turn
gets a plain ``end_turn`` text ``"done."`` so an agent always finishes.

Agent turns versus the CLI's own requests: see ``is_agent_turn``.

What Claude Code 2.1.197 was seen to do against this server (recorded by experiment):
- ``HEAD /`` once at start-up (a reachability probe), then one ``POST /v1/messages?beta=true`` with
  ``stream: true`` per agent turn; nothing else with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``.
- It retries every failed request itself -- 401 included -- with exponential backoff (about ten
  times by default); ``CLAUDE_CODE_MAX_RETRIES=N`` caps that, ``ANTHROPIC_MAX_RETRIES`` does not.
- After a stream that breaks off it re-sends the same turn *without* ``stream`` (a non-streaming
  fallback), which is why ``Disconnect`` also cuts plain JSON replies short.
- It reads ``retry-after`` as whole seconds (``1.5`` waited 1 s).

Paths in tool inputs: the real Write/Edit tools want an absolute ``file_path``, but a test only knows
relative names before the CLI starts. Any string in a ``ToolCall.input`` may contain ``{cwd}``; it is
replaced (plain substring replacement, so other braces such as f-strings are left alone) by the
``cwd=`` passed to the constructor or, when none was given, by the working directory the CLI reports
in its system prompt (``Primary working directory: ...``).
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Union
from urllib.parse import urlsplit

__all__ = [
    "ToolCall",
    "Turn",
    "HttpError",
    "Disconnect",
    "Reply",
    "RecordedRequest",
    "FakeAnthropic",
    "is_agent_turn",
    "DONE_TEXT",
]

DONE_TEXT = "done."
"""What every agent turn gets once the script is exhausted."""

# The short answer for the CLI's own side requests (see ``is_agent_turn``): plain prose, so a
# side query that expects a title or a command prefix gets something harmless, never a tool call.
AUX_TEXT = "OK"

_CWD_PLACEHOLDER = "{cwd}"
_CWD_IN_SYSTEM_PROMPT = re.compile(r"Primary working directory: (\S[^\n]*)")

# Default error types per status, as the real API names them.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


# --------------------------------------------------------------------------------------------------
# The script


@dataclass(frozen=True)
class ToolCall:
    """One ``tool_use`` block. ``{cwd}`` in any string of ``input`` is substituted (see module doc)."""

    name: str
    input: dict[str, Any]
    id: str | None = None  # default: toolu_01, toolu_02, ... in the order the server emits them


@dataclass(frozen=True)
class Turn:
    """One assistant message: an optional text block, then zero or more tool_use blocks.

    ``stop_reason`` defaults to ``tool_use`` when there are tool calls, else ``end_turn``.
    ``delay`` seconds pass before the first byte is sent (for timeout/watchdog tests).
    """

    text: str | None = None
    tool_uses: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 1200
    output_tokens: int = 85
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    stop_reason: str | None = None
    delay: float = 0.0

    def effective_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if self.tool_uses else "end_turn"


@dataclass(frozen=True)
class HttpError:
    """Answer with ``status`` and the Anthropic error body ``{"type":"error","error":{...}}``.

    It answers ``times`` agent-turn requests before the script moves on; ``repeat=True`` answers
    every later one too (a client that retries 429/5xx must see the error on each retry).
    ``retry_after`` (seconds) is sent as the ``retry-after`` header; the SDK honours fractions,
    the CLI only whole seconds.
    """

    status: int
    error_type: str | None = None  # default from the status: 401 -> authentication_error, ...
    message: str = "scripted error"
    retry_after: float | None = None
    times: int = 1
    repeat: bool = False

    def body(self) -> dict[str, Any]:
        kind = self.error_type or _ERROR_TYPES.get(self.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}


@dataclass(frozen=True)
class Disconnect:
    """Start the SSE stream of ``turn``, send ``after_events`` frames, then drop the connection.

    Frames count from ``message_start``; the second frame is a ``ping``, so ``after_events=3`` cuts
    before the first block is complete. The stream is chunked, so the client sees an incomplete
    body (as with a real network failure), not a clean end of stream. A non-streaming request gets
    half of its JSON body and then the drop. ``times``/``repeat`` work as for ``HttpError``.
    """

    after_events: int = 2
    turn: Turn = field(default_factory=lambda: Turn(text="This reply is cut off before it ends."))
    times: int = 1
    repeat: bool = False


Reply = Union[Turn, HttpError, Disconnect]


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server saw it. ``body`` is the parsed JSON (None if absent or not JSON)."""

    method: str
    path: str  # with the query string, e.g. "/v1/messages?beta=true"
    headers: dict[str, str]
    body: Any
    agent_turn: bool
    reply: str  # what was answered: "turn", "error 429", "disconnect", "done", "aux", "other"
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic())


# --------------------------------------------------------------------------------------------------
# Telling agent turns from the CLI's side requests


def is_agent_turn(body: Any) -> bool:
    """True when a ``/v1/messages`` body is an agent turn, i.e. should consume a scripted reply.

    The rule: an agent turn offers the model tools -- ``tools`` is a non-empty list. Every agent
    turn Claude Code 2.1.197 sent carried its full tool list (24 tools, ``max_tokens`` 32000-64000),
    whichever tools the script used. Its own one-shot side queries (session titles, Bash command
    prefixes, memory extraction, ...) are plain prompts without tools; none were sent in the
    recorded ``-p`` runs with non-essential traffic disabled, but should a CLI version send one it
    must not eat a scripted turn. This applies only to requests from the CLI (its ``x-app``/
    ``user-agent`` headers): another client such as the ``anthropic`` SDK gets scripted turns even
    without tools -- see ``FakeAnthropic(aux_rule=...)``.
    """
    return isinstance(body, dict) and bool(body.get("tools"))


def _is_claude_cli(headers: dict[str, str]) -> bool:
    return headers.get("user-agent", "").lower().startswith("claude-cli/") or "x-app" in headers


# --------------------------------------------------------------------------------------------------
# Rendering replies


def _substitute(value: Any, cwd: str | None) -> Any:
    if isinstance(value, str):
        if cwd is not None and _CWD_PLACEHOLDER in value:
            return value.replace(_CWD_PLACEHOLDER, cwd)
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, cwd) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, cwd) for v in value]
    return value


def _split(text: str, parts: int) -> list[str]:
    """Split ``text`` into up to ``parts`` non-empty pieces, so clients must join deltas."""
    if len(text) <= 1 or parts <= 1:
        return [text]
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(frozen=True)
class _Block:
    kind: str  # "text" | "tool_use"
    text: str = ""
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)

    def final(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": self.text}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": self.input}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# --------------------------------------------------------------------------------------------------
# The server


class FakeAnthropic:
    """The fake server. Use as a context manager, or ``start()``/``stop()``.

    ``url`` is the base URL to give clients (``http://127.0.0.1:<port>``, no ``/v1``);
    ``requests`` lists every request seen; ``agent_requests`` only the agent turns.
    ``aux_rule``: ``"cli"`` (default) applies ``is_agent_turn`` only to requests from the Claude CLI
    (every request from another client is an agent turn); ``"tools"`` applies it to all;
    ``"never"`` treats every messages request as an agent turn.
    """

    def __init__(
        self,
        script: list[Reply] | None = None,
        *,
        cwd: str | None = None,
        model: str | None = None,
        aux_rule: str = "cli",
    ) -> None:
        self.script: list[Reply] = list(script or [])
        self.cwd = cwd
        self.model = model
        if aux_rule not in ("cli", "tools", "never"):
            raise ValueError(f"aux_rule must be 'cli', 'tools' or 'never', not {aux_rule!r}")
        self.aux_rule = aux_rule
        self.requests: list[RecordedRequest] = []
        self.reported_cwd: str | None = None  # last "Primary working directory" the CLI sent
        self._lock = threading.Lock()
        self._pos = 0
        self._served_at_pos = 0
        self._msg_ids = itertools.count(1)
        self._tool_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "FakeAnthropic":
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True  # a client holding a keep-alive socket must not block stop()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for the next poll: keep it short
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeAnthropic is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- inspection --------------------------------------------------------------------------------

    @property
    def agent_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.agent_turn]

    @property
    def remaining(self) -> int:
        """Script entries not yet (fully) used."""
        with self._lock:
            return len(self.script) - self._pos

    # -- internals used by the handler -------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _classify(self, headers: dict[str, str], body: Any) -> bool:
        if self.aux_rule == "never":
            return True
        if self.aux_rule == "cli" and not _is_claude_cli(headers):
            return True
        return is_agent_turn(body)

    def _next_reply(self) -> Reply | None:
        with self._lock:
            if self._pos >= len(self.script):
                return None
            item = self.script[self._pos]
            if isinstance(item, (HttpError, Disconnect)) and item.repeat:
                return item
            times = item.times if isinstance(item, (HttpError, Disconnect)) else 1
            self._served_at_pos += 1
            if self._served_at_pos >= times:
                self._pos += 1
                self._served_at_pos = 0
            return item

    def _cwd_for(self, body: Any) -> str | None:
        if self.cwd is not None:
            return self.cwd
        reported = _reported_cwd(body)
        if reported is not None:
            with self._lock:
                self.reported_cwd = reported
        return reported

    def _blocks(self, turn: Turn, cwd: str | None) -> list[_Block]:
        blocks: list[_Block] = []
        if turn.text is not None:
            blocks.append(_Block("text", text=turn.text))
        for call in turn.tool_uses:
            tool_id = call.id or f"toolu_{next(self._tool_ids):02d}"
            blocks.append(
                _Block("tool_use", id=tool_id, name=call.name, input=_substitute(call.input, cwd))
            )
        return blocks

    def _message_id(self) -> str:
        return f"msg_{next(self._msg_ids):02d}"


def _reported_cwd(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    if not isinstance(system, str):
        return None
    match = _CWD_IN_SYSTEM_PROMPT.search(system)
    return match.group(1).strip() if match else None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-reply (a cancelled agent, a killed CLI) is normal in tests;
        # anything else is a bug in this module and is still printed.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, as the real API: the CLI and httpx reuse connections.
    protocol_version = "HTTP/1.1"
    fake: FakeAnthropic  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # tests stay quiet; ``fake.requests`` is the log

    # -- plumbing ----------------------------------------------------------------------------------

    def _headers_dict(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(
        self,
        status: int,
        payload: Any,
        extra: dict[str, str] | None = None,
        *,
        truncate: bool = False,
    ) -> None:
        """Send ``payload`` as JSON; ``truncate`` sends half of it and drops the connection."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_fake_{next(self.fake._request_ids):04d}")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate:
            # The CLI falls back to a non-streaming request after a dropped stream, so a
            # ``Disconnect`` must be able to cut a plain JSON body short as well.
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
            return
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- verbs -------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        # The CLI sends ``HEAD /`` as a reachability probe before the first turn.
        self.fake._record(
            RecordedRequest("HEAD", self.path, self._headers_dict(), None, False, "other")
        )
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.fake._record(
            RecordedRequest("GET", self.path, self._headers_dict(), None, False, "other")
        )
        path = urlsplit(self.path).path
        if path.rstrip("/") == "/v1/models":
            model = self.fake.model or "claude-sonnet-4-5"
            self._send_json(
                200,
                {
                    "data": [{"type": "model", "id": model, "display_name": model}],
                    "has_more": False,
                    "first_id": model,
                    "last_id": model,
                },
            )
            return
        self._send_json(200, {})

    def do_POST(self) -> None:
        headers = self._headers_dict()
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(self.path).path.rstrip("/")

        if path == "/v1/messages/count_tokens":
            self.fake._record(RecordedRequest("POST", self.path, headers, body, False, "other"))
            self._send_json(200, {"input_tokens": max(1, len(raw) // 4)})
            return
        if path != "/v1/messages" or not isinstance(body, dict):
            self.fake._record(RecordedRequest("POST", self.path, headers, body, False, "other"))
            self._send_json(
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
            )
            return

        agent = self.fake._classify(headers, body)
        if not agent:
            self.fake._record(RecordedRequest("POST", self.path, headers, body, False, "aux"))
            self._answer_turn(body, Turn(text=AUX_TEXT, input_tokens=60, output_tokens=4))
            return

        reply = self.fake._next_reply()
        if reply is None:
            label, reply = "done", Turn(text=DONE_TEXT, output_tokens=4)
        elif isinstance(reply, HttpError):
            label = f"error {reply.status}"
        elif isinstance(reply, Disconnect):
            label = "disconnect"
        else:
            label = "turn"
        self.fake._record(RecordedRequest("POST", self.path, headers, body, True, label))

        if isinstance(reply, HttpError):
            extra = {}
            if reply.retry_after is not None:
                extra["retry-after"] = f"{reply.retry_after:g}"
            self._send_json(reply.status, reply.body(), extra)
        elif isinstance(reply, Disconnect):
            self._answer_turn(body, reply.turn, cut_after=reply.after_events)
        else:
            self._answer_turn(body, reply)

    # -- message replies ---------------------------------------------------------------------------

    def _answer_turn(self, body: dict[str, Any], turn: Turn, cut_after: int | None = None) -> None:
        if turn.delay:
            time.sleep(turn.delay)
        fake = self.fake
        blocks = fake._blocks(turn, fake._cwd_for(body))
        model = fake.model or body.get("model") or "claude-sonnet-4-5"
        message_id = fake._message_id()
        usage = {
            "input_tokens": turn.input_tokens,
            "cache_creation_input_tokens": turn.cache_creation_input_tokens,
            "cache_read_input_tokens": turn.cache_read_input_tokens,
            "output_tokens": turn.output_tokens,
        }
        if not body.get("stream"):
            self._send_json(
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [b.final() for b in blocks],
                    "stop_reason": turn.effective_stop_reason(),
                    "stop_sequence": None,
                    "usage": usage,
                },
                truncate=cut_after is not None,
            )
            return

        events = _stream_events(message_id, model, blocks, usage, turn.effective_stop_reason())
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", f"req_fake_{next(fake._request_ids):04d}")
        self.end_headers()
        try:
            for n, frame in enumerate(events):
                if cut_after is not None and n >= cut_after:
                    # Drop the socket without the terminating zero-length chunk: the client sees a
                    # truncated body, exactly like a connection reset mid-stream.
                    self._drop()
                    return
                self._chunk(frame)
            self._chunk(b"")  # the zero-length chunk ends the chunked body (b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _stream_events(
    message_id: str,
    model: str,
    blocks: list[_Block],
    usage: dict[str, int],
    stop_reason: str,
) -> Iterator[bytes]:
    """The SSE frames of one streamed message, in the order the real API sends them."""
    start_usage = dict(usage, output_tokens=1)  # the real API reports output so far: 1 token
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    yield _sse("ping", {"type": "ping"})
    for index, block in enumerate(blocks):
        if block.kind == "text":
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
            for piece in _split(block.text, 3):
                yield _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
                )
        else:
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": block.id, "name": block.name, "input": {}},
                },
            )
            for piece in _split(json.dumps(block.input, ensure_ascii=False), 3):
                yield _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})
