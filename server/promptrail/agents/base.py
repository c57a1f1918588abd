"""The agent interface and the events every agent speaks.

An agent is an async iterator of ``AgentEvent``s: it runs in a working directory, changes files
there, and reports what it does. The orchestrator (``promptrail.runs``) consumes the events; it
never needs to know which agent produced them. Cancellation is ``await agent.cancel()``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator


@dataclass(frozen=True)
class Started:
    """The agent is up. ``session_id``/``model`` as the agent reports them, when it does."""

    session_id: str | None = None
    model: str | None = None
    cwd: str | None = None


@dataclass(frozen=True)
class Text:
    """Assistant prose."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """The agent asked to run a tool (Write, Edit, Bash, ...)."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """What a tool gave back to the agent."""

    tool_use_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Usage:
    """Token counts. For a ``Finished`` event these are the run's totals."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    #: The part of ``cache_write`` written with a 1-hour lifetime (priced higher than 5-minute writes).
    cache_write_1h: int = 0

    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input + other.input, self.output + other.output, self.cache_read + other.cache_read,
                     self.cache_write + other.cache_write, self.cache_write_1h + other.cache_write_1h)


@dataclass(frozen=True)
class Raw:
    """A line the agent printed that is not part of its protocol (kept verbatim, never dropped)."""

    text: str
    stream: str = "stdout"


@dataclass(frozen=True)
class Finished:
    """The agent's final verdict.

    ``is_error`` is the agent's own success flag (for the CLI: the ``result`` event's
    ``is_error``). ``complete`` is False when the agent ended without a final verdict (crash, exit
    without ``result``, watchdog, cancel): the run is then ``incomplete`` or ``cancelled``, and its
    cost unknown unless ``usage_exact`` says the agent counted every token itself anyway.
    ``cost_usd`` is None when unknown, never 0 for unknown.
    """

    is_error: bool
    complete: bool = True
    result: str = ""
    error: str | None = None
    cost_usd: float | None = None
    usage: Usage | None = None
    num_turns: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: ``usage`` is every token the agent spent although it did not complete (the anthropic agent
    #: counts each API reply itself), so the run's cost can be computed; a complete verdict's is.
    usage_exact: bool = False
    #: ``usage`` split by model when the agent reports that (Claude Code's ``modelUsage``, which
    #: lists a helper model's calls too): each part is priced at its own model's prices.
    usage_by_model: dict[str, Usage] = field(default_factory=dict)


AgentEvent = Started | Text | ToolUse | ToolResult | Usage | Raw | Finished


class Agent(abc.ABC):
    """One agent invocation. Create it, iterate ``events()`` once, optionally ``cancel()``.

    Contract: ``events()`` yields exactly one ``Finished`` as its last event, on every path
    (success, error, crash, cancel), so the orchestrator always learns how the agent ended.
    """

    name: str = "agent"
    #: The process group of the agent's process once it runs (None for in-process agents): recorded
    #: with the run, so that if promptrail dies the group can be ended on the next start.
    process_group: int | None = None
    #: Shown wherever the run is shown ("replayed session" for the replay agent).
    label: str = ""

    @abc.abstractmethod
    def events(self, prompt: str, cwd: Path) -> AsyncIterator[AgentEvent]:
        """Run the agent on ``prompt`` in ``cwd`` and yield its events."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop the agent (and everything it started). Idempotent."""
