"""The JSON-RPC protocol the server speaks: pygls' own, but for two things.

- A request whose parameters do not fit its method (``textDocument/codeLens {}``,
  ``workspace/executeCommand`` without a command) is answered with an ``InvalidParams`` error.
  pygls only logs such a request, and the client then waits for an answer that never comes.
- ``JsonReady`` params are sent as they are. pygls' converter walks every value of a plain dict;
  for a batch of a few hundred log entries that walk cost more than the rest of a run's stream.
"""

from __future__ import annotations

from typing import Any

from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol

#: What ``structure_message`` hands on for a request it already answered with an error.
_ANSWERED = object()


class JsonReady(dict):
    """Notification params made only of JSON types (str, int, float, bool, None, lists and dicts
    of them): the converter hands them to ``json`` untouched."""


class PromptrailProtocol(LanguageServerProtocol):
    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        converter.register_unstructure_hook(JsonReady, lambda params: params)

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            # Only the whole message has both an id and a method; the nested objects that
            # json.loads hands to this hook first never get here (they carry no "jsonrpc").
            if "id" in data and "method" in data:
                self._send_response(data["id"], error=error.to_response_error())
                return _ANSWERED
            raise

    def handle_message(self, message: Any) -> None:
        if message is not _ANSWERED:
            super().handle_message(message)
