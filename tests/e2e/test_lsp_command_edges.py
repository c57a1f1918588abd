"""Commands of the real server under awkward use: two gate simulations of one run at once, a
simulation that cannot start, a runPrompt the client withdraws with ``$/cancelRequest``, a run
named from a session whose default folder is no repository, and lens data or text a client forged.
Over stdio with pytest-lsp, in real repositories."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import git
from tests.e2e.conftest import (CAPABILITIES, SERVER_COMMAND, LspFolders, Recorder, cli_json, execute, plain,
                                wait_until)
from tests.e2e.test_lsp_protocol import RawClient
from tests.e2e.test_lsp_server import recorder, run_prompt
from tests.support.transcripts import Say, Write, write_transcript

pytestmark = pytest.mark.e2e


async def test_two_simulations_of_one_run_at_once_one_is_refused(lsp: LanguageClient, lsp_folders: LspFolders):
    repo = lsp_folders.repo
    (repo / ".promptrail.toml").write_text('[gate]\n[[gate.check]]\nname = "slow"\nrun = "sleep 1; echo done"\n')
    git(repo, "add", ".promptrail.toml")
    git(repo, "commit", "-qm", "policy")
    run_id = await run_prompt(lsp, lsp_folders)
    assert (await recorder(lsp).wait_final(run_id))["status"] == "succeeded"

    both = await asyncio.gather(*(execute(lsp, "promptrail.gate.simulate", {"runId": run_id}) for _ in range(2)),
                                return_exceptions=True)
    refused = [outcome for outcome in both if isinstance(outcome, JsonRpcException)]
    assert len(refused) == 1 and sum(isinstance(outcome, dict) for outcome in both) == 1
    assert str(refused[0]).endswith(f"a gate simulation of run {run_id} is already running; wait for it to end")
    # The run's log goes on gap-free through the one simulation; the run's own status is untouched.
    seqs = [entry["seq"] for entry in recorder(lsp).entries(run_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert cli_json(repo, "log", run_id)[-1]["text"].startswith("check 'slow' passed (exit 0, ")
    assert {status["status"] for status in recorder(lsp).statuses(run_id)} == {"running", "committing", "succeeded"}
    # A simulation cannot be stopped half-way, so its progress offers no cancel button; the run's does.
    begins = {token: values[0] for token, values in lsp.progress_reports.items()
              if values and isinstance(values[0], types.WorkDoneProgressBegin) and run_id in str(token)}
    assert {(str(token).split("-")[1], begin.cancellable) for token, begin in begins.items()} == {
        ("checks", False), ("run", True)}


async def test_a_simulation_that_cannot_start_leaves_the_runs_status_alone(lsp: LanguageClient,
                                                                           lsp_folders: LspFolders, tmp_path):
    transcript = write_transcript(tmp_path / "idle.jsonl", [Say("nothing to change")])
    run_id = await run_prompt(lsp, lsp_folders, transcript=str(transcript))
    assert (await recorder(lsp).wait_final(run_id))["status"] == "no_changes"
    with pytest.raises(JsonRpcException, match=f"run {run_id} has no commit"):
        await execute(lsp, "promptrail.gate.simulate", {"runId": run_id})
    await asyncio.sleep(0.2)  # anything sent after the answer has arrived by now
    assert [(s["status"], s["final"]) for s in recorder(lsp).statuses(run_id)] == [
        ("running", False), ("committing", False), ("no_changes", True)]


@pytest.fixture
def raw(lsp_folders: LspFolders):
    """A new server, initialized over raw JSON-RPC with the repository as its one folder."""
    client = RawClient()
    uri = lsp_folders.uri(lsp_folders.repo)
    client.send({"id": 1, "method": "initialize", "params": {
        "processId": None, "rootUri": uri, "capabilities": {}, "workspaceFolders": [{"uri": uri, "name": "project"}]}})
    client.answer_to(1)
    client.send({"method": "initialized", "params": {}})
    yield client
    client.close()


def test_a_withdrawn_run_prompt_leaves_no_run_working(raw: RawClient, lsp_folders: LspFolders, tmp_path):
    """runPrompt and its $/cancelRequest right after it, as the first request of a new server: the
    cancel reaches the server while the run is being started, and the request is answered
    "canceled", so the client never learns a run id. Such a run must not go on unseen: it is
    cancelled at once, and recorded so."""
    repo = lsp_folders.repo
    transcript = write_transcript(tmp_path / "slow.jsonl", [Say(f"step {n}") for n in range(20)] + [
        Write("late.py", "1\n")])
    raw.send({"id": 2, "method": "workspace/executeCommand", "params": {
        "command": "promptrail.runPrompt", "arguments": [{"prompt": "withdrawn", "agent": "replay",
                                                          "transcript": str(transcript), "replayDelay": 0.3}]}})
    raw.send({"method": "$/cancelRequest", "params": {"id": 2}})
    answer = raw.answer_to(2)
    assert answer["error"]["code"] == -32800, answer

    def settled() -> bool:
        return all(run["status"] not in ("queued", "running", "committing") for run in cli_json(repo, "history"))

    deadline = time.monotonic() + 20
    while not settled():
        assert time.monotonic() < deadline, "the withdrawn run did not end"
        time.sleep(0.1)
    (run,) = cli_json(repo, "history")
    assert (run["status"], run["commit_sha"]) == ("cancelled", None)
    assert not (repo / "late.py").exists()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND))
async def plain_first(lsp_client: LanguageClient, lsp_folders: LspFolders):
    """A session whose default folder (the first, and the root) is not a repository."""
    events = Recorder()
    events.attach(lsp_client)
    lsp_client.recorder = events  # type: ignore[attr-defined]
    folders = [types.WorkspaceFolder(uri=lsp_folders.uri(path), name=path.name)
               for path in (lsp_folders.plain, lsp_folders.repo)]
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=CAPABILITIES, workspace_folders=folders, root_uri=lsp_folders.uri(lsp_folders.plain)))
    yield
    await lsp_client.shutdown_session()


async def test_a_run_is_found_in_another_folder_when_the_default_one_is_no_repository(
        plain_first: LanguageClient, lsp_folders: LspFolders, tmp_path):
    lsp_client = plain_first
    repo = lsp_folders.repo
    transcript = write_transcript(tmp_path / "t.jsonl", [Write("found.py", "1\n")])
    ran = subprocess.run([sys.executable, "-m", "promptrail", "run", "made from the terminal", "--transcript",
                          str(transcript), "--json", "--repo", str(repo)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    (run,) = cli_json(repo, "history")
    shown = await execute(lsp_client, "promptrail.showRun", {"runId": run["id"][:8]})
    assert (shown["id"], shown["prompt"]) == (run["id"], "made from the terminal")
    assert (await execute(lsp_client, "promptrail.cancelRun", {"runId": run["id"]}))["status"] == "succeeded"
    with pytest.raises(JsonRpcException, match=f"{lsp_folders.plain} is not inside a git repository"):
        await execute(lsp_client, "promptrail.showRun", {"runId": "fedcba987654"})  # nowhere: the default's error


async def test_forged_lens_data_and_text_are_answered_not_crashed_on(lsp: LanguageClient, lsp_folders: LspFolders):
    start = types.Position(line=0, character=0)
    for data in ({"runId": "abc", "uri": 7}, {"runId": ["a"], "uri": lsp_folders.uri(lsp_folders.repo)}, "x"):
        lens = types.CodeLens(range=types.Range(start=start, end=start), data=data)
        resolved = await lsp.code_lens_resolve_async(lens)
        assert resolved.command is None  # left unresolved: nothing this server wrote
    with pytest.raises(JsonRpcException, match=r"search is not valid Unicode text \(a lone surrogate at character 2\)"):
        await execute(lsp, "promptrail.history", {"search": "a\udc80"})


def test_a_request_without_params_reaches_its_handler(raw: RawClient):
    """JSON-RPC lets a request leave ``params`` out; promptrail/costs takes only optional ones."""
    raw.send({"id": 2, "method": "promptrail/costs"})
    answer = raw.answer_to(2)
    assert answer["result"]["groups"] == [] and answer["result"]["by"] == "day", answer


def test_command_arguments_that_are_a_string_are_refused(raw: RawClient, lsp_folders: LspFolders):
    raw.send({"id": 2, "method": "workspace/executeCommand",
              "params": {"command": "promptrail.runPrompt", "arguments": "fix"}})
    answer = raw.answer_to(2)
    assert answer["error"] == {"code": -32602, "message": "arguments must be a list, not a string"}
    assert cli_json(lsp_folders.repo, "history") == []  # no run with prompt 'f' and agent 'i'
