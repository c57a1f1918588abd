"""The JSON-RPC protocol the server speaks: pygls' own, but for what a client must never be left
waiting for, and what must never become a popup.

- A request whose parameters do not fit its method (``textDocument/codeLens {}``,
  ``workspace/executeCommand`` without a command) is answered with an ``InvalidParams`` error.
  pygls only logs such a request, and the client then waits for an answer that never comes.
- Before ``initialize`` a request is answered ``ServerNotInitialized`` (-32002) and a notification
  is dropped; after ``shutdown`` a request is answered ``InvalidRequest`` (-32600) and a
  notification is dropped. Only ``exit`` gets through either way. pygls answers the first with an
  internal error and never answers the second.
- A message that is not JSON (or not UTF-8) is answered with a ``Parse error`` (-32700, id null),
  one that is JSON but no JSON-RPC object with an ``InvalidRequest`` (see ``answer_unparsable``,
  called by the server's error reporter, the only place pygls hands such messages to).
- A notification the server cannot use (parameters that do not fit, ``didChange`` of a document
  never opened) is logged to the client with ``window/logMessage``. pygls shows a popup; but the
  fault is the client's, and no user can act on it.
- ``exit`` records the code the process ends with (``exit_code``: 0 after ``shutdown``, else 1):
  pygls computes it, but its stdio loop swallows the ``SystemExit`` that carries it.
- A request whose ``params`` are left out (JSON-RPC allows it) reaches its handler with None;
  pygls' message classes require the member, and answered such a request with an internal error.
- ``$/cancelRequest`` ids are remembered (``withdrawn``): pygls answers a withdrawn
  ``workspace/executeCommand`` "canceled" but lets the command itself run on, so a command that
  starts something (``promptrail.runPrompt``) asks whether its request was withdrawn.
- ``workspace/executeCommand`` with ``arguments`` a string is answered ``InvalidParams``; pygls
  would pass the command one argument per character.
- ``JsonReady`` params are sent as they are. pygls' converter walks every value of a plain dict;
  for a batch of a few hundred log entries that walk cost more than the rest of a run's stream.
"""

from __future__ import annotations

import collections
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import (JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest,
                              JsonRpcServerNotInitialized)
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

if TYPE_CHECKING:
    from collections.abc import Generator

logger = logging.getLogger(__name__)

#: What ``structure_message`` hands on for a message it already dealt with (answered or dropped).
_HANDLED = object()
#: What ``json.loads`` raises for bytes that are no JSON text: not UTF-8, cut off, nested too deep.
UNPARSABLE = (json.JSONDecodeError, UnicodeDecodeError, RecursionError)
AFTER_SHUTDOWN = "the server has shut down: only exit is accepted now"
BEFORE_INITIALIZE = "the server is not initialized yet: send initialize first"


class JsonReady(dict):
    """Notification params made only of JSON types (str, int, float, bool, None, lists and dicts
    of them): the converter hands them to ``json`` untouched."""


class PromptrailProtocol(LanguageServerProtocol):
    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        converter.register_unstructure_hook(JsonReady, lambda params: params)
        #: The code the process ends with once the client sent ``exit``; None before.
        self.exit_code: int | None = None
        #: Ids of requests the client withdrew with ``$/cancelRequest`` (the newest few hundred).
        self.withdrawn: collections.deque[Any] = collections.deque(maxlen=512)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        self.withdrawn.append(msg_id)
        super()._handle_cancel_notification(msg_id)

    def was_withdrawn(self, msg_id: Any) -> bool:
        return msg_id is not None and msg_id in self.withdrawn

    def structure_message(self, data: dict[str, Any]) -> Any:
        # Only the whole message has "jsonrpc" and "method"; the nested objects that json.loads
        # hands to this hook first carry no "jsonrpc".
        is_message = "jsonrpc" in data and "method" in data
        if is_message and self._refused(data):
            return _HANDLED
        if is_message and "id" in data and "params" not in data:
            data = {**data, "params": None}
        if is_message and "id" in data and data["method"] == types.WORKSPACE_EXECUTE_COMMAND \
                and isinstance(data.get("params"), dict) and isinstance(data["params"].get("arguments"), str):
            # pygls would hand the string over one character per argument ("fix" ran agent 'i').
            self._send_error(data["id"], JsonRpcInvalidParams("arguments must be a list, not a string"))
            return _HANDLED
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if not is_message:
                raise
            if "id" in data:
                self._send_error(data["id"], error)
            else:
                self.log_to_client(f"ignored {data['method']}: {error.message}")
            return _HANDLED

    def _refused(self, data: dict[str, Any]) -> bool:
        """Answer (a request) or drop (a notification) what the server's state does not allow yet
        or any more; True when the message was dealt with so."""
        method = data["method"]
        if method == types.EXIT:
            return False
        if self._shutdown:
            refusal: JsonRpcException = JsonRpcInvalidRequest(AFTER_SHUTDOWN)
        elif self._workspace is None and method != types.INITIALIZE:
            refusal = JsonRpcServerNotInitialized(BEFORE_INITIALIZE)
        else:
            return False
        if "id" in data:
            self._send_error(data["id"], refusal)
        else:
            logger.info("dropped the notification %r: %s", method, refusal.message)
        return True

    def handle_message(self, message: Any) -> None:
        if message is _HANDLED:
            return
        if not hasattr(message, "jsonrpc"):
            # Valid JSON, but no JSON-RPC object: a list, a number, an object without "jsonrpc".
            request_id = message.get("id") if isinstance(message, dict) else None
            self._send_error(request_id if isinstance(request_id, (int, str)) else None,
                             JsonRpcInvalidRequest("not a JSON-RPC 2.0 message"))
            return
        super().handle_message(message)

    def answer_unparsable(self, error: BaseException) -> None:
        """Answer a message ``json.loads`` could not read: its id is unknown, so it is null."""
        self._send_error(None, JsonRpcException(code=-32700, message=f"Parse error: {error}"))

    def log_to_client(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        logger.warning("%s", message)
        self.notify(types.WINDOW_LOG_MESSAGE, types.LogMessageParams(type=kind, message=message))

    def _send_error(self, request_id: Any, error: JsonRpcException) -> None:
        # A plain dict: the converter would leave out a null id, which JSON-RPC requires.
        self._send_data({"jsonrpc": self.VERSION, "id": request_id,
                         "error": self._converter.unstructure(error.to_response_error())})

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        uri = params.text_document.uri
        if unquote(uri) not in self.workspace.text_documents:
            self.log_to_client(f"ignored textDocument/didChange of {uri}: the document is not open")
            return
        yield from super().lsp_text_document__did_change(params)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        self.exit_code = 0 if self._shutdown else 1
        yield from super().lsp_exit(*args)
