"""Quality gates against real repositories: the four-eyes rule, approver globs, stale approvals,
merge refusals, policy read from the target branch, checks with timeouts, merges into a moving
target, and rollback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptrail import gates
from promptrail.errors import PromptrailError
from promptrail.workspace import Workspace
from tests.conftest import git
from tests.integration.test_runs import run_prompt
from tests.support.transcripts import Edit, Write


def as_user(repo: Path, email: str, name: str = "Someone") -> None:
    git(repo, "config", "user.email", email)
    git(repo, "config", "user.name", name)


def commit_policy(repo: Path, text: str) -> None:
    (repo / ".promptrail.toml").write_text(text)
    git(repo, "add", ".promptrail.toml")
    git(repo, "commit", "-q", "-m", "gate policy")


def tree_of(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", f"{rev}^{{tree}}").strip()


@pytest.fixture
def ran(repo):
    data = run_prompt(repo, [Write("feature.py", "def feature():\n    return 1\n")], prompt="add feature")
    assert data["status"] == "succeeded"
    return data


def test_four_eyes_rule(repo, ran):
    ws = Workspace(repo)
    with pytest.raises(PromptrailError) as excinfo:
        gates.sign_off(ws, ran["id"], "approve")
    assert str(excinfo.value) == (f"dev@example.com prompted run {ran['id']}; the four-eyes rule needs someone "
                                  "else to sign off (allow_self_approval = false)")
    as_user(repo, "lead@example.com", "Lead")
    state = gates.sign_off(ws, ran["id"], "approve", comment="looks right")
    assert (state.status, state.label, state.can_merge) == ("approved", "approved by lead@example.com", True)
    assert ws.store.get_run(ran["id"])["gate_status"] == "approved by lead@example.com"


def test_self_approval_when_allowed(repo):
    commit_policy(repo, "[gate]\nallow_self_approval = true\n")
    data = run_prompt(repo, [Write("x.py", "1\n")])
    assert gates.sign_off(Workspace(repo), data["id"], "approve").status == "approved"


def test_approver_globs_and_required_count(repo):
    commit_policy(repo, '[gate]\nrequired_approvals = 2\napprovers = ["*@leads.example.com", "cto@example.com"]\n')
    data = run_prompt(repo, [Write("x.py", "1\n")])
    ws = Workspace(repo)
    as_user(repo, "dev2@example.com")
    with pytest.raises(PromptrailError, match=r"^dev2@example.com is not an approver for this run \(approvers: "
                                              r"\*@leads.example.com, cto@example.com in main:.promptrail.toml\)$"):
        gates.sign_off(ws, data["id"], "approve")
    as_user(repo, "x@evil.com?@leads.example.com")  # a glob must not be fooled by a second @
    with pytest.raises(PromptrailError, match=r"^x@evil.com\?@leads.example.com is not an approver"):
        gates.sign_off(ws, data["id"], "approve")
    as_user(repo, "ana@leads.example.com")
    assert gates.sign_off(ws, data["id"], "approve").label == "1/2 approvals"
    assert gates.sign_off(ws, data["id"], "approve").label == "1/2 approvals"  # one voice per person
    as_user(repo, "cto@example.com")
    assert gates.sign_off(ws, data["id"], "approve").label == "approved by ana@leads.example.com, cto@example.com"


def test_new_commit_on_the_run_branch_makes_approval_stale(repo, ran):
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, ran["id"], "approve")
    # Someone adds a commit to the run's branch after the approval.
    folder = repo.parent / "extra"
    git(repo, "worktree", "add", "-q", str(folder), ran["branch"])
    (folder / "feature.py").write_text("def feature():\n    return 2\n")
    git(folder, "commit", "-qam", "tweak")
    state = gates.gate_state(ws, ws.store.get_run(ran["id"]))
    assert (state.status, state.label, state.stale_signoffs) == ("stale", "stale", 1)
    with pytest.raises(PromptrailError, match=r"cannot be merged: 0/1 approvals on"):
        gates.merge(ws, ran["id"])
    with pytest.raises(PromptrailError, match=r"moved since it was opened for review"):
        gates.sign_off(ws, ran["id"], "approve")
    tip = git(repo, "rev-parse", ran["branch"]).strip()
    assert gates.sign_off(ws, ran["id"], "approve", reviewed_sha=tip[:12]).status == "approved"


def test_merge_refused_without_approval_and_on_red_checks(repo):
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "tests"\nrun = "test -f ok.txt"\n')
    data = run_prompt(repo, [Write("feature.py", "1\n")])
    ws = Workspace(repo)
    main_before = git(repo, "rev-parse", "main").strip()
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, data["id"])
    assert str(excinfo.value) == (f"run {data['id']} cannot be merged: 0/1 approvals on {data['commit_sha'][:12]}; "
                                  f"check 'tests' has not run on {data['commit_sha'][:12]} "
                                  "(run `promptrail gate simulate`)")
    state = asyncio.run(gates.simulate(ws, data["id"]))
    assert [(c["name"], c["status"], c["exit_code"]) for c in state.checks] == [("tests", "failed", 1)]
    assert state.label == "checks failed"
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, data["id"], "approve")
    with pytest.raises(PromptrailError, match=r"cannot be merged: check 'tests' failed$"):
        gates.merge(ws, data["id"])
    assert git(repo, "rev-parse", "main").strip() == main_before


def test_check_that_hangs_is_stopped_at_its_timeout(repo):
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "hang"\nrun = "echo start; sleep 60"\ntimeout_s = 1\n')
    data = run_prompt(repo, [Write("feature.py", "1\n")])
    ws = Workspace(repo)
    state = asyncio.run(gates.simulate(ws, data["id"]))
    (check,) = state.checks
    assert check["status"] == "timed_out"
    assert check["output"].splitlines() == ["start", "[promptrail] timed out after 1 s; the check was stopped"]
    assert check["duration_ms"] < 10_000
    log = [e["text"] for e in ws.store.log(data["id"])]
    assert log[-3:-1] == ["start", "[promptrail] timed out after 1 s; the check was stopped"]
    assert log[-1].startswith("check 'hang' timed_out (exit -15, ")
    seqs = [e["seq"] for e in ws.store.log(data["id"])]
    assert seqs == list(range(1, len(seqs) + 1))  # the check's lines continue the run's log


def test_green_checks_and_approval_merge_fast_forward(repo):
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "exists"\nrun = "test -f feature.py && echo fine"\n')
    data = run_prompt(repo, [Write("feature.py", "1\n")])
    ws = Workspace(repo)
    assert asyncio.run(gates.simulate(ws, data["id"])).checks[0]["status"] == "passed"
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, data["id"], "approve")
    state = gates.merge(ws, data["id"])
    assert state.status == "merged" and state.label == "merged"
    assert git(repo, "rev-parse", "main").strip() == data["commit_sha"]
    assert (repo / "feature.py").read_text() == "1\n"  # the checked-out target advanced
    kinds = [e["kind"] for e in ws.store.feed(run_id=data["id"])]
    assert kinds[:3] == ["deployed", "gate.approved", "gate.simulated"]


def test_policy_edit_inside_the_run_does_not_change_its_gate(repo):
    commit_policy(repo, "[gate]\nrequired_approvals = 1\n")
    data = run_prompt(repo, [Write(".promptrail.toml", "[gate]\nrequired_approvals = 0\n")])
    ws = Workspace(repo)
    state = gates.gate_state(ws, ws.store.get_run(data["id"]))
    assert state.required_approvals == 1 and not state.can_merge


def test_malformed_policy_refuses_every_gate_operation(repo):
    commit_policy(repo, "[gate]\nrequired_approvals = 1\nrequired_aprovals = 2\n")
    data = run_prompt(repo, [Write("x.py", "1\n")])
    ws = Workspace(repo)
    message = ("main:.promptrail.toml:3: [gate] unknown key 'required_aprovals' (known: allow_self_approval, "
               "approvers, block_on, check, required_approvals, target); fix the policy (every gate operation "
               "refuses until it is valid)")
    as_user(repo, "lead@example.com")
    for operation in (lambda: gates.sign_off(ws, data["id"], "approve"), lambda: gates.merge(ws, data["id"]),
                      lambda: asyncio.run(gates.simulate(ws, data["id"]))):
        with pytest.raises(PromptrailError) as excinfo:
            operation()
        assert str(excinfo.value) == message
    commit_policy(repo, "[gate\n")
    with pytest.raises(PromptrailError, match=r"^main:.promptrail.toml:1: invalid TOML: "):
        gates.merge(ws, data["id"])


def test_two_runs_merged_into_a_moving_target(repo):
    first = run_prompt(repo, [Write("a.py", "a\n")], prompt="add a")
    second = run_prompt(repo, [Write("b.py", "b\n")], prompt="add b")
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    for data in (first, second):
        gates.sign_off(ws, data["id"], "approve")
    gates.merge(ws, first["id"])
    assert git(repo, "rev-parse", "main").strip() == first["commit_sha"]  # fast-forward
    gates.merge(ws, second["id"])
    head = git(repo, "rev-parse", "main").strip()
    parents = git(repo, "rev-list", "--parents", "-n1", head).split()[1:]
    assert parents == [first["commit_sha"], second["commit_sha"]]  # a merge commit
    assert f"Promptrail-Run: {second['id']}" in git(repo, "log", "-1", "--format=%B", head)
    assert sorted(p.name for p in repo.glob("*.py")) == ["a.py", "app.py", "b.py"]


def test_conflicting_merge_is_refused_and_target_untouched(repo):
    first = run_prompt(repo, [Edit("app.py", "return 1", "return 'first'")])
    second = run_prompt(repo, [Edit("app.py", "return 1", "return 'second'")])
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    for data in (first, second):
        gates.sign_off(ws, data["id"], "approve")
    gates.merge(ws, first["id"])
    before = git(repo, "rev-parse", "main").strip()
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, second["id"])
    assert str(excinfo.value) == (f"run {second['id']} conflicts with the target (now at {before[:12]}); the "
                                  f"target is untouched: rebase the run's branch {second['branch']} and ask for a "
                                  "new review")
    assert git(repo, "rev-parse", "main").strip() == before
    assert git(repo, "status", "--porcelain") == ""


def test_merge_refuses_to_overwrite_uncommitted_work(repo, ran):
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, ran["id"], "approve")
    (repo / "feature.py").write_text("my own draft\n")  # untracked file in the way of the merge
    before = git(repo, "rev-parse", "main").strip()
    with pytest.raises(PromptrailError, match=r"^could not advance main to "):
        gates.merge(ws, ran["id"])
    assert git(repo, "rev-parse", "main").strip() == before
    assert (repo / "feature.py").read_text() == "my own draft\n"


def test_rollback_restores_the_target_tree(repo, ran):
    ws = Workspace(repo)
    tree_before = tree_of(repo, "main")
    as_user(repo, "lead@example.com", "Lead")
    gates.sign_off(ws, ran["id"], "approve")
    gates.merge(ws, ran["id"])
    assert tree_of(repo, "main") != tree_before
    rolled = gates.rollback(ws, ran["id"])
    assert tree_of(repo, "main") == tree_before
    assert not (repo / "feature.py").exists()
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert f"Promptrail-Reverts: {ran['id']}" in message and f"Promptrail-Run: {rolled['id']}" in message
    assert rolled["actor"] == {"name": "Lead", "email": "lead@example.com"}
    assert rolled["reverts_run_id"] == ran["id"] and rolled["agent"] == "rollback"
    assert ws.store.get_run(ran["id"])["gate_status"] == "rolled back"
    assert ws.store.verify().ok


def test_rollback_of_an_unmerged_run_is_refused(repo, ran):
    expected = f"^run {ran['id']} is not on main; only a merged run can be rolled back$"
    with pytest.raises(PromptrailError, match=expected):
        gates.rollback(Workspace(repo), ran["id"])


def test_gate_cli(repo, ran):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "promptrail", *args, "--repo", str(repo)],
                              capture_output=True, text=True)

    refused = cli("gate", "approve", ran["id"])
    assert refused.returncode == 2 and "four-eyes rule" in refused.stderr
    as_user(repo, "lead@example.com")
    approved = cli("gate", "approve", ran["id"][:6], "--comment", "ok", "--json")
    assert json.loads(approved.stdout)["label"] == "approved by lead@example.com"
    assert json.loads(cli("gate", "merge", ran["id"], "--json").stdout)["status"] == "merged"
    shown = json.loads(cli("show", ran["id"], "--json").stdout)
    assert shown["gate"]["status"] == "merged"


def test_merge_refused_on_a_blocking_violation(repo):
    (repo / "CLAUDE.md").write_text("# rules\n\n```promptrail\n[[rule]]\nid = \"no-print\"\npaths = [\"*.py\"]\n"
                                    "forbid = '\\bprint\\('\nmessage = \"no print\"\nseverity = \"error\"\n```\n")
    git(repo, "add", "CLAUDE.md")
    git(repo, "commit", "-qm", "rules")
    data = run_prompt(repo, [Write("noisy.py", "print('hi')\n")])
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    assert gates.sign_off(ws, data["id"], "approve").label == "approved by lead@example.com"
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, data["id"])
    assert str(excinfo.value) == f"run {data['id']} cannot be merged: 1 blocking CLAUDE.md violation(s) (error)"
    # A policy that blocks only on something else lets it through.
    commit_policy(repo, '[gate]\nblock_on = []\n')
    gates.sign_off(ws, data["id"], "approve")
    assert gates.merge(ws, data["id"]).status == "merged"


def test_rollback_that_conflicts_is_refused_cleanly(repo):
    data = run_prompt(repo, [Edit("app.py", "return 1", "return 2")])
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, data["id"], "approve")
    gates.merge(ws, data["id"])
    (repo / "app.py").write_text("def main():\n    return 3\n")  # a later change to the same line
    git(repo, "commit", "-qam", "later")
    before = git(repo, "rev-parse", "main").strip()
    with pytest.raises(PromptrailError) as excinfo:
        gates.rollback(ws, data["id"])
    assert str(excinfo.value) == (f"reverting run {data['id']} conflicts with later changes on main; the target is "
                                  "untouched: revert it by hand")
    assert git(repo, "rev-parse", "main").strip() == before
    assert git(repo, "status", "--porcelain") == ""
    assert [r["agent"] for r in ws.store.list_runs()] == ["replay"]  # no rollback run recorded


def test_a_check_that_escapes_its_group_times_out_cleanly(repo):
    # The check leaves a process in a session of its own holding the output pipe open.
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "daemon"\nrun = "(setsid sleep 5 &) ; echo started"\n'
                        'timeout_s = 1\n')
    data = run_prompt(repo, [Write("feature.py", "1\n")])
    result = subprocess.run([sys.executable, "-m", "promptrail", "gate", "simulate", data["id"], "--json",
                             "--repo", str(repo)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (check,) = json.loads(result.stdout)["checks"]
    assert (check["name"], check["status"]) == ("daemon", "timed_out")
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
