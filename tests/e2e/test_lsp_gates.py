"""The gate from the editor: Approve · Reject · Simulate lenses at the top of a run's file for a
reviewer who may act, the gate commands, runStatus and lens titles carrying the gate (stale after a
new commit), and rollback — over stdio against the real server."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from tests.conftest import git
from tests.e2e.conftest import LspFolders, execute
from tests.e2e.test_lsp_server import code_lenses, open_document, recorder, run_prompt
from tests.support.transcripts import Edit, write_transcript

pytestmark = pytest.mark.e2e


GREET_BEFORE = '"""Greetings."""\n\nNAME = "world"\n'
GREET_AFTER = GREET_BEFORE + '\n\ndef greet():\n    return f"hello {NAME}"\n'


async def test_review_lenses_and_gate_commands(lsp: LanguageClient, lsp_folders: LspFolders, tmp_path):
    repo = lsp_folders.repo
    (repo / ".promptrail.toml").write_text('[gate]\n[[gate.check]]\nname = "exists"\nrun = "test -f greet.py"\n')
    (repo / "greet.py").write_text(GREET_BEFORE)  # its first lines are not the run's
    git(repo, "add", ".promptrail.toml", "greet.py")
    git(repo, "commit", "-qm", "policy")
    tree_before = git(repo, "rev-parse", "main^{tree}").strip()
    transcript = write_transcript(tmp_path / "greet.jsonl", [Edit("greet.py", GREET_BEFORE, GREET_AFTER)])
    run_id = await run_prompt(lsp, lsp_folders, transcript=str(transcript))
    final = await recorder(lsp).wait_final(run_id)
    assert final["status"] == "succeeded"
    git(repo, "checkout", "-q", f"promptrail/{run_id}")  # the reviewer looks at the run's branch
    uri = await open_document(lsp, repo / "greet.py")

    # The prompter may not review their own run: only the run's lens, no actions.
    lenses = await code_lenses(lsp, uri)
    assert [(lens.range.start.line, lens.command) for lens in lenses] == [(3, None)]
    with pytest.raises(JsonRpcException, match="the four-eyes rule needs someone else"):
        await execute(lsp, "promptrail.gate.approve", {"runId": run_id})

    git(repo, "config", "user.email", "lead@example.com")
    lenses = await code_lenses(lsp, uri)
    # The run's lens on its lines; the actions at the top of the file.
    shown = [(lens.range.start.line, lens.command.title if lens.command else "(lazy)") for lens in lenses]
    assert shown == [(3, "(lazy)"), (0, "✓ Approve"), (0, "✗ Reject"), (0, "▶ Simulate")]
    assert [lens.command.command for lens in lenses[1:]] == [
        "promptrail.gate.approve", "promptrail.gate.reject", "promptrail.gate.simulate"]

    simulated = await execute(lsp, "promptrail.gate.simulate", {"runId": run_id})
    assert simulated["status"] == "pending" and simulated["canMerge"] is False
    log = [e["text"] for e in recorder(lsp).entries(run_id)]
    assert any(text.startswith("check 'exists' passed (exit 0, ") for text in log)
    approved = await execute(lsp, "promptrail.gate.approve", {"runId": run_id, "comment": "ok"})
    assert approved["status"] == "approved by lead@example.com" and approved["canMerge"] is True
    statuses = [s.get("gate", {}).get("status") for s in recorder(lsp).statuses(run_id)]
    assert statuses[-1] == "approved by lead@example.com"
    resolved = await lsp.code_lens_resolve_async((await code_lenses(lsp, uri))[0])
    assert resolved.command.title.endswith("· gate: approved by lead@example.com")

    # A commit on the run's branch after the approval: the lens says so.
    (repo / "NOTES.md").write_text("greet() greets\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-qm", "notes")
    resolved = await lsp.code_lens_resolve_async((await code_lenses(lsp, uri))[0])
    assert resolved.command.title.endswith("· gate: stale")
    tip = git(repo, "rev-parse", "HEAD").strip()
    await execute(lsp, "promptrail.gate.simulate", {"runId": run_id})
    approved = await execute(lsp, "promptrail.gate.approve", {"runId": run_id, "sha": tip[:12]})
    assert approved["canMerge"] is True

    git(repo, "checkout", "-q", "main")
    merged = await execute(lsp, "promptrail.gate.merge", {"runId": run_id})
    assert merged["status"] == "merged"
    assert git(repo, "rev-parse", "main").strip() == tip
    resolved = await lsp.code_lens_resolve_async((await code_lenses(lsp, uri))[0])
    assert resolved.command.title.endswith("· gate: merged")

    rolled = await execute(lsp, "promptrail.rollback", {"runId": run_id})
    assert rolled["reverts_run_id"] == run_id and rolled["status"] == "succeeded"
    assert git(repo, "rev-parse", "main^{tree}").strip() == tree_before  # both commits of the run reverted
    assert (repo / "greet.py").read_text() == GREET_BEFORE and not (repo / "NOTES.md").exists()
    shown = await execute(lsp, "promptrail.showRun", {"runId": run_id})
    assert shown["gate"]["status"] == "rolled back"
    assert isinstance(lenses[0], types.CodeLens)


async def test_costs_request_and_todays_spend(lsp: LanguageClient, lsp_folders: LspFolders):
    run_id = await run_prompt(lsp, lsp_folders)
    final = await recorder(lsp).wait_final(run_id)
    assert final["costsToday"] == pytest.approx(0.0325)
    report = await lsp.protocol.send_request_async("promptrail/costs", {"by": "model"})
    report = report._asdict() if hasattr(report, "_asdict") else report
    groups = [g._asdict() if hasattr(g, "_asdict") else g for g in report["groups"]]
    assert [(g["key"], g["runs"], g["cost_usd"]) for g in groups] == [("claude-opus-4-8[1m]", 1, 0.0325)]
    with pytest.raises(JsonRpcException, match="cannot group costs by 'color'"):
        await lsp.protocol.send_request_async("promptrail/costs", {"by": "color"})


async def test_log_command_matches_the_cli(lsp: LanguageClient, lsp_folders: LspFolders):
    from tests.e2e.conftest import cli_json

    run_id = await run_prompt(lsp, lsp_folders)
    await recorder(lsp).wait_final(run_id)
    entries = await execute(lsp, "promptrail.log", {"runId": run_id})
    assert entries == cli_json(lsp_folders.repo, "log", run_id)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    with pytest.raises(JsonRpcException, match="unknown run id 'nope'"):
        await execute(lsp, "promptrail.log", {"runId": "nope"})


async def test_listing_limits_out_of_range_are_refused(lsp: LanguageClient, lsp_folders: LspFolders):
    for command, limit, message in (
            ("promptrail.feed", float("inf"), "limit must be a non-negative number, not inf"),
            ("promptrail.history", float("nan"), "limit must be a non-negative number, not nan"),
            ("promptrail.history", 0, "the limit must be 1 or more, not 0")):
        with pytest.raises(JsonRpcException) as excinfo:
            await execute(lsp, command, {"limit": limit})
        assert excinfo.value.message == message
    # A huge number just means "all of them".
    assert await execute(lsp, "promptrail.feed", {"limit": 10**30}) == []
    assert await execute(lsp, "promptrail.history", {"limit": 1e308}) == []
