"""The language server: its state (the folders' repositories, the runs it started), the wiring of
LSP methods to ``commands``, ``lenses``, ``diagnostics`` and ``folders``, and ``serve``
(``promptrail serve``).

``initialize`` does nothing of promptrail's own: repositories are opened on the first request that
needs them, and the git and SQLite modules are imported then too, so start-up costs what a bare
pygls server costs. On ``initialized``, a client that supports it is asked to watch the files whose
change on disk matters (``WATCHED_FILES``: the rules and the configuration).

Document sync is pygls' own, but for one thing: didSave asks for the saved text, and when it differs
from the text the server holds (a client that failed to send a change), the saved text replaces it.

What the client sends that cannot be used (bytes that are no JSON, a malformed notification) is
answered or logged to the client by ``PromptrailProtocol``, never shown as an error popup; ``exit``
without ``shutdown`` ends the process with code 1.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from promptrail import __version__
from promptrail.config import REPO_CONFIG_NAME
from promptrail.errors import PromptrailError
from promptrail.lsp import commands, lenses
from promptrail.lsp.diagnostics import Diagnostics, is_claude_md
from promptrail.lsp.folders import Folders, uri_to_path
from promptrail.lsp.protocol import UNPARSABLE, PromptrailProtocol

if TYPE_CHECKING:
    from pygls.server import ServerErrors

    from promptrail.lsp.folders import Repository
    from promptrail.runs import Run

logger = logging.getLogger(__name__)

#: How long `shutdown` waits for cancelled runs to record their end before the server exits.
SHUTDOWN_GRACE_S = 5.0
#: Changed on disk (checkout, pull, another program), these re-check diagnostics or reload the configuration.
WATCHED_FILES = ("**/CLAUDE.md", f"**/{REPO_CONFIG_NAME}")
WATCHED_FILES_REGISTRATION = "promptrail-watched-files"


class PromptrailServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("promptrail", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=PromptrailProtocol)
        self.folders = Folders(self)
        #: Runs started from this editor that have not ended yet (cancelRun, shutdown).
        self.active_runs: dict[str, Run] = {}
        #: Every run started here → its repository, so showRun needs no folder for them.
        self.run_homes: dict[str, Repository] = {}
        #: CLAUDE.md rule diagnostics of the open documents.
        self.diagnostics = Diagnostics(self)

    protocol: PromptrailProtocol

    def report_server_error(self, error: Exception, source: ServerErrors) -> None:
        # ``JsonRpcException`` is the source pygls' read loop names: the client sent something the
        # loop could not read or hand on. That is no fault of the server's, and no user can act on a
        # popup about it: answer what can be answered, log the rest to the client.
        if source is not JsonRpcException:
            super().report_server_error(error, source)
        elif isinstance(error, UNPARSABLE):
            self.protocol.answer_unparsable(error)
        else:
            self.protocol.log_to_client(f"ignored a message from the client: {error}")


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

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=True))
    def did_save(ls: PromptrailServer, params: types.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        document = ls.workspace.text_documents.get(unquote(uri))
        if document is not None and params.text is not None and params.text != document.source:
            ls.workspace.update_text_document(types.VersionedTextDocumentIdentifier(uri=uri, version=document.version),
                                              types.TextDocumentContentChangeWholeDocument(text=params.text))
        ls.diagnostics.saved(uri)

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

    @server.feature(types.INITIALIZED)
    async def initialized(ls: PromptrailServer, params: types.InitializedParams) -> None:
        await _watch_files(ls)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched_files_changed(ls: PromptrailServer, params: types.DidChangeWatchedFilesParams) -> None:
        uris = [change.uri for change in params.changes]
        ls.diagnostics.rules_changed([uri for uri in uris if is_claude_md(uri)])
        for uri in uris:
            path = uri_to_path(uri)
            if path is not None and path.name == REPO_CONFIG_NAME:
                ls.folders.config_changed(uri)

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


async def _watch_files(ls: PromptrailServer) -> None:
    """Ask the client to send ``workspace/didChangeWatchedFiles`` for ``WATCHED_FILES``, if it can."""
    workspace = ls.client_capabilities.workspace
    watching = workspace.did_change_watched_files if workspace else None
    if not (watching and watching.dynamic_registration):
        return  # diagnostics then catch up with the files on disk at each document's next check
    watchers = [types.FileSystemWatcher(glob_pattern=pattern) for pattern in WATCHED_FILES]
    try:
        await ls.client_register_capability_async(types.RegistrationParams(registrations=[types.Registration(
            id=WATCHED_FILES_REGISTRATION, method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers))]))
    except Exception as exc:  # noqa: BLE001 - a client that says no only loses the on-disk updates
        logger.warning("the client did not watch %s: %s", ", ".join(WATCHED_FILES), exc)


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
        if server.protocol.exit_code:
            sys.exit(server.protocol.exit_code)  # `exit` without `shutdown` (LSP: code 1)
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
