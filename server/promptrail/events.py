"""Run-level events the core emits to its faces, and the sink protocol that receives them.

The orchestrator (``promptrail.runs``) never prints and never speaks LSP: it calls
``sink.emit(event)`` for each of these records. The CLI turns them into terminal lines,
the language server into ``promptrail/log``, ``promptrail/runStatus`` and ``$/progress``.
Sinks must be cheap and must not raise: a run never fails because a face did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class RunOpened:
    """A run row exists; the agent is about to start."""

    run_id: str
    prompt: str
    agent: str
    agent_label: str
    model: str | None
    mode: str
    base_sha: str | None
    branch: str | None


class LogEntry(NamedTuple):
    """One line of a run's log. ``seq`` is gap-free per run, starting at 1.

    A NamedTuple, not a frozen dataclass like the other events: a run may make 100,000 of them,
    and a tuple is built in less than half the time (the frozen ``__init__`` sets each field
    through ``object.__setattr__``)."""

    run_id: str
    seq: int
    ts: str
    kind: str  # system | text | tool_use | tool_result | raw | stderr | status | error | git | check
    text: str


@dataclass(frozen=True)
class RunStatus:
    """The run moved to ``status``; the other fields are filled in as they become known."""

    run_id: str
    status: str
    commit: str | None = None
    cost_usd: float | None = None
    tokens: dict[str, int] | None = None
    gate: dict[str, Any] | None = None
    error: str | None = None
    final: bool = False
    #: Known spend today in this repository (local date), for status bars; set on final statuses.
    costs_today: float | None = None
    #: The CLAUDE.md check once done: ``{"total", "error", "warning", "info", "hint", "policy_change"}``.
    violations: dict[str, Any] | None = None


@dataclass(frozen=True)
class CommitLanded:
    """A commit was written for a run (editors refresh their code lenses)."""

    run_id: str
    commit: str
    files: list[str] = field(default_factory=list)


RunEvent = RunOpened | LogEntry | RunStatus | CommitLanded


class EventSink(Protocol):
    def emit(self, event: RunEvent) -> None: ...


class FanOut:
    """Sends each event to several sinks; a sink that raises is dropped from nothing, just skipped."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def emit(self, event: RunEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # noqa: BLE001 - a face must never break a run
                import logging

                logging.getLogger(__name__).exception("event sink %r failed", sink)
