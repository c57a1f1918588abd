"""The Anthropic Messages API as an agent: a small tool loop over the ``anthropic`` SDK's streaming API.

This module owns that loop: the conversation (prompt → streamed assistant turn → tool results →
next turn, up to a turn limit), the five tools the model gets and their execution confined to the
run's worktree, the system prompt with the repository's CLAUDE.md files (prompt-cached), the token
usage summed over turns, the per-run budget cap, the mapping of API failures to one clear error,
and cancellation. ``anthropic`` is imported lazily, in a thread: it costs about 2 s of start-up.

Tools: ``read_file``, ``write_file``, ``edit_file`` (an exact, unique replacement), ``list_files`` and
``run_command`` (only commands on the allow-list; none by default). Every path is confined to the
worktree: ``..`` escapes, absolute paths outside it, symlinks that lead out of it and anything under
``.git`` are refused with a tool error to the model, and each refusal is logged (a ``Raw`` on stderr).

CLAUDE.md: the root file and every nested CLAUDE.md in the tree (``git ls-files``, so ignored folders
such as node_modules do not count) go into the system prompt at the start, each labelled with the
subtree it governs, in one block marked ``cache_control: ephemeral`` so every later turn (and the
next run on the same base) reads them from the cache. Loading them all up front, rather than when a
path below them is first touched, keeps the cached prefix identical across turns. Files past the
size cap are named instead, and the first tool call under such a folder reminds the model to read it.

Configuration (``.promptrail.toml``, section ``[anthropic]``; every key optional)::

    [anthropic]
    model = "claude-sonnet-4-5"        # else --model, else [agent] model, else this default
    max_turns = 25                     # API round trips per run
    max_tokens = 16384                 # per reply
    max_retries = 2                    # SDK retries of 429 / 5xx / 529 / connection errors
    request_timeout_s = 600            # per request (for a stream: the longest silence)
    allowed_commands = ["pytest", "ruff check"]   # run_command allow-list (argv prefixes)
    command_timeout_s = 120

An ``allowed_commands`` entry allows every command whose argv (split like a shell would, but run
without one, so ``;``, ``|`` and ``>`` are plain arguments) starts with the entry's words. The
arguments are not checked: allow only commands that are harmless with any arguments.

Environment: ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``) and ``ANTHROPIC_BASE_URL``, from the
run's ``agent_env`` laid over the process environment. Commands run without those two keys.

Cost: the API reports none, so ``Finished.cost_usd`` stays None and the orchestrator computes it from
the tokens (``cost_source: computed``); this module computes the same figure (``raw["cost_usd_computed"]``)
only to enforce ``max_budget_usd`` after every turn. A run stopped by it ends with
``raw["stop_reason"] == "budget_exceeded"``. A cancelled run's tokens are the exact total
(``Finished.usage_exact``), so its cost is computed too, unless the cancel cut off a reply in
flight: what that request was billed is unknown, and so is the run's cost.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import json
import os
import posixpath
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, AsyncIterator, Callable

from promptrail.agents.base import Agent, AgentEvent, Finished, Raw, Started, Text, ToolResult, ToolUse, Usage
from promptrail.config import ConfigValueError
from promptrail.errors import PromptrailError
from promptrail.processes import end_group

CONFIG_SECTION = "anthropic"
DEFAULT_MODEL = "claude-sonnet-4-5"
CANCELLED = "cancelled by the user"
NOTE_STREAM = "stderr"
"""``Raw.stream`` of this agent's own notes (refusals, budget): they reach the run log as stderr."""

MAX_READ_CHARS = 256_000
MAX_READ_LINES = 2_000
MAX_LIST_ENTRIES = 1_000
MAX_COMMAND_OUTPUT = 30_000
MAX_CLAUDE_MD_FILE = 64_000
MAX_CLAUDE_MD_TOTAL = 160_000
_SECRET_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
_KILL_GRACE_S = 2.0


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnthropicSettings:
    model: str | None = None
    max_turns: int = 25
    max_tokens: int = 16384
    max_retries: int = 2
    request_timeout_s: float = 600.0
    allowed_commands: tuple[str, ...] = ()
    command_timeout_s: float = 120.0


_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "max_turns": (int,), "max_tokens": (int,), "max_retries": (int,),
    "request_timeout_s": (int, float), "allowed_commands": (list,), "command_timeout_s": (int, float),
}
_SETTING_KINDS = {"model": "a model id", "max_turns": "a whole number", "max_tokens": "a whole number",
                  "max_retries": "a whole number", "request_timeout_s": "a number of seconds",
                  "allowed_commands": "a list of commands", "command_timeout_s": "a number of seconds"}


