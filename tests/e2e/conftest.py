"""Fixtures for the language-server end-to-end tests: the real ``promptrail serve`` over stdio,
driven by a pytest-lsp client that records promptrail's notifications, in real git repositories.

The server inherits the test's environment, which ``tests/conftest.py`` already isolates (empty
HOME, no system git config, no identity variables), so each repository here carries its own
identity in its local config — or deliberately none.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import make_repo

SERVER_COMMAND = [sys.executable, "-m", "promptrail", "serve"]
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "claude-2.1.197-sample.jsonl"

CAPABILITIES = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True, show_message=None),
    workspace=types.WorkspaceClientCapabilities(
        workspace_folders=True, code_lens=types.CodeLensWorkspaceClientCapabilities(refresh_support=True)),
    text_document=types.TextDocumentClientCapabilities(code_lens=types.CodeLensClientCapabilities()),
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
)


def plain(value: Any) -> Any:
    """pygls hands custom notifications over as namedtuples; tests compare plain JSON values."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


@dataclass
class Recorder:
    """Everything promptrail-specific the server sent, in arrival order."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lens_refreshes: int = 0
    #: Every ``textDocument/publishDiagnostics`` in arrival order (``client.diagnostics`` keeps
    #: only the latest per document).
    published: list[types.PublishDiagnosticsParams] = field(default_factory=list)

    def attach(self, client: LanguageClient) -> None:
        @client.feature("promptrail/log")
        def on_log(params: Any) -> None:
            self.events.append(("log", plain(params)))

        @client.feature("promptrail/runStatus")
        def on_status(params: Any) -> None:
            self.events.append(("status", plain(params)))

        @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
        def on_refresh(params: Any) -> None:
            self.lens_refreshes += 1

        # pytest-lsp registers its own handler (filling ``client.diagnostics``) and a method takes
        # one handler: record, then hand over to it.
        features = client.protocol.fm.features
        keep_latest = features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

        def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.published.append(params)
            keep_latest(params)

        features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = on_diagnostics

    def diagnostics_of(self, uri: str) -> list[types.PublishDiagnosticsParams]:
        return [p for p in self.published if p.uri == uri]

    def batches(self, run_id: str) -> list[dict[str, Any]]:
        return [p for kind, p in self.events if kind == "log" and p["runId"] == run_id]

    def entries(self, run_id: str) -> list[dict[str, Any]]:
        return [entry for batch in self.batches(run_id) for entry in batch["entries"]]

    def statuses(self, run_id: str) -> list[dict[str, Any]]:
        return [p for kind, p in self.events if kind == "status" and p["runId"] == run_id]

    def final(self, run_id: str) -> dict[str, Any] | None:
        return next((s for s in self.statuses(run_id) if s["final"]), None)

    async def wait_final(self, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
        await wait_until(lambda: self.final(run_id) is not None, timeout, f"final runStatus of {run_id}")
        final = self.final(run_id)
        assert final is not None
        return final


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class LspFolders:
    """The workspace folders every session opens: a repository with an identity, one without,
    and a folder that is not a repository."""

    repo: Path
    anonymous: Path
    plain: Path

    def uri(self, path: Path) -> str:
        uri = from_fs_path(str(path))
        assert uri is not None
        return uri

    def workspace_folders(self) -> list[types.WorkspaceFolder]:
        return [types.WorkspaceFolder(uri=self.uri(p), name=p.name) for p in (self.repo, self.anonymous, self.plain)]


@pytest.fixture
def lsp_folders(tmp_path: Path) -> LspFolders:
    repo = make_repo(tmp_path / "project", {"README.md": "# project\n"})
    anonymous = make_repo(tmp_path / "anonymous", identity=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("just notes\n")
    return LspFolders(repo, anonymous, plain)


async def open_session(client: LanguageClient, folders: LspFolders) -> Recorder:
    recorder = Recorder()
    recorder.attach(client)
    client.recorder = recorder  # type: ignore[attr-defined]
    await client.initialize_session(types.InitializeParams(
        capabilities=CAPABILITIES, workspace_folders=folders.workspace_folders(), root_uri=folders.uri(folders.repo)))
    return recorder


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND))
async def lsp(lsp_client: LanguageClient, lsp_folders: LspFolders):
    await open_session(lsp_client, lsp_folders)
    yield
    await lsp_client.shutdown_session()


async def execute(client: LanguageClient, command: str, *arguments: Any) -> Any:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(arguments)))
    return plain(result)


def cli_json(repo: Path, *args: str) -> Any:
    """The CLI's answer to the same question, to compare the server's with."""
    result = subprocess.run([sys.executable, "-m", "promptrail", *args, "--json", "--repo", str(repo)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
