"""The language server: its state (the folders' repositories, the runs it started), the wiring of
LSP methods to ``commands``, ``lenses``, ``diagnostics`` and ``folders``, and ``serve``
(``promptrail serve``).

``initialize`` does nothing of promptrail's own: repositories are opened on the first request that
needs them, and the git and SQLite modules are imported then too, so start-up costs what a bare
pygls server costs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from promptrail import __version__
from promptrail.errors import PromptrailError
from promptrail.lsp import commands, lenses
from promptrail.lsp.diagnostics import Diagnostics
from promptrail.lsp.folders import Folders, uri_to_path

if TYPE_CHECKING:
    from promptrail.lsp.folders import Repository
    from promptrail.runs import Run

#: How long `shutdown` waits for cancelled runs to record their end before the server exits.
SHUTDOWN_GRACE_S = 5.0


class PromptrailServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("promptrail", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.folders = Folders(self)
        #: Runs started from this editor that have not ended yet (cancelRun, shutdown).
        self.active_runs: dict[str, Run] = {}
        #: Every run started here → its repository, so showRun needs no folder for them.
        self.run_homes: dict[str, Repository] = {}
        #: CLAUDE.md rule diagnostics of the open documents.
        self.diagnostics = Diagnostics(self)


def create_server() -> PromptrailServer:
    server = PromptrailServer()
    commands.register(server)
    lenses.register(server)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: PromptrailServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.folders.active_uri = params.text_document.uri
        ls.diagnostics.opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: PromptrailServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.folders.active_uri = params.text_document.uri
        ls.diagnostics.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: PromptrailServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.diagnostics.saved(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: PromptrailServer, params: types.DidCloseTextDocumentParams) -> None:
        if ls.folders.active_uri == params.text_document.uri:
            ls.folders.active_uri = None
        ls.diagnostics.closed(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def folders_changed(ls: PromptrailServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        ls.folders.folders_changed(
            [p for p in (uri_to_path(f.uri) for f in params.event.added) if p],
            [p for p in (uri_to_path(f.uri) for f in params.event.removed) if p])

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: PromptrailServer, params: None) -> None:
        # An editor closing must not leave an agent editing files with nobody recording it:
        # cancel what runs, and give the runs a moment to write their `cancelled` status.
        runs = list(ls.active_runs.values())
        for run in runs:
            await run.cancel()
        tasks = [run.task for run in runs if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)

    return server


def serve(transport: str, host: str | None, port: int | None) -> None:
    """Run the language server until the client exits (``stdio``) or forever (``tcp``, ``ws``)."""
    # stderr only: on stdio, stdout is the LSP channel and one stray byte breaks the client.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="promptrail-lsp %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_without_user_errors)
    # While a run streams, the event loop thread is busy; every git/SQLite call in a worker thread
    # (and pygls' stdin reader) waits for the GIL at each I/O step, 5 ms apiece by default. A lens
    # request makes dozens of such steps: at 0.5 ms it is answered in tens of ms instead of ~1 s.
    sys.setswitchinterval(0.0005)
    server = create_server()
    if transport == "stdio":
        # A buffered writer: with PYTHONUNBUFFERED=1, sys.stdout.buffer is a raw FileIO whose short
        # writes pygls does not retry, which cut large log notifications off mid-message.
        server.start_io(sys.stdin.buffer, open(sys.stdout.fileno(), "wb", closefd=False))
    elif transport in ("tcp", "ws"):
        if host is None or port is None:
            raise PromptrailError(f"--{transport} needs HOST:PORT")
        if not 0 <= port <= 65535:
            raise PromptrailError(f"port {port} is out of range (0-65535)")
        sys.stderr.write(f"promptrail: starting the language server ({transport}) on {host}:{port}\n")
        sys.stderr.flush()
        try:
            (server.start_tcp if transport == "tcp" else server.start_ws)(host, port)
        except OSError as exc:  # address in use, unknown host, not an address of this machine
            raise PromptrailError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    else:
        raise PromptrailError(f"unknown transport '{transport}'; use stdio, tcp or ws")


def _without_user_errors(record: logging.LogRecord) -> bool:
    # pygls logs every failed request with a traceback; a user's mistake answered with its one-line
    # message (``CommandFailed``) is not a server fault and must not look like one in the log.
    return not (record.exc_info and isinstance(record.exc_info[1], commands.CommandFailed))