def settings_from(section: dict[str, Any]) -> AnthropicSettings:
    """``[anthropic]`` as settings; a typo or a bad value is a ``ConfigValueError`` naming its key
    (``Config.parse`` names its file and line), never ignored."""
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _SETTING_TYPES:
            raise ConfigValueError(f"unknown key '{key}' in [{CONFIG_SECTION}]; "
                                   f"known keys: {', '.join(sorted(_SETTING_TYPES))}", key)
        if isinstance(value, bool) or not isinstance(value, _SETTING_TYPES[key]):
            raise ConfigValueError(f"[{CONFIG_SECTION}] {key} must be {_SETTING_KINDS[key]}, not {value!r}", key)
        if key == "allowed_commands":
            for entry in value:
                if not isinstance(entry, str) or not entry.strip():
                    raise ConfigValueError(f"[{CONFIG_SECTION}] allowed_commands must be a list of commands, "
                                           f"not {entry!r} among them", key)
                try:
                    shlex.split(entry)
                except ValueError as exc:
                    raise ConfigValueError(f"[{CONFIG_SECTION}] allowed_commands entry {entry!r} cannot be split "
                                           f"into words ({exc}); fix its quoting", key) from None
            value = tuple(value)
        elif key == "max_retries":
            if value < 0:
                raise ConfigValueError(f"[{CONFIG_SECTION}] max_retries must be 0 or more, not {value}", key)
        elif key != "model" and value <= 0:
            raise ConfigValueError(f"[{CONFIG_SECTION}] {key} must be positive, not {value}", key)
        values[key] = value
    return AnthropicSettings(**values)


def credentials(env: dict[str, str] | None) -> tuple[str | None, str | None, str | None]:
    """(api_key, auth_token, base_url) from ``env`` laid over the process environment."""
    merged = {**os.environ, **(env or {})}
    return (merged.get("ANTHROPIC_API_KEY") or None, merged.get("ANTHROPIC_AUTH_TOKEN") or None,
            merged.get("ANTHROPIC_BASE_URL") or None)


MISSING_KEY = "the anthropic agent needs an API key: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"


# -- the agent ------------------------------------------------------------------------------------
@dataclass
class _TurnState:
    """What one streamed turn produced so far; read after the stream ends, also when it broke."""

    started: bool = False
    message_id: str | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    tool_uses: list[ToolUse] = field(default_factory=list)
    bad_tool_inputs: dict[str, str] = field(default_factory=dict)  # tool_use id -> why unusable
    texts: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cache_write_1h: int = 0
    request_id: str | None = None

    def as_usage(self) -> Usage:
        u = self.usage
        return Usage(input=u.get("input_tokens", 0), output=u.get("output_tokens", 0),
                     cache_read=u.get("cache_read_input_tokens", 0),
                     cache_write=u.get("cache_creation_input_tokens", 0), cache_write_1h=self.cache_write_1h)


_END = object()


