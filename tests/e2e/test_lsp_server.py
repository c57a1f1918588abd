"""``promptrail serve`` end to end over stdio: commands, the live log, progress, run status (with the
run's CLAUDE.md violations) and code lenses, what a client that lacks a capability does not get, and a
``.promptrail.toml`` changed on disk, against real git repositories and the real audit store (see
tests/e2e/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from promptrail.gitops.repo import NO_IDENTITY
from tests.conftest import git
from tests.e2e.clients import WATCHING_FILES, capabilities, session
from tests.e2e.conftest import (SAMPLE, SERVER_COMMAND, LspFolders, Recorder, cli_json, execute, open_session,
                               wait_until)
from tests.support.transcripts import Write, write_transcript

pytestmark = pytest.mark.e2e


def recorder(client: LanguageClient) -> Recorder:
    return client.recorder  # type: ignore[attr-defined]


async def run_prompt(client: LanguageClient, folders: LspFolders, prompt: str = "add a greet function",
                     **extra: Any) -> str:
    arguments = {"prompt": prompt, "agent": "replay", "transcript": str(SAMPLE),
                 "workspaceFolder": folders.uri(folders.repo), **extra}
    result = await execute(client, "promptrail.runPrompt", arguments)
    assert set(result) == {"runId"}
    return result["runId"]


def progress_of(client: LanguageClient, run_id: str) -> list[Any]:
    """The ``$/progress`` values sent for the run (its token is the one whose begin names it)."""
    for values in client.progress_reports.values():
        if values and isinstance(values[0], types.WorkDoneProgressBegin) and run_id in (values[0].message or ""):
            return values
    return []


async def open_document(client: LanguageClient, path: Path, text: str | None = None) -> str:
    uri = Path(path).as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=path.read_text() if text is None else text)))
    return uri


async def code_lenses(client: LanguageClient, uri: str) -> list[types.CodeLens]:
    result = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    return list(result or [])


# -- 1. a run from the editor -------------------------------------------------------------------------
async def test_run_prompt_streams_log_progress_status_and_lenses(lsp: LanguageClient, lsp_folders: LspFolders):
    events = recorder(lsp)
    run_id = await run_prompt(lsp, lsp_folders, replayDelay=0.02)
    assert events.final(run_id) is None, "runPrompt must answer before the run ends"

    final = await events.wait_final(run_id)
    assert final["status"] == "succeeded"
    assert final["commit"] == git(lsp_folders.repo, "rev-parse", f"promptrail/{run_id}").strip()
    assert final["costUsd"] == pytest.approx(0.0325)
    assert final["gate"] == {"status": "pending"}

    # The log: gap-free, in order, complete before the final status, identical to the store's.
    entries = events.entries(run_id)
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
    assert entries == cli_json(lsp_folders.repo, "log", run_id)
    mine = [(kind, params) for kind, params in events.events if params["runId"] == run_id]
    assert mine[-1] == ("status", final), "the final status comes last, after every log entry"
    assert [s["status"] for s in events.statuses(run_id)] == ["running", "committing", "succeeded"]

    # Progress: begin … end on a token the server created, ended with the outcome.
    await wait_until(lambda: isinstance((progress_of(lsp, run_id) or [None])[-1], types.WorkDoneProgressEnd),
                     5, "the end of the run's progress")
    progress = progress_of(lsp, run_id)
    assert isinstance(progress[0], types.WorkDoneProgressBegin)
    assert all(isinstance(value, types.WorkDoneProgressReport) for value in progress[1:-1])
    assert "succeeded" in (progress[-1].message or "")
    await wait_until(lambda: events.lens_refreshes >= 1, 5)
    # Generic clients get the run's status lines (not its every log entry) as window/logMessage.
    lines = [m.message for m in lsp.log_messages if run_id in m.message]
    assert len(lines) == 4 and lines[-1].startswith(f"promptrail: run {run_id}: succeeded · commit ")

    # Lenses: once the run's branch is merged, its lines carry one lens that resolves to the run.
    git(lsp_folders.repo, "merge", "-q", "--ff-only", f"promptrail/{run_id}")
    greet = lsp_folders.repo / "greet.py"
    uri = await open_document(lsp, greet)
    lenses = await code_lenses(lsp, uri)
    assert len(lenses) == 1
    lens = lenses[0]
    assert (lens.range.start.line, lens.range.start.character) == (0, 0)
    assert lens.range.end.line == 1 and lens.command is None
    resolved = await lsp.code_lens_resolve_async(lens)
    assert resolved.command is not None
    assert resolved.command.command == "promptrail.showRun"
    assert resolved.command.arguments[0]["runId"] == run_id
    title = resolved.command.title
    assert title.startswith("✦ add a greet function") and "$0.033" in title and "gate: pending" in title

    # An unsaved buffer is blamed as it is: two new lines on top move the lens down.
    lsp.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="# mine\n\n" + greet.read_text())]))
    moved = await code_lenses(lsp, uri)
    assert [(m.range.start.line, m.range.end.line) for m in moved] == [(2, 3)]


# -- 2. the asking commands are the CLI's answers --------------------------------------------------------
async def test_show_history_and_feed_match_the_cli(lsp: LanguageClient, lsp_folders: LspFolders):
    run_id = await run_prompt(lsp, lsp_folders)
    await recorder(lsp).wait_final(run_id)

    shown = await execute(lsp, "promptrail.showRun", {"runId": run_id})
    assert shown == cli_json(lsp_folders.repo, "show", run_id)
    # Positional arguments and a unique prefix work too; no folder needed for a run started here.
    assert await execute(lsp, "promptrail.showRun", run_id[:6]) == shown

    history = await execute(lsp, "promptrail.history", {"search": "greet", "limit": 5,
                                                         "workspaceFolder": str(lsp_folders.repo)})
    assert history == cli_json(lsp_folders.repo, "history", "--search", "greet", "--limit", "5")
    assert [run["id"] for run in history] == [run_id]
    feed = await execute(lsp, "promptrail.feed", {"limit": 10, "workspaceFolder": str(lsp_folders.repo)})
    assert feed == cli_json(lsp_folders.repo, "feed", "--limit", "10")
    assert {"run.started", "run.committed", "run.succeeded"} <= {event["kind"] for event in feed}


async def test_each_folder_is_its_own_repository(lsp: LanguageClient, lsp_folders: LspFolders):
    # A run made from the terminal in the second folder: the server finds it without being told
    # where, and the second folder's documents get their own lenses.
    second = lsp_folders.anonymous
    git(second, "config", "user.name", "Dev Two")
    git(second, "config", "user.email", "two@example.com")
    git(second, "commit", "-q", "--allow-empty", "-m", "start")
    run = cli_json(second, "run", "add greet", "--transcript", str(SAMPLE))
    git(second, "merge", "-q", "--ff-only", run["branch"])

    assert await execute(lsp, "promptrail.showRun", {"runId": run["id"]}) == cli_json(second, "show", run["id"])
    lenses = await code_lenses(lsp, await open_document(lsp, second / "greet.py"))
    assert [(lens.range.start.line, lens.range.end.line) for lens in lenses] == [(0, 1)]
    resolved = await lsp.code_lens_resolve_async(lenses[0])
    assert resolved.command is not None and resolved.command.arguments[0]["runId"] == run["id"]
    assert await code_lenses(lsp, await open_document(lsp, lsp_folders.repo / "README.md")) == []


# -- 3. cancel -----------------------------------------------------------------------------------------
async def test_cancel_mid_run(lsp: LanguageClient, lsp_folders: LspFolders):
    events = recorder(lsp)
    base = git(lsp_folders.repo, "rev-parse", "HEAD").strip()
    run_id = await run_prompt(lsp, lsp_folders, replayDelay=0.5)
    await wait_until(lambda: events.entries(run_id), 10)

    assert await execute(lsp, "promptrail.cancelRun", {"runId": run_id}) == {"runId": run_id, "status": "cancelling"}
    final = await events.wait_final(run_id)
    assert final["status"] == "cancelled" and "commit" not in final
    await wait_until(lambda: isinstance((progress_of(lsp, run_id) or [None])[-1], types.WorkDoneProgressEnd), 5)
    assert "cancelled" in (progress_of(lsp, run_id)[-1].message or "")
    assert git(lsp_folders.repo, "rev-list", f"{base}..promptrail/{run_id}").strip() == ""
    assert (await execute(lsp, "promptrail.showRun", run_id))["commit_sha"] is None
    # Cancelling a run that already ended is no error: it answers with how it ended.
    assert await execute(lsp, "promptrail.cancelRun", run_id) == {"runId": run_id, "status": "cancelled"}


async def test_cancel_from_the_progress_notification(lsp: LanguageClient, lsp_folders: LspFolders):
    run_id = await run_prompt(lsp, lsp_folders, replayDelay=0.5)
    await wait_until(lambda: progress_of(lsp, run_id), 10)
    token = next(token for token, values in lsp.progress_reports.items() if values == progress_of(lsp, run_id))
    assert progress_of(lsp, run_id)[0].cancellable is True
    lsp.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    assert (await recorder(lsp).wait_final(run_id))["status"] == "cancelled"


async def progress_end(client: LanguageClient, run_id: str) -> types.WorkDoneProgressEnd:
    await wait_until(lambda: isinstance((progress_of(client, run_id) or [None])[-1], types.WorkDoneProgressEnd), 5,
                     "the end of the run's progress")
    end = progress_of(client, run_id)[-1]
    assert isinstance(end, types.WorkDoneProgressEnd)
    return end


async def test_a_failed_run_ends_its_progress_as_failed(lsp: LanguageClient, lsp_folders: LspFolders,
                                                        tmp_path: Path):
    transcript = write_transcript(tmp_path / "fail.jsonl", [Write("half.py", "x = 1\n")], is_error=True)
    run_id = await run_prompt(lsp, lsp_folders, "try something", transcript=str(transcript))
    final = await recorder(lsp).wait_final(run_id)
    assert final["status"] == "failed" and final["error"] == "failed badly"
    end = await progress_end(lsp, run_id)
    assert end.message == f"run {run_id}: failed · commit {final['commit'][:12]} · $0.0123 · failed badly"
    assert [type(value) for value in progress_of(lsp, run_id)].count(types.WorkDoneProgressEnd) == 1


async def test_a_client_without_lens_refresh_support_is_never_asked_to_refresh(lsp_folders: LspFolders):
    async with session(lsp_folders, capabilities(workspace={"code_lens": None})) as (client, _):
        run_id = await run_prompt(client, lsp_folders)
        final = await recorder(client).wait_final(run_id)
        assert final["status"] == "succeeded" and final["commit"], "a commit landed: lenses are out of date"
        await progress_end(client, run_id)
        # Answered after everything the server sent before: a refresh request would be in by now.
        await execute(client, "promptrail.showRun", run_id)
        assert recorder(client).lens_refreshes == 0


# -- 3b. CLAUDE.md rules ----------------------------------------------------------------------------------
#: Two rules a run breaks, on lines we know.
RULES = "\n".join(["# Rules", "", "```promptrail", "[[rule]]", 'id = "no-todo"', 'paths = ["**/*.py"]',
                   "forbid = 'TODO'", 'message = "Open an issue instead."', 'severity = "error"', "",
                   "[[rule]]", 'id = "short-lines"', 'paths = ["**/*.py"]', "max_line_length = 20",
                   'severity = "warning"', "```", ""])


async def test_a_run_that_breaks_the_rules_reports_its_violations(lsp: LanguageClient, lsp_folders: LspFolders,
                                                                  tmp_path: Path):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
    git(lsp_folders.repo, "add", "CLAUDE.md")
    git(lsp_folders.repo, "commit", "-q", "-m", "rules")
    long_line = "value = compute(alpha, beta)"
    transcript = write_transcript(tmp_path / "rules.jsonl", [
        Write("app.py", f"import logging\n{long_line}\nvalue += 1  # TODO\n")])
    events = recorder(lsp)
    run_id = await run_prompt(lsp, lsp_folders, "add app.py", transcript=str(transcript))
    final = await events.wait_final(run_id)
    assert final["status"] == "succeeded"
    assert final["violations"] == {"total": 2, "error": 1, "warning": 1, "info": 0, "hint": 0,
                                   "policy_change": False}
    assert all("violations" not in status for status in events.statuses(run_id)[:-1]), "known once checked"
    # Which rules, where: in the live log (before the final status) and in showRun.
    checks = [entry["text"] for entry in events.entries(run_id) if entry["kind"] == "check"]
    assert checks[:2] == [f"app.py:2:21: warning [short-lines] line too long ({len(long_line)} > 20 characters)",
                          "app.py:3:15: error [no-todo] Open an issue instead."]
    shown = await execute(lsp, "promptrail.showRun", run_id)
    assert [(v["rule_id"], v["path"], v["line"], v["start_col"], v["end_col"]) for v in shown["violations"]] == [
        ("short-lines", "app.py", 2, 20, len(long_line)), ("no-todo", "app.py", 3, 14, 18)]


# -- 3c. configuration changed on disk -----------------------------------------------------------------------
async def test_promptrail_toml_changed_on_disk_is_read_again(lsp_folders: LspFolders):
    config = lsp_folders.repo / ".promptrail.toml"

    def changed() -> None:
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=lsp_folders.uri(config), type=types.FileChangeType.Changed)]))

    async with session(lsp_folders, WATCHING_FILES) as (client, _):
        first = await run_prompt(client, lsp_folders)  # reads the configuration: isolated mode by default
        await recorder(client).wait_final(first)
        assert (await execute(client, "promptrail.showRun", first))["mode"] == "isolated"

        config.write_text('[agent]\nmode = "direct"\n')
        git(lsp_folders.repo, "add", ".promptrail.toml")
        git(lsp_folders.repo, "commit", "-q", "-m", "direct mode")
        changed()
        second = await run_prompt(client, lsp_folders, "add a greet function again")
        await recorder(client).wait_final(second)
        assert (await execute(client, "promptrail.showRun", second))["mode"] == "direct"

        # Broken now: said at once, not at the next run.
        config.write_text('[agent]\nmode = "sideways"\n')
        changed()
        expected = f"promptrail: {config}:2: [agent] mode = 'sideways' is not a mode; use one of isolated, direct"
        await wait_until(lambda: any(m.message == expected for m in client.log_messages), 5, "the config error")


# -- 4. what the user can get wrong ----------------------------------------------------------------------
async def test_no_identity_and_no_repository(lsp: LanguageClient, lsp_folders: LspFolders):
    with pytest.raises(JsonRpcException) as no_identity:
        await execute(lsp, "promptrail.runPrompt", {"prompt": "add greet", "agent": "replay",
                                                    "transcript": str(SAMPLE),
                                                    "workspaceFolder": lsp_folders.uri(lsp_folders.anonymous)})
    assert no_identity.value.message == NO_IDENTITY
    assert cli_json(lsp_folders.anonymous, "history") == [], "no run row: the error came before the run"
    assert "user." not in git(lsp_folders.anonymous, "config", "--list", "--show-origin")
    await wait_until(lambda: lsp.messages, 5)
    assert lsp.messages[-1].type == types.MessageType.Error and NO_IDENTITY in lsp.messages[-1].message

    with pytest.raises(JsonRpcException) as unknown:
        await execute(lsp, "promptrail.showRun", {"runId": "zzz", "workspaceFolder": str(lsp_folders.repo)})
    assert unknown.value.message == "unknown run id 'zzz'; `promptrail history` lists the runs"

    notes = await open_document(lsp, lsp_folders.plain / "notes.txt")
    for _ in range(3):
        assert await code_lenses(lsp, notes) == []
    with pytest.raises(JsonRpcException) as not_a_repo:
        await execute(lsp, "promptrail.history", {"workspaceFolder": str(lsp_folders.plain)})
    assert "is not inside a git repository" in not_a_repo.value.message
    about_plain = [m for m in lsp.log_messages if str(lsp_folders.plain) in m.message]
    assert len(about_plain) == 1 and "not inside a git repository" in about_plain[0].message

    # A document outside every folder and every repository: no lenses, no error.
    outside = lsp_folders.plain.parent / "loose.txt"
    outside.write_text("loose\n")
    assert await code_lenses(lsp, await open_document(lsp, outside)) == []


async def test_lens_ranges_count_utf16_code_units(lsp: LanguageClient, lsp_folders: LspFolders, tmp_path: Path):
    transcript = write_transcript(tmp_path / "emoji.jsonl", [Write("emoji.py", "a = 1\ns = '😀 日本'\n")])
    run_id = await run_prompt(lsp, lsp_folders, "add emoji", transcript=str(transcript))
    assert (await recorder(lsp).wait_final(run_id))["status"] == "succeeded"
    git(lsp_folders.repo, "merge", "-q", "--ff-only", f"promptrail/{run_id}")
    lenses = await code_lenses(lsp, await open_document(lsp, lsp_folders.repo / "emoji.py"))
    # "s = '😀 日本'": 10 characters, 11 UTF-16 code units (the emoji is a surrogate pair).
    assert [(lens.range.start.line, lens.range.end.line, lens.range.end.character) for lens in lenses] == [(0, 1, 11)]


# -- big files -------------------------------------------------------------------------------------------
async def test_file_too_big_to_blame_gets_one_summary_lens(lsp: LanguageClient, lsp_folders: LspFolders):
    run_id = await run_prompt(lsp, lsp_folders)
    await recorder(lsp).wait_final(run_id)
    git(lsp_folders.repo, "merge", "-q", "--ff-only", f"promptrail/{run_id}")
    greet = lsp_folders.repo / "greet.py"
    huge = greet.read_text() + "".join(f"x_{n} = {n}\n" for n in range(25_000))
    lenses = await code_lenses(lsp, await open_document(lsp, greet, huge))
    assert len(lenses) == 1
    lens = lenses[0]
    assert lens.range.start == lens.range.end == types.Position(line=0, character=0)
    assert lens.command is not None and lens.command.title.startswith("✦ 1 AI run changed this file · $0.033 total")
    assert lens.command.arguments[0]["runId"] == run_id


# -- 5. the real claude binary ------------------------------------------------------------------------------
async def test_run_prompt_with_the_real_claude_cli(tmp_path: Path, lsp_folders: LspFolders):
    from tests.support.claude_tools import claude_env, require_claude
    from tests.support.fake_anthropic import FakeAnthropic, ToolCall, Turn

    claude = require_claude()
    script = [Turn("Writing hello.txt.", [ToolCall("Write", {"file_path": "{cwd}/hello.txt",
                                                             "content": "hello from claude\n"})]),
              Turn("Created hello.txt.")]
    with FakeAnthropic(script) as api:
        # The agent inherits the server's environment: the server must start with the fake API's.
        env = claude_env(api.url, tmp_path / "claude-home")
        client = await ClientServerConfig(server_command=SERVER_COMMAND, server_env=env).start()
        try:
            events = await open_session(client, lsp_folders)
            run_id = await run_prompt(client, lsp_folders, "write hello.txt", agent="claude-cli",
                                      transcript=None, claudePath=claude)
            final = await events.wait_final(run_id, timeout=90)
            assert final["status"] == "succeeded", "\n".join(e["text"] for e in events.entries(run_id))
            assert git(lsp_folders.repo, "show", f"{final['commit']}:hello.txt") == "hello from claude\n"
            shown = await execute(client, "promptrail.showRun", run_id)
            assert [f["path"] for f in shown["files"]] == ["hello.txt"]
            assert [e["seq"] for e in events.entries(run_id)] == list(range(1, len(events.entries(run_id)) + 1))
            assert len(api.agent_requests) == 2
        finally:
            await client.shutdown_session()
            await client.stop()
