"""The Claude Code CLI as an agent: one ``claude -p ... --output-format stream-json`` process per run.

This module owns the life of that process: spawning it in its own process group (a long prompt
goes on its stdin), reading stdout (stream-json, mapped by ``stream_json``) and stderr concurrently,
the silence watchdog, ending a process that lingers after its ``result``, cancellation (SIGTERM to
the group, SIGKILL after a grace period), and reaping it on every path, also when the consumer
stops iterating early.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import signal
from pathlib import Path
from typing import AsyncIterator

from promptrail.agents.base import Agent, AgentEvent, Finished, Raw, ToolUse
from promptrail.agents.stream_json import (
    CANCELLED,
    StreamJsonParser,
    decode_line,
    read_lines,
)
from promptrail.processes import end_group, exited

_STDOUT = "stdout"
_STDERR = "stderr"
_Line = tuple[str, bytes | None]  # (stream, line); None marks the end of that stream
_WAKE: _Line = ("wake", None)
"""Queued by ``cancel()`` so a reader loop blocked on a silent process notices at once."""


class ClaudeCliAgent(Agent):
    """Runs the real ``claude`` binary (npm ``@anthropic-ai/claude-code``) in a working directory.

    ``env`` is laid over ``os.environ``, or used alone with ``inherit_env=False`` (a sealed
    environment, e.g. for tests that must not pick up the developer's credentials).
    """

    name = "claude-cli"
    label = "Claude Code CLI"

    def __init__(
        self,
        claude_path: str = "claude",
        model: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        silence_timeout: float = 600.0,
        linger_timeout: float = 5.0,
        kill_grace: float = 3.0,
        inherit_env: bool = True,
    ) -> None:
        self.claude_path = claude_path
        self.model = model
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.inherit_env = inherit_env
        self.silence_timeout = silence_timeout
        self.linger_timeout = linger_timeout
        self.kill_grace = kill_grace
        self._proc: asyncio.subprocess.Process | None = None
        self._inbox: asyncio.Queue[_Line] | None = None
        self._cancel_requested = False
        self._stopping: asyncio.Future[None] | None = None

    def command(self, prompt: str) -> list[str]:
        """The argv for ``prompt`` (without it when it goes on stdin: ``prompt_on_stdin``)."""
        argv = [self.claude_path, "-p", "--output-format", "stream-json", "--verbose",
                "--permission-mode", "acceptEdits"]
        if self.model:
            argv += ["--model", self.model]
        argv += self.extra_args
        if prompt_on_stdin(prompt):
            return argv  # `claude -p` without a prompt argument reads it from stdin
        # The prompt is the CLI's positional argument (-p is only a flag). Behind "--", a prompt
        # starting with "-" is not taken for an option ("unknown option"), and a variadic option in
        # extra_args (--allowedTools Bash Edit) cannot swallow it.
        return [*argv, "--", prompt]

    async def events(self, prompt: str, cwd: Path) -> AsyncIterator[AgentEvent]:
        if self._cancel_requested:
            yield Finished(is_error=True, complete=False, error=CANCELLED)
            return
        if not Path(cwd).is_dir():
            yield Finished(is_error=True, complete=False, error=f"working directory not found: {cwd}")
            return
        on_stdin = prompt_on_stdin(prompt)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(prompt),
                cwd=cwd,
                stdin=asyncio.subprocess.PIPE if on_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **self.env} if self.inherit_env else self.env,
                start_new_session=True,  # its own process group, so cancel reaches its children too
            )
            self.process_group = proc.pid
        except OSError as exc:
            yield Finished(is_error=True, complete=False, error=self._spawn_error(exc))
            return

        # Unbounded on purpose: both pipes are always drained (a child blocked on a full stderr
        # pipe would stall stdout too), and cancel() must be able to wake the loop without waiting.
        inbox: asyncio.Queue[_Line] = asyncio.Queue()
        self._proc, self._inbox = proc, inbox
        pumps = [
            asyncio.create_task(_pump(proc.stdout, _STDOUT, inbox)),
            asyncio.create_task(_pump(proc.stderr, _STDERR, inbox)),
        ]
        if on_stdin:
            pumps.append(asyncio.create_task(_feed(proc.stdin, prompt)))
        parser = StreamJsonParser()
        loop = asyncio.get_running_loop()
        last_output_at = loop.time()
        result_at: float | None = None
        open_streams = 2
        last_stderr = ""
        watchdog_error: str | None = None
        written: set[Path] = set()  # files the agent's tools touched (for the temp-file sweep)
        try:
            while open_streams and not self._cancel_requested:
                if result_at is not None:
                    deadline = result_at + self.linger_timeout
                else:
                    deadline = last_output_at + self.silence_timeout
                try:
                    item = await asyncio.wait_for(inbox.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    if result_at is None:
                        watchdog_error = (
                            f"claude printed nothing for {self.silence_timeout:g} s"
                            " and was stopped by the silence watchdog"
                        )
                    break  # after a result: the process lingers; the finally ends it
                if item is _WAKE:
                    continue
                source, line = item
                if line is None:
                    open_streams -= 1
                    continue
                last_output_at = loop.time()
                if source == _STDERR:
                    text = decode_line(line)
                    if text.strip():
                        last_stderr = text
                        yield Raw(text, stream=_STDERR)
                    continue
                for event in parser.feed_line(line):
                    if isinstance(event, ToolUse) and isinstance(event.input.get("file_path"), str):
                        written.add(Path(cwd, event.input["file_path"]))
                    yield event
                if result_at is None and parser.result is not None:
                    result_at = loop.time()
            if not open_streams and not self._cancel_requested:
                # Both pipes closed: the process is on its way out; give it the linger time to exit.
                await exited(proc, self.linger_timeout)
        finally:
            for pump in pumps:
                pump.cancel()
            await self._stop(proc)

        for leftover in _unfinished_writes(written):
            yield Raw(f"removed {leftover.name}: a temporary file the CLI left by a write it did not finish",
                      stream=_STDERR)
        if self._cancel_requested:
            yield parser.finish_cancelled()
        else:
            yield parser.finish(watchdog_error or _exit_error(proc.returncode, last_stderr))

    async def cancel(self) -> None:
        self._cancel_requested = True
        if self._inbox is not None:
            self._inbox.put_nowait(_WAKE)
        if self._proc is not None:
            await self._stop(self._proc)

    def _spawn_error(self, exc: OSError) -> str:
        if isinstance(exc, FileNotFoundError):
            return (
                f"claude CLI not found at '{self.claude_path}'; install it with "
                "`npm install -g @anthropic-ai/claude-code` or set --claude-path"
            )
        if isinstance(exc, PermissionError):
            return f"claude CLI at '{self.claude_path}' is not executable: {exc.strerror}"
        return f"could not start the claude CLI at '{self.claude_path}': {exc}"

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """End the process group and reap the process; shared by every caller, safe to repeat."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._end_group(proc))
        # Shielded: a caller being cancelled must not leave the process half-killed and unreaped.
        await asyncio.shield(self._stopping)

    async def _end_group(self, proc: asyncio.subprocess.Process) -> None:
        await end_group(proc, self.kill_grace)


#: Longer prompts (in UTF-8 bytes) go to the CLI on stdin: Linux refuses one argument of 128 KiB
#: or more (MAX_ARG_STRLEN, "Argument list too long"), and all arguments and the environment
#: together share ARG_MAX. Shorter ones stay an argument, as a user would type them.
PROMPT_ARGUMENT_MAX = 32 * 1024


def prompt_on_stdin(prompt: str) -> bool:
    """Whether ``prompt`` is longer than ``PROMPT_ARGUMENT_MAX`` bytes in UTF-8."""
    # Characters first: a UTF-8 character is at most 4 bytes, so most prompts need no encoding.
    return len(prompt) * 4 > PROMPT_ARGUMENT_MAX and len(prompt.encode("utf-8")) > PROMPT_ARGUMENT_MAX


async def _feed(stdin: asyncio.StreamWriter | None, prompt: str) -> None:
    """Write the prompt to the CLI's stdin and close it, concurrently with reading its output (a
    CLI that prints before it has read everything must not block on a full pipe)."""
    if stdin is None:
        return
    try:
        stdin.write(prompt.encode("utf-8"))
        await stdin.drain()
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the CLI ended before reading it all: its exit and stderr say why


async def _pump(stream: asyncio.StreamReader | None, source: str, inbox: asyncio.Queue[_Line]) -> None:
    try:
        if stream is not None:
            async for line in read_lines(stream):
                inbox.put_nowait((source, line))
    finally:
        inbox.put_nowait((source, None))


def _exit_error(returncode: int | None, last_stderr: str) -> str:
    if returncode is not None and returncode < 0:
        try:
            how = f"claude was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"claude was killed by signal {-returncode}"
    else:
        how = f"claude exited with code {returncode}"
    message = f"{how} without a result"
    return f"{message}; last stderr: {last_stderr}" if last_stderr else message


_TEMP_WRITE = re.compile(r"\.tmp\.\d+\.[0-9a-f]+$")


def _unfinished_writes(paths: set[Path]) -> list[Path]:
    """Remove the temporary files of the CLI's atomic writes (``name.tmp.<pid>.<hex>`` beside the
    target) that a stopped process left behind, so they are never committed as the agent's work."""
    removed = []
    for path in paths:
        try:
            siblings = list(path.parent.glob(f"{glob.escape(path.name)}.tmp.*"))
        except OSError:
            continue
        for candidate in siblings:
            if _TEMP_WRITE.search(candidate.name) and candidate.is_file():
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed
