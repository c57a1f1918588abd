"""`promptrail serve --tcp` and `--ws`: the same server over a socket and a WebSocket, answering
`initialize` with its capabilities; a malformed address is one clear error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"processId": None, "rootUri": None, "capabilities": {}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "promptrail", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def connect_when_ready(port: int, timeout: float = 20.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_tcp(tmp_path):
    port = free_port()
    server = start("--tcp", f"127.0.0.1:{port}")
    try:
        with connect_when_ready(port) as sock:
            body = json.dumps(INITIALIZE).encode()
            sock.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                    data.split(b"Content-Length: ")[1].split(b"\r\n")[0]):
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection"
                data += chunk
        reply = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert reply["id"] == 1
        capabilities = reply["result"]["capabilities"]
        assert capabilities["codeLensProvider"] == {"resolveProvider": True}
        assert "promptrail.runPrompt" in capabilities["executeCommandProvider"]["commands"]
    finally:
        server.kill()
        server.wait()


def test_websocket(tmp_path):
    from websockets.sync.client import connect

    port = free_port()
    server = start("--ws", f"127.0.0.1:{port}")
    try:
        connect_when_ready(port).close()
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(json.dumps(INITIALIZE))
            reply = json.loads(ws.recv(timeout=20))
        assert reply["id"] == 1 and "codeLensProvider" in reply["result"]["capabilities"]
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("args, message", [
    (["--tcp", "localhost"], "'localhost' is not HOST:PORT (for example 127.0.0.1:2087)"),
    (["--ws", ":80"], "':80' is not HOST:PORT (for example 127.0.0.1:2087)"),
    (["--tcp", "a:1", "--ws", "b:2"], "choose one of --tcp and --ws"),
    (["--tcp", "127.0.0.1:99999"], "port 99999 is out of range (0-65535)"),
])
def test_bad_addresses(args, message):
    result = subprocess.run([sys.executable, "-m", "promptrail", "serve", *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"promptrail: error: {message}\n"


def test_address_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "promptrail", "serve", "--tcp", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"promptrail: starting the language server (tcp) on 127.0.0.1:{port}"
    assert lines[1].startswith(f"promptrail: error: cannot listen on 127.0.0.1:{port}: ")
    assert lines[1].endswith("address already in use") and len(lines) == 2
