"""``workspace/executeCommand`` handlers: the editor's verbs, each one call into the core.

Arguments arrive as a list whose first item is an object (``[{"runId": "ab12"}]``); a client that
sends positional values (``["ab12"]``) is understood too. Which repository: ``workspaceFolder`` or a
document ``uri`` when given, else the active document's, else the first folder (``folders``).

A ``PromptrailError`` (the user can fix it) becomes a JSON-RPC error response carrying its one-line
message, and a ``window/showMessage`` error so it is seen even by clients that drop failed
command results. Anything else is a bug: pygls answers with an internal error, the server lives on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from promptrail.errors import PromptrailError
from promptrail.lsp.stream import RunStream, client_supports_lens_refresh

if TYPE_CHECKING:
    from promptrail.lsp.folders import Repository
    from promptrail.lsp.server import PromptrailServer

logger = logging.getLogger(__name__)

RUN_PROMPT = "promptrail.runPrompt"
CANCEL_RUN = "promptrail.cancelRun"
SHOW_RUN = "promptrail.showRun"
HISTORY = "promptrail.history"
FEED = "promptrail.feed"
LOG = "promptrail.log"
GATE_SIMULATE = "promptrail.gate.simulate"
GATE_APPROVE = "promptrail.gate.approve"
GATE_REJECT = "promptrail.gate.reject"
GATE_MERGE = "promptrail.gate.merge"
ROLLBACK = "promptrail.rollback"


class CommandFailed(JsonRpcException):
    """The LSP ``RequestFailed`` error: the request was understood, and failed for a stated reason."""

    CODE = -32803


def options(args: tuple[Any, ...], positional: tuple[str, ...]) -> dict[str, Any]:
    """The command's options: the first argument if it is an object, else positional values."""
    if args and isinstance(args[0], dict):
        return args[0]
    if len(args) > len(positional):
        raise PromptrailError(f"expected at most {len(positional)} arguments ({', '.join(positional)}), "
                              f"got {len(args)}")
    return dict(zip(positional, args))


def _text(opts: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = opts.get(name)
    if value is None or value == "":
        if required:
            raise PromptrailError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise PromptrailError(f"{name} must be a string, not {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\udc80": a lone surrogate no file, store or git can hold
        raise PromptrailError(f"{name} is not valid Unicode text (a lone surrogate at character {exc.start + 1})") \
            from None
    return value


def _number(opts: dict[str, Any], name: str, default: float, kind: type = int) -> Any:
    value = opts.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PromptrailError(f"{name} must be a non-negative number, not {value!r}")
    return kind(value)


Handler = Callable[..., Awaitable[Any]]


COSTS_REQUEST = "promptrail/costs"


def _plain(value: Any) -> Any:
    """pygls hands the params of custom requests over as namedtuples; make them plain values."""
    if hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def register(server: PromptrailServer) -> None:
    # Queries answer errors quietly (views refresh them in the background); actions a person
    # took also show the error, so it is seen even by clients that drop failed command results.
    server.feature(COSTS_REQUEST)(_answering_errors(costs, show=False))
    for name, handler in ((SHOW_RUN, show_run), (LOG, run_log), (HISTORY, history), (FEED, feed)):
        server.command(name)(_answering_errors(handler, show=False))
    for name, handler in ((RUN_PROMPT, run_prompt), (CANCEL_RUN, cancel_run), (GATE_SIMULATE, gate_simulate),
                          (GATE_APPROVE, gate_approve), (GATE_REJECT, gate_reject), (GATE_MERGE, gate_merge),
                          (ROLLBACK, rollback)):
        server.command(name)(_answering_errors(handler, show=True))


def _answering_errors(handler: Handler, *, show: bool) -> Handler:
    # `ls` stays unannotated: pygls resolves a command's type hints when it is called, and the
    # server class is only imported here for type checking.
    async def answer(ls, *args: Any) -> Any:
        try:
            return await handler(ls, *args)
        except PromptrailError as exc:
            if show:
                ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                               message=f"promptrail: {exc}"))
            # `data.shown` tells the client whether the user already saw it (no second popup).
            raise CommandFailed(str(exc), data={"shown": show}) from None

    answer.__doc__ = handler.__doc__
    return answer


