"""Sessions with clients that say they support something other than conftest's ``CAPABILITIES``,
for tests of what the server does (or must not do) depending on what the client supports.

``session`` starts its own ``promptrail serve``, records promptrail's notifications like the ``lsp``
fixture does, and also keeps the ``client/registerCapability`` requests the server sends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import attrs
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.e2e.conftest import CAPABILITIES, SERVER_COMMAND, LspFolders, Recorder

SHUTDOWN_TIMEOUT_S = 15.0


def capabilities(*, window: dict[str, Any] | None = None, workspace: dict[str, Any] | None = None,
                 general: dict[str, Any] | None = None) -> types.ClientCapabilities:
    """``CAPABILITIES`` with some of its ``window``/``workspace``/``general`` fields changed."""
    return attrs.evolve(CAPABILITIES, window=attrs.evolve(CAPABILITIES.window, **(window or {})),
                        workspace=attrs.evolve(CAPABILITIES.workspace, **(workspace or {})),
                        general=attrs.evolve(CAPABILITIES.general, **(general or {})))


#: A client that lets the server register file watchers (``workspace/didChangeWatchedFiles``).
WATCHING_FILES = capabilities(workspace={
    "did_change_watched_files": types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True)})


def registrations(client: LanguageClient) -> list[types.Registration]:
    """The ``client/registerCapability`` registrations the server sent so far."""
    return client.registrations  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def session(folders: LspFolders, client_capabilities: types.ClientCapabilities
                  ) -> AsyncIterator[tuple[LanguageClient, types.InitializeResult]]:
    client = await ClientServerConfig(server_command=SERVER_COMMAND).start()
    try:
        recorder = Recorder()
        recorder.attach(client)
        client.recorder = recorder  # type: ignore[attr-defined]
        registrations: list[types.Registration] = []
        client.registrations = registrations  # type: ignore[attr-defined]

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def on_register(params: types.RegistrationParams) -> None:
            registrations.extend(params.registrations)

        result = await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities, workspace_folders=folders.workspace_folders(),
            root_uri=folders.uri(folders.repo)))
        yield client, result
    finally:
        # Also when the test failed: `stop` only waits for the server to exit, it does not end it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), SHUTDOWN_TIMEOUT_S)
        await client.stop()