class AnthropicAgent(Agent):
    """Runs the model through the Messages API with promptrail's own tools, in one working directory.

    ``env`` is laid over ``os.environ`` for the API credentials and for allowed commands.
    ``max_budget_usd``: stop once the run's computed cost exceeds it (needs a price for the model).
    ``price``: ``Usage -> dollars | None`` for the budget; by default ``promptrail.costs``' table.
    """

    name = "anthropic"
    label = "Anthropic API"

    def __init__(
        self,
        model: str | None = None,
        settings: AnthropicSettings | None = None,
        env: dict[str, str] | None = None,
        max_budget_usd: float | None = None,
        price: Callable[[str, Usage], float | None] | None = None,
    ) -> None:
        self.settings = settings or AnthropicSettings()
        self.model = model or self.settings.model or DEFAULT_MODEL
        self.env = dict(env or {})
        self.max_budget_usd = max_budget_usd
        self._price = price
        #: Why the loop stopped: end_turn, max_turns, budget_exceeded, api_error, stream_error, cancelled...
        self.stop_reason: str | None = None
        self._cancelled = asyncio.Event()
        self._inflight: asyncio.Task[Any] | None = None
        self._root: Path | None = None
        self._root_resolved: Path | None = None
        self._omitted_claude_md: dict[str, str] = {}  # folder ("" = root) -> CLAUDE.md path not in the prompt
        self._allowed = [shlex.split(entry) for entry in self.settings.allowed_commands]

    @classmethod
    def from_config(cls, config: Any, *, model: str | None = None, env: dict[str, str] | None = None,
                    max_budget_usd: float | None = None) -> "AnthropicAgent":
        """The agent for a workspace's configuration; everything a user can get wrong fails here."""
        from promptrail import costs

        settings = config.parse(CONFIG_SECTION, settings_from)
        api_key, auth_token, _ = credentials(env)
        if not api_key and not auth_token:
            raise PromptrailError(MISSING_KEY)
        model = model or settings.model or config.agent.model or DEFAULT_MODEL
        table = config.parse("prices", costs.price_table)
        return cls(model=model, settings=settings, env=env, max_budget_usd=max_budget_usd,
                   price=lambda name, usage: costs.compute_cost(name, usage, table))

    # -- the loop ---------------------------------------------------------------------------------
    async def events(self, prompt: str, cwd: Path) -> AsyncIterator[AgentEvent]:
        total = Usage()
        turns = 0
        client = None
        try:
            if self._cancelled.is_set():
                yield self._cancelled_finish(total, turns)
                return
            api_key, auth_token, base_url = credentials(self.env)
            if not api_key and not auth_token:
                self.stop_reason = "no_api_key"
                yield Finished(is_error=True, complete=False, error=MISSING_KEY)
                return
            root = Path(cwd)
            if not root.is_dir():
                yield Finished(is_error=True, complete=False, error=f"working directory not found: {cwd}")
                return
            self._root, self._root_resolved = root, root.resolve()
            yield Started(model=self.model, cwd=str(root))
            # The SDK import (about 2 s) and the CLAUDE.md scan run in threads, side by side; a
            # cancel meanwhile does not wait for them.
            prepare = asyncio.ensure_future(asyncio.gather(
                asyncio.to_thread(importlib.import_module, "anthropic"), asyncio.to_thread(self._claude_md_text)))
            self._inflight = prepare  # type: ignore[assignment]
            try:
                sdk, claude_md = await prepare
            except ImportError as exc:
                yield Finished(is_error=True, complete=False,
                               error=f"the anthropic package is not installed ({exc}); `pip install anthropic`")
                return
            except asyncio.CancelledError:
                if not self._cancelled.is_set():
                    raise
            finally:
                self._inflight = None
            if self._cancelled.is_set():
                yield self._cancelled_finish(total, turns)
                return
            # Explicit credentials are total for the SDK: it reads no other credential source.
            client = sdk.AsyncAnthropic(api_key=api_key, auth_token=None if api_key else auth_token,
                                        base_url=base_url, max_retries=self.settings.max_retries,
                                        timeout=self.settings.request_timeout_s)
            system = self._system(claude_md, root)
            tools = self._tools()
            messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            budget_warned = False
            final_text = ""
            while True:
                if self._cancelled.is_set():
                    yield self._cancelled_finish(total, turns)
                    return
                if turns >= self.settings.max_turns:
                    self.stop_reason = "max_turns"
                    yield self._finish(total, turns, is_error=True, error=(
                        f"turn limit reached: {turns} turns ([{CONFIG_SECTION}] max_turns) and the model "
                        "still had work to do; what it changed so far is kept"))
                    return
                turns += 1
                state = _TurnState()
                request = {"model": self.model, "max_tokens": self.settings.max_tokens, "system": system,
                           "tools": tools, "messages": _with_cache_mark(messages)}
                queue: asyncio.Queue[Any] = asyncio.Queue()
                task = asyncio.create_task(self._stream_turn(client, request, state, queue))
                # A done-callback, not a finally in the coroutine: a task cancelled before it ever
                # ran still wakes the loop below.
                task.add_done_callback(lambda _: queue.put_nowait(_END))
                self._inflight = task
                try:
                    while (item := await queue.get()) is not _END:
                        yield item
                finally:
                    if not task.done():
                        task.cancel()
                    self._inflight = None
                turn_usage = state.as_usage()
                total += turn_usage
                if state.started:
                    yield turn_usage
                if task.cancelled() or self._cancelled.is_set():
                    # A reply cut off by the cancel was billed for more than it told us.
                    whole = not task.cancelled() and task.exception() is None
                    yield self._cancelled_finish(total, turns, usage_exact=whole)
                    return
                error = task.exception()
                if error is not None:
                    self.stop_reason = "stream_error" if state.started else "api_error"
                    yield self._finish(total, turns, is_error=True,
                                       error=self._describe_error(error, state, turns, base_url), state=state)
                    return

                cost = self._cost(total)
                if self.max_budget_usd is not None:
                    if cost is None and not budget_warned:
                        budget_warned = True
                        yield Raw(f"anthropic agent: no price known for model '{self.model}', so the per-run "
                                  f"budget of ${self.max_budget_usd:g} cannot be enforced", stream=NOTE_STREAM)
                    elif cost is not None and cost > self.max_budget_usd:
                        self.stop_reason = "budget_exceeded"
                        for use in state.tool_uses:
                            yield ToolResult(use.id, "not run: the run's budget is exceeded", is_error=True)
                        message = (f"budget exceeded: ${cost:.4f} spent after {turns} turn(s), over the per-run "
                                   f"budget of ${self.max_budget_usd:g}; the agent was stopped and what it "
                                   "changed so far is kept")
                        yield Raw(f"anthropic agent: {message}", stream=NOTE_STREAM)
                        yield self._finish(total, turns, is_error=True, error=message, state=state)
                        return

                if state.texts:
                    final_text = "\n\n".join(state.texts)
                if state.content:
                    messages.append({"role": "assistant", "content": state.content})
                if state.stop_reason == "refusal":
                    self.stop_reason = "refusal"
                    refused = "the model refused the request" + (f": {final_text}" if final_text else "")
                    yield self._finish(total, turns, is_error=True, error=refused, state=state)
                    return
                if not state.tool_uses:
                    if state.stop_reason == "max_tokens":
                        yield Raw(f"anthropic agent: the last reply was cut off at max_tokens "
                                  f"({self.settings.max_tokens})", stream=NOTE_STREAM)
                    self.stop_reason = state.stop_reason or "end_turn"
                    yield self._finish(total, turns, is_error=False, result=final_text, state=state)
                    return
                results: list[dict[str, Any]] = []
                for use in state.tool_uses:
                    if self._cancelled.is_set():
                        break
                    tool_task = asyncio.create_task(self._run_tool(use, state.bad_tool_inputs.get(use.id)))
                    self._inflight = tool_task
                    try:
                        content, is_error, note = await tool_task
                    except asyncio.CancelledError:
                        if not self._cancelled.is_set():
                            raise  # this generator itself is being cancelled (the await passed it on)
                        break
                    finally:
                        self._inflight = None
                    if note:
                        yield Raw(note, stream=NOTE_STREAM)
                    yield ToolResult(use.id, content, is_error=is_error)
                    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use.id, "content": content}
                    if is_error:
                        block["is_error"] = True
                    results.append(block)
                if self._cancelled.is_set():
                    yield self._cancelled_finish(total, turns)
                    return
                messages.append({"role": "user", "content": results})
        finally:
            if self._inflight is not None and not self._inflight.done():
                self._inflight.cancel()
            if client is not None:
                try:
                    await client.close()
                except Exception:  # noqa: BLE001 - closing a broken connection must not mask the verdict
                    pass

    async def cancel(self) -> None:
        self._cancelled.set()
        task = self._inflight
        if task is not None and not task.done():
            task.cancel()

    async def _stream_turn(self, client: Any, request: dict[str, Any], state: _TurnState,
                           queue: asyncio.Queue[Any]) -> None:
        """Stream one assistant turn into ``state``; Text/ToolUse go to ``queue`` as blocks complete."""
        blocks: dict[int, dict[str, Any]] = {}
        stream = await client.messages.create(stream=True, **request)
        try:
            response = getattr(stream, "response", None)
            if response is not None:
                state.request_id = response.headers.get("request-id")
            async for event in stream:
                kind = event.type
                if kind == "content_block_delta":
                    delta = event.delta
                    block = blocks.get(event.index)
                    if block is None:
                        continue
                    if delta.type == "text_delta":
                        block["parts"].append(delta.text)
                    elif delta.type == "input_json_delta":
                        block["parts"].append(delta.partial_json)
                elif kind == "content_block_start":
                    started = event.content_block
                    if started.type == "text":
                        blocks[event.index] = {"type": "text", "parts": [started.text or ""]}
                    elif started.type == "tool_use":
                        blocks[event.index] = {"type": "tool_use", "id": started.id, "name": started.name,
                                               "parts": []}
                elif kind == "content_block_stop":
                    block = blocks.pop(event.index, None)
                    if block is not None:
                        self._close_block(block, state, queue)
                elif kind == "message_start":
                    state.started = True
                    state.message_id = event.message.id
                    _take_usage(state, event.message.usage)
                elif kind == "message_delta":
                    state.stop_reason = event.delta.stop_reason or state.stop_reason
                    _take_usage(state, event.usage)
        finally:
            try:
                await stream.close()
            except Exception:  # noqa: BLE001 - a broken connection: the error that broke it is the story
                pass

    def _close_block(self, block: dict[str, Any], state: _TurnState, queue: asyncio.Queue[Any]) -> None:
        text = "".join(block["parts"])
        if block["type"] == "text":
            if text:
                state.content.append({"type": "text", "text": text})
                state.texts.append(text)
                queue.put_nowait(Text(text))
            return
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            data, problem = {}, "the tool input is not valid JSON (cut off at max_tokens?); send it again, smaller"
        else:
            problem = None if isinstance(data, dict) else "the tool input must be a JSON object"
            data = data if isinstance(data, dict) else {}
        use = ToolUse(block["id"], block["name"], data)
        if problem:
            state.bad_tool_inputs[use.id] = problem
        state.content.append({"type": "tool_use", "id": use.id, "name": use.name, "input": data})
        state.tool_uses.append(use)
        queue.put_nowait(use)

    # -- verdicts -----------------------------------------------------------------------------------
    def _cost(self, usage: Usage) -> float | None:
        return None if self._price is None else self._price(self.model, usage)

    def _finish(self, total: Usage, turns: int, *, is_error: bool, result: str = "", error: str | None = None,
                state: _TurnState | None = None) -> Finished:
        raw: dict[str, Any] = {"stop_reason": self.stop_reason, "model": self.model, "turns": turns,
                               "cost_usd_computed": self._cost(total)}
        if state is not None:
            raw.update(last_message_id=state.message_id, last_request_id=state.request_id)
        if self.max_budget_usd is not None:
            raw["max_budget_usd"] = self.max_budget_usd
        # The API reports no cost: the orchestrator computes it from the tokens (cost_source computed).
        return Finished(is_error=is_error, complete=True, result=result, error=error, cost_usd=None,
                        usage=total, num_turns=turns, raw=raw)

    def _cancelled_finish(self, total: Usage, turns: int, *, usage_exact: bool = True) -> Finished:
        """``usage_exact``: every API reply was read to its end, so ``total`` is what was billed and
        the cancelled run's cost can be computed."""
        self.stop_reason = "cancelled"
        return Finished(is_error=True, complete=False, error=CANCELLED, usage=total, num_turns=turns,
                        raw={"stop_reason": "cancelled", "model": self.model, "turns": turns},
                        usage_exact=usage_exact)

    def _describe_error(self, exc: BaseException, state: _TurnState, turn: int, base_url: str | None) -> str:
        where = base_url or "https://api.anthropic.com"
        retries = self.settings.max_retries
        after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        status = getattr(exc, "status_code", None)
        detail = _api_error_detail(exc)
        if state.started:
            prefix = f"the API stream broke off in turn {turn}"
            return (f"{prefix}: {detail if status else f'{type(exc).__name__}: {exc}'}; "
                    "what the agent changed in earlier turns is kept")
        if status == 401:
            return f"the Anthropic API rejected the credentials ({detail}); check ANTHROPIC_API_KEY"
        if status == 403:
            return f"the Anthropic API refused access ({detail}); check the key's permissions"
        if status == 429:
            return f"the Anthropic API is rate limiting this key ({detail}){after}; try again later"
        if status == 529:
            return f"the Anthropic API is overloaded ({detail}){after}; try again later"
        if isinstance(status, int) and status >= 500:
            return f"the Anthropic API failed ({detail}){after}"
        if isinstance(status, int):
            return f"the Anthropic API refused the request in turn {turn} ({detail})"
        name = type(exc).__name__
        # By name: the SDK's classes exist only once it is imported, and this must not import it.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "APITimeoutError" in kinds:
            return (f"the Anthropic API at {where} did not answer within {self.settings.request_timeout_s:g} s"
                    f"{after}")
        if "APIConnectionError" in kinds:
            cause = exc.__cause__ or exc.__context__
            return f"could not reach the Anthropic API at {where}{after}: {cause or exc}"
        return f"the anthropic agent failed in turn {turn}: {name}: {exc}"

    # -- prompt and tools ---------------------------------------------------------------------------
    def _system(self, claude_md: str, root: Path) -> list[dict[str, Any]]:
        # Static text first and the CLAUDE.md block carries the cache mark, so the cached prefix
        # (tools + these two blocks) is the same for every run on the same base; the run's own
        # folder comes after the mark.
        blocks = [{"type": "text", "text": SYSTEM_PROMPT}]
        if claude_md:
            blocks.append({"type": "text", "text": claude_md})
        blocks[-1] = {**blocks[-1], "cache_control": {"type": "ephemeral"}}
        blocks.append({"type": "text", "text": f"Primary working directory: {root}\n"
                                               "Use paths relative to it."})
        return blocks

    def _tools(self) -> list[dict[str, Any]]:
        if self._allowed:
            allowed = ", ".join(f"`{' '.join(argv)}`" for argv in self._allowed)
            command_doc = (f"Run a command in the working directory (no shell: no pipes, redirects or `;`). "
                           f"Only commands starting with one of these are allowed: {allowed}. Output and exit "
                           f"code come back; it is stopped after {self.settings.command_timeout_s:g} s.")
        else:
            command_doc = ("Run a command in the working directory. No command is allowed in this repository "
                           f"(the allow-list [{CONFIG_SECTION}] allowed_commands in .promptrail.toml is empty), "
                           "so every call is refused.")
        return [
            _tool("read_file", "Read a UTF-8 text file. Optional `offset` (first line, 1-based) and `limit` "
                               f"(number of lines); at most {MAX_READ_LINES} lines are returned at once.",
                  {"path": _STR, "offset": _INT, "limit": _INT}, ["path"]),
            _tool("write_file", "Create or overwrite a file with `content` (parent folders are created).",
                  {"path": _STR, "content": _STR}, ["path", "content"]),
            _tool("edit_file", "Replace `old_string` by `new_string` in a file. `old_string` must occur exactly "
                               "once (include surrounding lines to make it unique); whitespace counts.",
                  {"path": _STR, "old_string": _STR, "new_string": _STR}, ["path", "old_string", "new_string"]),
            _tool("list_files", "List files (recursively, ignored files excluded) under `path` (default: the "
                                "working directory), optionally filtered by a glob `pattern` such as `*.py`.",
                  {"path": _STR, "pattern": _STR}, []),
            _tool("run_command", command_doc, {"command": _STR}, ["command"]),
        ]

    def _claude_md_text(self) -> str:
        """The CLAUDE.md files of the tree, root first, as one system prompt block ('' if none)."""
        assert self._root is not None
        found = _find_claude_md(self._root)
        parts: list[str] = []
        used = 0
        for rel in found:
            try:
                target = self._confine(rel)
                text = target.read_bytes().decode("utf-8", errors="replace")
            except (_Refused, OSError):
                continue  # a CLAUDE.md symlinked out of the tree must not leak into the prompt
            folder = posixpath.dirname(rel)
            if len(text) > MAX_CLAUDE_MD_FILE or used + len(text) > MAX_CLAUDE_MD_TOTAL:
                self._omitted_claude_md[folder] = rel
                continue
            used += len(text)
            scope = "the whole repository" if not folder else f"files under {folder}/"
            parts.append(f"## {rel} (applies to {scope})\n\n{text.rstrip()}\n")
        if not parts and not self._omitted_claude_md:
            return ""
        header = ("# Project instructions (CLAUDE.md)\n\nFollow these instructions. A nested CLAUDE.md adds to "
                  "the root one for the files under its folder.\n")
        if self._omitted_claude_md:
            header += ("Too long to include here, read them with read_file before changing files under their "
                       "folders: " + ", ".join(sorted(self._omitted_claude_md.values())) + "\n")
        return header + "\n" + "\n".join(parts)

    # -- tools ----------------------------------------------------------------------------------------
    async def _run_tool(self, use: ToolUse, bad_input: str | None) -> tuple[str, bool, str | None]:
        """(content for the model, is_error, a note for the log or None)."""
        if bad_input:
            return bad_input, True, None
        data = use.input
        try:
            if use.name == "run_command":
                return await self._run_command(data)
            handler = _FILE_TOOLS.get(use.name)
            if handler is None:
                return (f"unknown tool '{use.name}'; the tools are read_file, write_file, edit_file, list_files "
                        "and run_command"), True, None
            content = await asyncio.to_thread(handler, self, data)
            return self._with_claude_md_hint(content, data), False, None
        except _Refused as refusal:
            path = _path_arg(data)
            note = f"anthropic agent: refused {use.name} {path!r}: {refusal}"
            return f"refused: {refusal}", True, note
        except _ToolError as error:
            return str(error), True, None

    def _with_claude_md_hint(self, content: str, data: dict[str, Any]) -> str:
        if not self._omitted_claude_md:
            return content
        path = _path_arg(data)
        if not isinstance(path, str):
            return content
        folder = posixpath.dirname(posixpath.normpath(path))
        while True:
            rel = self._omitted_claude_md.pop(folder, None)
            if rel is not None:
                return f"{content}\n\n(Instructions in {rel} apply here; read it with read_file.)"
            if not folder:
                return content
            folder = posixpath.dirname(folder)

    def _confine(self, path: Any, *, allow_root: bool = False) -> Path:
        """Where ``path`` lands in the worktree; ``_Refused`` if outside it or under ``.git``."""
        root, resolved_root = self._root, self._root_resolved
        assert root is not None and resolved_root is not None
        if not isinstance(path, str) or not path.strip():
            raise _ToolError("a non-empty string `path` is required")
        if "\x00" in path:
            raise _Refused("the path contains a NUL byte")
        norm = PurePosixPath(posixpath.normpath(path))
        if norm.is_absolute():
            for base in (root, resolved_root):
                if norm.is_relative_to(base.as_posix()):
                    norm = norm.relative_to(base.as_posix())
                    break
            else:
                raise _Refused("an absolute path outside the working directory")
        if norm.parts[:1] == ("..",):
            raise _Refused("the path escapes the working directory (..)")
        if any(part.lower() == ".git" for part in norm.parts):
            raise _Refused("paths under .git are off limits")
        if norm == PurePosixPath(".") and not allow_root:
            raise _ToolError("the path names the working directory itself, not a file")
        target = root / norm
        real = target.resolve()
        if not real.is_relative_to(resolved_root):
            raise _Refused("a symlink leads outside the working directory")
        if any(part.lower() == ".git" for part in real.relative_to(resolved_root).parts):
            raise _Refused("a symlink leads into .git")
        return target

    def _rel(self, target: Path) -> str:
        assert self._root is not None
        return target.relative_to(self._root).as_posix() or "."

    def _read_file(self, data: dict[str, Any]) -> str:
        target = self._confine(_path_arg(data))
        text = _read_text(target, self._rel(target))
        offset, limit = data.get("offset"), data.get("limit")
        if (offset is not None and not _is_int(offset)) or (limit is not None and not _is_int(limit)):
            raise _ToolError("`offset` and `limit` must be whole numbers")
        lines = text.splitlines(keepends=True)
        if offset is None and limit is None and len(lines) <= MAX_READ_LINES and len(text) <= MAX_READ_CHARS:
            return text or "(the file is empty)"
        start = max(1, offset or 1) - 1
        if start >= len(lines):
            return f"(no line {start + 1}: the file has {len(lines)} lines)"
        end = min(len(lines), start + min(limit or MAX_READ_LINES, MAX_READ_LINES))
        chunk = "".join(lines[start:end])
        cut = len(chunk) > MAX_READ_CHARS
        return (f"{chunk[:MAX_READ_CHARS]}\n(lines {start + 1}-{end} of {len(lines)}"
                f"{f', cut at {MAX_READ_CHARS} characters' if cut else ''}; use offset/limit to read more)")

    def _write_file(self, data: dict[str, Any]) -> str:
        target = self._confine(_path_arg(data))
        content = data.get("content")
        if not isinstance(content, str):
            raise _ToolError("write_file needs `content` (a string)")
        if target.is_dir():
            raise _ToolError(f"{self._rel(target)} is a folder")
        existed = target.exists()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8"))
        except OSError as exc:
            raise _ToolError(f"cannot write {self._rel(target)}: {exc.strerror or exc}") from None
        lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
        return f"{'overwrote' if existed else 'created'} {self._rel(target)} ({lines} lines)"

    def _edit_file(self, data: dict[str, Any]) -> str:
        target = self._confine(_path_arg(data))
        old, new = data.get("old_string"), data.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str):
            raise _ToolError("edit_file needs `old_string` and `new_string` (strings)")
        if not old:
            raise _ToolError("`old_string` is empty; use write_file to create a file")
        if old == new:
            raise _ToolError("`old_string` and `new_string` are the same; nothing to change")
        rel = self._rel(target)
        text = _read_text(target, rel)
        count = text.count(old)
        if count == 0:
            raise _ToolError(f"`old_string` was not found in {rel}; read the file and copy the text exactly")
        if count > 1:
            raise _ToolError(f"`old_string` occurs {count} times in {rel}; include more surrounding text so it "
                             "matches exactly once")
        try:
            target.write_bytes(text.replace(old, new, 1).encode("utf-8"))
        except OSError as exc:
            raise _ToolError(f"cannot write {rel}: {exc.strerror or exc}") from None
        return f"edited {rel}"

    def _list_files(self, data: dict[str, Any]) -> str:
        path = data.get("path")
        target = self._confine("." if path in (None, "") else path, allow_root=True)
        pattern = data.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise _ToolError("`pattern` must be a string")
        if not target.exists():
            raise _ToolError(f"{self._rel(target)} does not exist")
        if not target.is_dir():
            return self._rel(target)
        names = _list_tree(self._root, self._rel(target))  # type: ignore[arg-type]
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)
                     or fnmatch.fnmatchcase(posixpath.basename(n), pattern)]
        if not names:
            return "(no files)"
        shown = names[:MAX_LIST_ENTRIES]
        more = len(names) - len(shown)
        return "\n".join(shown) + (f"\n({more} more; narrow it with path or pattern)" if more else "")

    async def _run_command(self, data: dict[str, Any]) -> tuple[str, bool, str | None]:
        command = data.get("command")
        if not isinstance(command, str) or not command.strip():
            return "run_command needs `command` (a string)", True, None
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            return f"cannot parse the command: {exc}", True, None
        if not any(argv[:len(entry)] == entry for entry in self._allowed):
            reason = ("no command is allowed in this repository" if not self._allowed
                      else "not on the allow-list")
            note = f"anthropic agent: refused run_command {command!r}: {reason}"
            hint = f" ([{CONFIG_SECTION}] allowed_commands in .promptrail.toml)"
            return f"refused: {reason}{hint}", True, note
        env = {**os.environ, **self.env}
        for key in _SECRET_ENV:
            env.pop(key, None)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self._root, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
        except FileNotFoundError:
            return f"command not found: {argv[0]}", True, None
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror or exc}", True, None
        timed_out = False
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), self.settings.command_timeout_s)
        except TimeoutError:
            timed_out = True
            output = b""
        finally:
            if proc.returncode is None:
                await _end_group(proc)
        text = output.decode("utf-8", errors="replace")
        if len(text) > MAX_COMMAND_OUTPUT:
            half = MAX_COMMAND_OUTPUT // 2
            text = f"{text[:half]}\n… ({len(text) - 2 * half} characters left out) …\n{text[-half:]}"
        if timed_out:
            return (f"$ {command}\nstopped after {self.settings.command_timeout_s:g} s "
                    f"([{CONFIG_SECTION}] command_timeout_s)"), True, None
        return f"$ {command}\nexit code {proc.returncode}\n{text}", proc.returncode != 0, None