# -- running ----------------------------------------------------------------------------------------
async def run_prompt(ls: PromptrailServer, *args: Any) -> dict[str, str]:
    """``{prompt, agent?, model?, mode?, transcript?, claudePath?, replayDelay?, workspaceFolder?, uri?}``
    → ``{runId}`` as soon as the run row exists; the run goes on in the background."""
    from promptrail.runs import RunRequest, start_run

    opts = options(args, ("prompt", "agent", "model", "mode"))
    prompt = _text(opts, "prompt", required=True)
    transcript = _text(opts, "transcript")
    request = RunRequest(
        prompt=prompt, agent=_text(opts, "agent"),
        model=_text(opts, "model"), mode=_text(opts, "mode"), transcript=transcript,
        claude_path=_text(opts, "claudePath"), replay_delay=_number(opts, "replayDelay", 0.0, float))
    request_id = ls.protocol.msg_id
    repository = await ls.folders.for_command(opts)
    stream = RunStream(ls)
    try:
        run = await start_run(repository.workspace, request, stream)
    except BaseException as exc:
        stream.abort(str(exc))
        raise
    stream.cancel = run.cancel
    ls.active_runs[run.id] = run
    ls.run_homes[run.id] = repository
    assert run.task is not None
    run.task.add_done_callback(functools.partial(_run_ended, ls, run.id, stream))
    if ls.protocol.was_withdrawn(request_id):
        # Withdrawn while it started: the client was told "canceled" and never learns this run's
        # id, so the run stops now (recorded as cancelled) instead of going on unseen.
        await run.cancel()
    return {"runId": run.id}


def _run_ended(ls: PromptrailServer, run_id: str, stream: RunStream, task: asyncio.Task[Any]) -> None:
    ls.active_runs.pop(run_id, None)
    if task.cancelled():
        stream.abort("the run was stopped before it finished (the server is shutting down)")
    elif task.exception() is not None:
        exc = task.exception()
        logger.error("run %s crashed", stream.run_id, exc_info=exc)
        stream.abort(f"promptrail error: {exc}")


async def cancel_run(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId}`` → ``{runId, status}``: ``cancelling`` for a run this server is running, else the
    run's recorded status (cancelling a finished run is no error: it may just have finished)."""
    opts = options(args, ("runId",))
    ref = _text(opts, "runId", required=True)
    assert ref is not None
    running = [run for run_id, run in ls.active_runs.items() if run_id.startswith(ref)]
    if len(running) == 1:
        run = running[0]
        await run.cancel()
        return {"runId": run.id, "status": "cancelling"}
    repository, run_id = await _find_run(ls, opts, ref)
    row = await asyncio.to_thread(repository.workspace.store.get_run, run_id)
    assert row is not None
    from promptrail.runs import FINAL_STATES

    if row["status"] not in FINAL_STATES:
        raise PromptrailError(f"run {run_id} is {row['status']} in another promptrail process; "
                              "cancel it there")
    return {"runId": run_id, "status": row["status"]}


