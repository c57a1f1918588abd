"""The gate from the editor: Approve · Reject · Simulate lenses for a reviewer who may act,
the gate commands, runStatus carrying the gate, and rollback — over stdio against the real server."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from tests.conftest import git
from tests.e2e.conftest import LspFolders, execute
from tests.e2e.test_lsp_server import code_lenses, open_document, recorder, run_prompt

pytestmark = pytest.mark.e2e


async def test_review_lenses_and_gate_commands(lsp: LanguageClient, lsp_folders: LspFolders):
    repo = lsp_folders.repo
    (repo / ".promptrail.toml").write_text('[gate]\n[[gate.check]]\nname = "exists"\nrun = "test -f greet.py"\n')
    git(repo, "add", ".promptrail.toml")
    git(repo, "commit", "-qm", "policy")
    run_id = await run_prompt(lsp, lsp_folders)
    final = await recorder(lsp).wait_final(run_id)
    assert final["status"] == "succeeded"
    git(repo, "checkout", "-q", f"promptrail/{run_id}")  # the reviewer looks at the run's branch
    uri = await open_document(lsp, repo / "greet.py")

    # The prompter may not review their own run: only the run's lens, no actions.
    titles = [lens.command.title if lens.command else "(lazy)" for lens in await code_lenses(lsp, uri)]
    assert titles == ["(lazy)"]
    with pytest.raises(JsonRpcException, match="the four-eyes rule needs someone else"):
        await execute(lsp, "promptrail.gate.approve", {"runId": run_id})

    git(repo, "config", "user.email", "lead@example.com")
    lenses = await code_lenses(lsp, uri)
    actions = [(lens.command.title, lens.command.command) for lens in lenses if lens.command]
    assert actions == [("✓ Approve", "promptrail.gate.approve"), ("✗ Reject", "promptrail.gate.reject"),
                       ("▶ Simulate", "promptrail.gate.simulate")]
    assert all(lens.range.start.line == 0 for lens in lenses)

    simulated = await execute(lsp, "promptrail.gate.simulate", {"runId": run_id})
    assert simulated["status"] == "pending" and simulated["canMerge"] is False
    log = [e["text"] for e in recorder(lsp).entries(run_id)]
    assert any(text.startswith("check 'exists' passed (exit 0, ") for text in log)
    approved = await execute(lsp, "promptrail.gate.approve", {"runId": run_id, "comment": "ok"})
    assert approved["status"] == "approved by lead@example.com" and approved["canMerge"] is True
    statuses = [s.get("gate", {}).get("status") for s in recorder(lsp).statuses(run_id)]
    assert statuses[-1] == "approved by lead@example.com"

    git(repo, "checkout", "-q", "main")
    merged = await execute(lsp, "promptrail.gate.merge", {"runId": run_id})
    assert merged["status"] == "merged"
    assert git(repo, "rev-parse", "main").strip() == git(repo, "rev-parse", f"promptrail/{run_id}").strip()
    resolved = await lsp.code_lens_resolve_async((await code_lenses(lsp, uri))[0])
    assert resolved.command.title.endswith("· gate: merged")

    rolled = await execute(lsp, "promptrail.rollback", {"runId": run_id})
    assert rolled["reverts_run_id"] == run_id and rolled["status"] == "succeeded"
    assert not (repo / "greet.py").exists()
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
