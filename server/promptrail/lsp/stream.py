"""One run's core events, as the editor sees them.

``RunStream`` is the ``EventSink`` the language server hands to ``runs.start_run``. It turns

- ``LogEntry``     → ``promptrail/log {runId, entries: [{seq, ts, kind, text}]}``, batched: sent when
                     ``FLUSH_S`` passed since the first unsent entry or ``MAX_BATCH`` entries wait,
                     and always before any ``promptrail/runStatus`` (so the log is complete when
                     the final status arrives);
- ``RunStatus``    → ``promptrail/runStatus {runId, status, final, commit?, costUsd?, tokens?, gate?,
                     error?}`` plus one ``window/logMessage`` line for generic clients;
- the whole run    → ``$/progress`` begin … report … end on a server-created token, when the client
                     supports ``window.workDoneProgress`` (ended on every path);
- ``CommitLanded`` → ``workspace/codeLens/refresh`` (if the client supports it) once the run is final.

``emit`` runs on the event loop and stays cheap: it appends, and at most writes one notification.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from lsprotocol import types

from promptrail.events import CommitLanded, LogEntry, RunEvent, RunOpened, RunStatus
from promptrail.lsp.protocol import JsonReady

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

logger = logging.getLogger(__name__)

LOG_NOTIFICATION = "promptrail/log"
STATUS_NOTIFICATION = "promptrail/runStatus"

#: Kinds of log entries worth showing as the progress message (the agent's voice and actions).
_PROGRESS_KINDS = ("text", "tool_use", "status", "git", "error")


def client_supports_progress(ls: LanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.work_done_progress)


def client_supports_lens_refresh(ls: LanguageServer) -> bool:
    workspace = ls.client_capabilities.workspace
    return bool(workspace and workspace.code_lens and workspace.code_lens.refresh_support)


def status_params(event: RunStatus) -> dict[str, Any]:
    params: dict[str, Any] = {"runId": event.run_id, "status": event.status, "final": event.final}
    optional = {"commit": event.commit, "costUsd": event.cost_usd, "tokens": event.tokens,
                "gate": event.gate, "error": event.error, "violations": event.violations,
                "costsToday": event.costs_today}
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


def _one_line(text: str, width: int = 80) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


class RunProgress:
    """``$/progress`` for one run. Creating the token is a request to the client, so begin waits
    for its answer while the run goes on; an ``end`` that comes first is sent right after begin."""

    CREATE_TIMEOUT_S = 10.0

    def __init__(self, ls: LanguageServer, token: str, on_cancel: Callable[[], None] | None) -> None:
        """``on_cancel`` None: nothing can stop the work, so the client shows no cancel button."""
        self.ls, self.token, self.on_cancel = ls, token, on_cancel
        self.state = "idle"  # idle → creating → begun → ended (or off: the client said no)
        self._end_message: str | None = None
        self._last_report: str | None = None

    def begin(self, title: str, message: str) -> None:
        if self.state == "idle":
            self.state = "creating"
            asyncio.ensure_future(self._create_and_begin(title, message))

    async def _create_and_begin(self, title: str, message: str) -> None:
        progress = self.ls.work_done_progress
        try:
            await asyncio.wait_for(progress.create_async(self.token), self.CREATE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - no progress UI is not an error for the run
            logger.warning("client refused progress token %s: %s", self.token, exc)
            self.state = "off"
            return
        self.state = "begun"
        cancellable = self.on_cancel is not None
        progress.begin(self.token, types.WorkDoneProgressBegin(title=title, message=message, cancellable=cancellable))
        # pygls cancels this future when the user presses cancel on the progress notification.
        registered = progress.tokens.get(self.token)
        if registered is not None and self.on_cancel is not None:
            loop = asyncio.get_running_loop()
            registered.add_done_callback(
                lambda future: future.cancelled() and loop.call_soon_threadsafe(self.on_cancel))
        if self._end_message is not None:
            self._send_end(self._end_message)

    def report(self, message: str) -> None:
        if self.state == "begun" and message != self._last_report:
            self._last_report = message
            self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(message=message))

    def end(self, message: str) -> None:
        if self.state == "begun":
            self._send_end(message)
        elif self.state == "creating":
            self._end_message = message
        elif self.state == "idle":
            self.state = "ended"

    def _send_end(self, message: str) -> None:
        self.state = "ended"
        self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(self.token, None)


class RunStream:
    """The event sink of one run started from the editor (see the module docstring)."""

    FLUSH_S = 0.05
    MAX_BATCH = 300

    def __init__(self, ls: LanguageServer, cancel: Callable[[], Awaitable[None]] | None = None) -> None:
        self.ls = ls
        self.run_id: str | None = None
        #: Set by the command once the run exists; the progress UI's cancel button calls it.
        self.cancel = cancel
        self.progress: RunProgress | None = None
        self.final_sent = False
        self._commit_landed = False
        self._pending: list[dict[str, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        #: A gate simulation's stream (``RunOpened`` mode ``checks``): the run itself has ended.
        self.checks_only = False

    # -- EventSink --------------------------------------------------------------------------------
    def emit(self, event: RunEvent) -> None:
        if isinstance(event, LogEntry):
            self._pending.append({"seq": event.seq, "ts": event.ts, "kind": event.kind, "text": event.text})
            if len(self._pending) >= self.MAX_BATCH:
                self.flush()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)
        elif isinstance(event, RunStatus):
            self._on_status(event)
        elif isinstance(event, CommitLanded):
            self._commit_landed = True
        elif isinstance(event, RunOpened):
            self._on_opened(event)

    def _on_opened(self, event: RunOpened) -> None:
        self.run_id = event.run_id
        self.checks_only = event.mode == "checks"
        agent = f"{event.agent} ({event.agent_label})" if event.agent_label else event.agent
        self._log_line(types.MessageType.Info, f"run {event.run_id} started · {agent} · {event.mode} mode · "
                                               f"{_one_line(event.prompt, 60)}")
        if client_supports_progress(self.ls):
            # Unique per stream: a run's gate simulation later reports progress for the same run id.
            token = f"promptrail-{event.mode if event.mode == 'checks' else 'run'}-{event.run_id}-{id(self):x}"
            # A gate simulation's checks run to their end (each has its own timeout): no cancel button.
            self.progress = RunProgress(self.ls, token,
                                        None if self.checks_only else self._cancel_from_progress)
            self.progress.begin(f"promptrail · {_one_line(event.prompt, 40)}", f"run {event.run_id} starting")

    def _on_status(self, event: RunStatus) -> None:
        self.flush()
        self.ls.protocol.notify(STATUS_NOTIFICATION, status_params(event))
        if not event.final:
            if self.progress:
                self.progress.report(event.status)
            self._log_line(types.MessageType.Info, f"run {event.run_id}: {event.status}")
            return
        self.final_sent = True
        summary = f"run {event.run_id}: {event.status}"
        if event.commit:
            summary += f" · commit {event.commit[:12]}"
        if event.cost_usd is not None:
            summary += f" · ${event.cost_usd:.4f}"
        if event.error:
            summary += f" · {event.error}"
        failed = event.status not in ("succeeded", "no_changes")
        self._log_line(types.MessageType.Warning if failed else types.MessageType.Info, summary)
        if self.progress:
            self.progress.end(summary)
        # Refreshed once the run is final, not the moment the commit lands: the lens title shows
        # the final status and gate, which are written after the commit.
        if self._commit_landed and client_supports_lens_refresh(self.ls):
            future = self.ls.workspace_code_lens_refresh(None)
            future.add_done_callback(_ignore_failure)

    # -- batching ---------------------------------------------------------------------------------
    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or self.run_id is None:
            return
        entries, self._pending = self._pending, []
        self.ls.protocol.notify(LOG_NOTIFICATION, JsonReady(runId=self.run_id, entries=entries))
        if self.progress:
            for entry in reversed(entries):
                if entry["kind"] in _PROGRESS_KINDS and entry["text"].strip():
                    self.progress.report(_one_line(entry["text"]))
                    break

    # -- endings the core did not report ------------------------------------------------------------
    def abort(self, error: str) -> None:
        """The run ended without a final status (start failed half-way, or its task died): say so,
        and end the progress, so no client waits forever."""
        if self.final_sent or self.run_id is None:
            return
        if self.checks_only:  # a simulation that failed says so; the run's own status is unchanged
            self.final_sent = True
            self.flush()
            self._log_line(types.MessageType.Warning, f"run {self.run_id}: gate simulation failed · {error}")
            if self.progress:
                self.progress.end(f"gate simulation failed: {error}")
            return
        self.emit(RunStatus(self.run_id, "failed", error=error, final=True))

    def _cancel_from_progress(self) -> None:
        if self.cancel is not None and not self.final_sent:
            asyncio.ensure_future(self.cancel())

    def _log_line(self, kind: types.MessageType, message: str) -> None:
        self.ls.window_log_message(types.LogMessageParams(type=kind, message=f"promptrail: {message}"))


def _ignore_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.info("workspace/codeLens/refresh failed: %s", future.exception())