# -- asking -----------------------------------------------------------------------------------------
async def show_run(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId}`` → the run, exactly as ``promptrail show --json`` prints it."""
    from promptrail import queries

    opts = options(args, ("runId",))
    ref = _text(opts, "runId", required=True)
    assert ref is not None
    repository, run_id = await _find_run(ls, opts, ref)
    return await asyncio.to_thread(queries.run_json, repository.workspace, run_id)


async def run_log(ls: PromptrailServer, *args: Any) -> list[dict[str, Any]]:
    """``{runId}`` → every log entry of the run (``promptrail log RUN --json``)."""
    from promptrail import queries

    opts = options(args, ("runId",))
    repository, run_id = await _find_run(ls, opts, _text(opts, "runId", required=True) or "")
    return await asyncio.to_thread(queries.run_log, repository.workspace, run_id)


async def history(ls: PromptrailServer, *args: Any) -> list[dict[str, Any]]:
    """``{search?, limit?}`` → runs, newest first (``promptrail history --json``)."""
    from promptrail import queries

    opts = options(args, ("search", "limit"))
    repository = await ls.folders.for_command(opts)
    return await asyncio.to_thread(queries.history, repository.workspace, search=_text(opts, "search"),
                                   limit=_number(opts, "limit", 50))


async def feed(ls: PromptrailServer, *args: Any) -> list[dict[str, Any]]:
    """``{limit?}`` → the activity feed, newest first (``promptrail feed --json``)."""
    from promptrail import queries

    opts = options(args, ("limit",))
    repository = await ls.folders.for_command(opts)
    return await asyncio.to_thread(queries.feed, repository.workspace, limit=_number(opts, "limit", 100))


async def costs(ls: PromptrailServer, params: Any = None) -> dict[str, Any]:
    """The ``promptrail/costs`` request: ``{by?: user|model|day|agent, since?: YYYY-MM-DD,
    workspaceFolder?}`` → the same report as ``promptrail costs --json``."""
    from promptrail.costs import spend_report

    opts = _plain(params) if params is not None else {}
    opts = opts if isinstance(opts, dict) else {}
    repository = await ls.folders.for_command(opts)
    return await asyncio.to_thread(spend_report, repository.workspace.store, by=_text(opts, "by") or "day",
                                   since=_text(opts, "since"))


# -- gates ------------------------------------------------------------------------------------------
def _gate_changed(ls: PromptrailServer, row: dict[str, Any], gate: dict[str, Any], stream: RunStream | None = None,
                  ) -> None:
    """Tell the client the gate moved: a final runStatus (which also ends a simulation's progress)
    and a lens refresh, since lens titles show the gate."""
    from promptrail.events import RunStatus

    status = RunStatus(row["id"], row["status"], commit=row.get("commit_sha"), cost_usd=row.get("cost_usd"),
                       gate=gate, final=True)
    if stream is not None:
        stream.emit(status)
    else:
        from promptrail.lsp.stream import STATUS_NOTIFICATION, status_params

        ls.protocol.notify(STATUS_NOTIFICATION, status_params(status))
    if client_supports_lens_refresh(ls):
        ls.workspace_code_lens_refresh(None)


def _gate_dict(state: Any) -> dict[str, Any]:
    return {"status": state.label, "state": state.status, "canMerge": state.can_merge,
            "blockers": state.merge_blockers, "sha": state.sha, "target": state.target}


async def gate_simulate(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId}`` → the gate after running the policy's checks on the run's commit; the checks'
    output streams as ``promptrail/log`` with progress, like a run."""
    from promptrail import gates
    from promptrail.events import RunOpened

    opts = options(args, ("runId",))
    repository, run_id = await _find_run(ls, opts, _text(opts, "runId", required=True) or "")
    workspace = repository.workspace
    row = await asyncio.to_thread(workspace.store.get_run, run_id)
    assert row is not None
    stream = RunStream(ls)
    stream.emit(RunOpened(run_id, f"checks for {row.get('summary') or row['prompt']}", "gate", "simulate",
                          None, "checks", row.get("base_sha"), row.get("branch")))
    try:
        state = await gates.simulate(workspace, run_id, stream)
    except BaseException as exc:
        stream.abort(str(exc))
        raise
    _gate_changed(ls, row, _gate_dict(state), stream)
    return _gate_dict(state)


async def _sign(ls: PromptrailServer, decision: str, args: tuple[Any, ...]) -> dict[str, Any]:
    from promptrail import gates

    opts = options(args, ("runId", "comment"))
    repository, run_id = await _find_run(ls, opts, _text(opts, "runId", required=True) or "")
    state = await asyncio.to_thread(gates.sign_off, repository.workspace, run_id, decision,
                                    comment=_text(opts, "comment"), reviewed_sha=_text(opts, "sha"))
    row = await asyncio.to_thread(repository.workspace.store.get_run, run_id)
    _gate_changed(ls, row, _gate_dict(state))
    return _gate_dict(state)


async def gate_approve(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId, comment?, sha?}`` → the gate after approving the run's current commit."""
    return await _sign(ls, "approve", args)


async def gate_reject(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId, comment?, sha?}`` → the gate after rejecting the run's current commit."""
    return await _sign(ls, "reject", args)


async def gate_merge(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId}`` → the gate after merging the approved, green run into its target."""
    from promptrail import gates

    opts = options(args, ("runId",))
    repository, run_id = await _find_run(ls, opts, _text(opts, "runId", required=True) or "")
    state = await asyncio.to_thread(gates.merge, repository.workspace, run_id)
    row = await asyncio.to_thread(repository.workspace.store.get_run, run_id)
    _gate_changed(ls, row, _gate_dict(state))
    return _gate_dict(state)


async def rollback(ls: PromptrailServer, *args: Any) -> dict[str, Any]:
    """``{runId}`` → the rollback run (``show`` JSON) that reverted the run on its target."""
    from promptrail import gates

    opts = options(args, ("runId",))
    repository, run_id = await _find_run(ls, opts, _text(opts, "runId", required=True) or "")
    result = await asyncio.to_thread(gates.rollback, repository.workspace, run_id)
    row = await asyncio.to_thread(repository.workspace.store.get_run, run_id)
    _gate_changed(ls, row, {"status": "rolled back", "state": "rolled_back", "canMerge": False})
    return result


async def _find_run(ls: PromptrailServer, opts: dict[str, Any], ref: str) -> tuple[Repository, str]:
    """The repository holding run ``ref`` and its full id. A lens or a client may name a run
    without its folder; then the runs started here, the default folder, and every other folder
    are asked in turn, and the default folder's error is the one reported."""
    if ref in ls.run_homes:
        return ls.run_homes[ref], ref
    named = bool(opts.get("workspaceFolder") or opts.get("uri"))
    first: Repository | None = None
    try:  # the default folder may itself be no repository: the others are still asked
        first = await ls.folders.for_command(opts)
        return first, await asyncio.to_thread(first.workspace.store.resolve_run_id, ref)
    except PromptrailError as exc:
        if named:
            raise
        error = exc
    for other in await ls.folders.others(first):  # first None: no folder to skip
        try:
            return other, await asyncio.to_thread(other.workspace.store.resolve_run_id, ref)
        except PromptrailError:
            continue
    raise error
