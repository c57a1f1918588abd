"""The edges of an LSP session against the real ``promptrail serve`` over stdio: before ``initialize``,
after ``shutdown``, ``exit``'s code, bytes that are no JSON, and notifications the server cannot use.
Every request is answered with the error LSP names, nothing becomes a popup, and the server goes on."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import LspFolders, execute, wait_until
from tests.e2e.test_lsp_protocol import RawClient
from tests.e2e.test_lsp_server import code_lenses, open_document

pytestmark = pytest.mark.e2e

EXIT_TIMEOUT_S = 15
AFTER_SHUTDOWN = {"code": -32600, "message": "the server has shut down: only exit is accepted now"}
NO_FOLDER = "no workspace folder is open; open a folder that is a git repository"
HISTORY = {"command": "promptrail.history", "arguments": [{}]}


def send_raw(client: RawClient, body: bytes) -> None:
    assert client.process.stdin is not None
    client.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    client.process.stdin.flush()


def initialize(client: RawClient) -> None:
    client.send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
    assert "capabilities" in client.answer_to(1)["result"]
    client.send({"method": "initialized", "params": {}})


def received_until(client: RawClient, request_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every message the server sent before its answer to ``request_id``, and that answer."""
    before = []
    while "method" in (message := client.receive()) or message.get("id") != request_id:
        before.append(message)
    return before, message


def exit_code(client: RawClient) -> int:
    client.send({"method": "exit"})
    return client.process.wait(timeout=EXIT_TIMEOUT_S)


@pytest.fixture
def raw():
    client = RawClient()
    yield client
    client.close()


# -- 1. after shutdown -----------------------------------------------------------------------------------
def test_requests_after_shutdown_are_answered_invalid_request_and_exit_still_works(raw):
    initialize(raw)
    raw.send({"id": 2, "method": "shutdown"})
    assert raw.answer_to(2) == {"jsonrpc": "2.0", "id": 2, "result": None}

    raw.send({"id": 3, "method": "textDocument/codeLens", "params": {"textDocument": {"uri": "file:///x.py"}}})
    raw.send({"id": 4, "method": "workspace/executeCommand", "params": HISTORY})
    raw.send({"id": 5, "method": "shutdown"})
    for request_id in (3, 4, 5):
        assert raw.answer_to(request_id) == {"jsonrpc": "2.0", "id": request_id, "error": AFTER_SHUTDOWN}
    assert exit_code(raw) == 0


# -- 2. bytes that are no JSON ---------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    (b'{"jsonrpc":"2.0","id":7,"method":"promptrail/costs","params":{"by":"\xff"}}',
     "Parse error: 'utf-8' codec can't decode byte 0xff in position 68: invalid start byte"),
    (b'{"jsonrpc":"2.0","id":7,"method":"promptrail/co',
     "Parse error: Unterminated string starting at: line 1 column 34 (char 33)"),
])
def test_a_message_that_cannot_be_parsed_is_answered_parse_error_with_a_null_id(raw, body, message):
    initialize(raw)
    send_raw(raw, body)
    assert raw.receive() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": message}}
    # The server read the next message where it began and answers it.
    raw.send({"id": 8, "method": "workspace/executeCommand", "params": HISTORY})
    assert raw.answer_to(8)["error"]["message"] == NO_FOLDER


# -- 3. before initialize --------------------------------------------------------------------------------
def test_a_request_before_initialize_is_answered_server_not_initialized(raw):
    raw.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///x.py", "languageId": "python", "version": 1, "text": "x = 1\n"}}})  # dropped (LSP)
    raw.send({"id": 7, "method": "workspace/executeCommand", "params": HISTORY})
    assert raw.receive() == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32002, "message": "the server is not initialized yet: send initialize first"}}
    initialize(raw)
    raw.send({"id": 8, "method": "workspace/executeCommand", "params": HISTORY})
    assert raw.answer_to(8)["error"]["message"] == NO_FOLDER


# -- 4. exit's code -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shut_down, code", [(False, 1), (True, 0)])
def test_exit_ends_the_process_with_code_1_unless_shutdown_came_first(raw, shut_down, code):
    initialize(raw)
    if shut_down:
        raw.send({"id": 2, "method": "shutdown"})
        assert raw.answer_to(2)["result"] is None
    assert exit_code(raw) == code


# -- 5. didChange of a document never opened ---------------------------------------------------------------
async def test_did_change_of_a_document_never_opened_is_logged_not_shown(lsp: LanguageClient,
                                                                         lsp_folders: LspFolders):
    never_opened = (lsp_folders.repo / "never_opened.py").as_uri()
    lsp.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=never_opened, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="x = 2\n")]))
    expected = f"ignored textDocument/didChange of {never_opened}: the document is not open"
    await wait_until(lambda: any(m.message == expected for m in lsp.log_messages), 10, "the log message")
    assert [m.type for m in lsp.log_messages if m.message == expected] == [types.MessageType.Warning]

    # Later requests are served, and an opened document is synced as before.
    readme = lsp_folders.repo / "README.md"
    uri = await open_document(lsp, readme)
    assert await code_lenses(lsp, uri) == []
    assert await execute(lsp, "promptrail.history", {}) == []
    assert lsp.messages == [], "no popup"


# -- 6. a malformed notification -------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"event": {"added": None, "removed": []}}])
def test_a_malformed_notification_is_logged_not_shown(raw, params):
    initialize(raw)
    raw.send({"method": "workspace/didChangeWorkspaceFolders", "params": params})
    raw.send({"id": 7, "method": "workspace/executeCommand", "params": HISTORY})
    before, answer = received_until(raw, 7)
    assert before == [{"jsonrpc": "2.0", "method": "window/logMessage", "params": {
        "type": 2, "message": "ignored workspace/didChangeWorkspaceFolders: Invalid Params"}}]
    assert answer["error"]["message"] == NO_FOLDER

