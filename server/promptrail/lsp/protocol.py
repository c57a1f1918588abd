"""The JSON-RPC protocol the server speaks: pygls' own, except that a request whose parameters do
not fit its method (``textDocument/codeLens {}``, ``workspace/executeCommand`` without a command)
is answered with an ``InvalidParams`` error. pygls only logs such a request, and the client then
waits for an answer that never comes.
"""

from __future__ import annotations

from typing import Any

from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol

#: What ``structure_message`` hands on for a request it already answered with an error.
_ANSWERED = object()


class PromptrailProtocol(LanguageServerProtocol):
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