_FILE_TOOLS: dict[str, Callable[[AnthropicAgent, dict[str, Any]], str]] = {
    "read_file": AnthropicAgent._read_file,
    "write_file": AnthropicAgent._write_file,
    "edit_file": AnthropicAgent._edit_file,
    "list_files": AnthropicAgent._list_files,
}

SYSTEM_PROMPT = """You are a coding agent. You change files in the user's project to do what they ask, \
through the tools you have: read_file, write_file, edit_file, list_files and run_command.

- Paths are relative to the working directory. Nothing outside it can be read or changed, and \
nothing under .git.
- Read a file before you edit it; edit_file needs old_string to match exactly once.
- Make the change the user asked for, no more. When you are done, reply with a short summary of \
what you changed, without calling a tool."""

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "input_schema": {"type": "object", "properties": properties, "required": required}}


class _ToolError(Exception):
    """A tool call that failed (no match, not found...): an error back to the model."""


class _Refused(_ToolError):
    """A tool call refused by the confinement rules: an error back to the model, and logged."""


def _path_arg(data: dict[str, Any]) -> Any:
    return data.get("path", data.get("file_path"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_text(target: Path, rel: str) -> str:
    if target.is_dir():
        raise _ToolError(f"{rel} is a folder; use list_files")
    try:
        return target.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _ToolError(f"{rel} does not exist") from None
    except UnicodeDecodeError:
        raise _ToolError(f"{rel} is not UTF-8 text") from None
    except OSError as exc:
        raise _ToolError(f"cannot read {rel}: {exc.strerror or exc}") from None


def _git_ls(root: Path, pathspec: list[str]) -> list[str] | None:
    try:
        result = subprocess.run(["git", "-c", "core.quotepath=off", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard", "--", *pathspec],
                                cwd=root, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    names = {name for name in result.stdout.decode("utf-8", errors="replace").split("\0") if name}
    return sorted(name for name in names if os.path.lexists(root / name))


def _walk(root: Path, under: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root / under):
        dirs[:] = sorted(d for d in dirs if d.lower() != ".git")
        rel = Path(folder).relative_to(root).as_posix()
        found.extend(f if rel == "." else f"{rel}/{f}" for f in files if f.lower() != ".git")
    return sorted(found)


def _list_tree(root: Path, under: str) -> list[str]:
    names = _git_ls(root, [] if under == "." else [f":(literal){under}"])
    return names if names is not None else _walk(root, under)


def _find_claude_md(root: Path) -> list[str]:
    names = _git_ls(root, [":(glob)**/CLAUDE.md"])
    if names is None:
        names = [n for n in _walk(root, ".") if posixpath.basename(n) == "CLAUDE.md"]
    return sorted(names, key=lambda n: (n.count("/"), n))


def _with_cache_mark(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with a cache mark on its last block: each turn reads the previous turns from
    the cache. Only the sent copy carries it (the API allows four marks per request)."""
    last = messages[-1]
    content = list(last["content"])
    content[-1] = {**content[-1], "cache_control": {"type": "ephemeral"}}
    return [*messages[:-1], {**last, "content": content}]


def _take_usage(state: _TurnState, usage: Any) -> None:
    if usage is None:
        return
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = getattr(usage, key, None)
        if isinstance(value, int):
            state.usage[key] = value  # message_delta's counts are the message's totals so far
    breakdown = getattr(usage, "cache_creation", None)
    one_hour = getattr(breakdown, "ephemeral_1h_input_tokens", None) if breakdown is not None else None
    if isinstance(one_hour, int):
        state.cache_write_1h = one_hour


def _api_error_detail(exc: BaseException) -> str:
    """``401 authentication_error: invalid x-api-key`` from an SDK status error."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        return f"{status} {kind}: {message}" if kind else f"{status}: {message}"
    return f"{status}: {getattr(exc, 'message', None) or exc}" if status else str(exc)


async def _end_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, SIGKILL after a grace period, and reap it."""
    await end_group(proc, _KILL_GRACE_S)