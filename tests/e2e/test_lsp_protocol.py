"""Requests a typed client would never send, written as raw JSON-RPC to the real server over stdio:
each one is answered with an error (never left waiting), and the server goes on serving."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ANSWER_TIMEOUT_S = 15


class RawClient:
    def __init__(self) -> None:
        # Unbuffered, so select() sees every byte the server wrote (none waits in a Python buffer).
        self.process = subprocess.Popen([sys.executable, "-m", "promptrail", "serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        # A hang guard: a request the server never answers fails the test instead of blocking it.
        if not select.select([self.process.stdout], [], [], ANSWER_TIMEOUT_S)[0]:
            raise AssertionError(f"no message from the server within {ANSWER_TIMEOUT_S} s")
        length = 0
        while (line := self.process.stdout.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        assert length, "the server closed its output"
        body = b""
        while len(body) < length:
            chunk = self.process.stdout.read(length - len(body))
            assert chunk, "the server closed its output"
            body += chunk
        return json.loads(body)

    def answer_to(self, request_id: int) -> dict[str, Any]:
        """The response to ``request_id``, skipping notifications and the server's own requests."""
        while True:
            message = self.receive()
            if message.get("id") == request_id and "method" not in message:
                return message

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def client():
    client = RawClient()
    client.send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None,
                                                              "capabilities": {}}})
    assert "capabilities" in client.answer_to(1)["result"]
    client.send({"method": "initialized", "params": {}})
    yield client
    client.close()


@pytest.mark.parametrize("method, params", [
    ("textDocument/codeLens", {}),
    ("codeLens/resolve", {"range": {}}),
    ("workspace/executeCommand", {}),
])
def test_a_request_whose_params_do_not_fit_is_answered_with_invalid_params(client, method, params):
    client.send({"id": 7, "method": method, "params": params})
    answer = client.answer_to(7)
    assert answer["error"]["code"] == -32602 and "result" not in answer
    # The server is still there for the next request.
    client.send({"id": 8, "method": "workspace/executeCommand", "params": {"command": "promptrail.history",
                                                                           "arguments": [{}]}})
    assert client.answer_to(8)["error"]["message"] == "no workspace folder is open; open a folder that is a git " \
        "repository"


def test_a_uri_no_file_system_can_name_gets_no_lenses(client, tmp_path):
    uri = f"file://{tmp_path}/%00x.py"
    client.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})
    client.send({"id": 9, "method": "textDocument/codeLens", "params": {"textDocument": {"uri": uri}}})
    assert client.answer_to(9) == {"jsonrpc": "2.0", "id": 9, "result": []}
