"""Quality gates against real repositories: the four-eyes rule, approver globs, stale approvals
and live labels, rejection, merge refusals, violations at the branch tip, policy read from the
target branch (and its mistakes), checks with timeouts, merges into a moving or another target,
and rollback of everything a merge brought."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptrail import gates, queries
from promptrail.errors import PromptrailError
from promptrail.workspace import Workspace
from tests.conftest import git, make_repo
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


def commit_on_branch(repo: Path, branch: str, files: dict[str, str], message: str = "tweak") -> str:
    """Someone adds a commit to ``branch`` (a run's branch, after review started); its SHA."""
    folder = repo.parent / f"worktree-{branch.replace('/', '-')}"
    if not folder.exists():
        git(repo, "worktree", "add", "-q", str(folder), branch)
    for name, text in files.items():
        (folder / name).write_text(text)
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", message)
    return git(folder, "rev-parse", "HEAD").strip()


def gate_operations(ws: Workspace, run_id: str) -> dict:
    """Every gate operation on ``run_id``, for tests that all of them refuse alike."""
    return {"approve": lambda: gates.sign_off(ws, run_id, "approve"),
            "reject": lambda: gates.sign_off(ws, run_id, "reject"),
            "simulate": lambda: asyncio.run(gates.simulate(ws, run_id)),
            "merge": lambda: gates.merge(ws, run_id),
            "rollback": lambda: gates.rollback(ws, run_id)}


NO_PRINT_RULE = ("# rules\n\n```promptrail\n[[rule]]\nid = \"no-print\"\npaths = [\"*.py\"]\n"
                 "forbid = '\\bprint\\('\nmessage = \"no print\"\nseverity = \"error\"\n```\n")


def commit_rules(repo: Path) -> None:
    (repo / "CLAUDE.md").write_text(NO_PRINT_RULE)
    git(repo, "add", "CLAUDE.md")
    git(repo, "commit", "-qm", "rules")


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


def test_reject_blocks_the_merge_until_the_same_person_approves(repo, ran):
    ws = Workspace(repo)
    as_user(repo, "lead@example.com", "Lead")
    state = gates.sign_off(ws, ran["id"], "reject", comment="needs a test")
    assert (state.status, state.label) == ("rejected", "rejected by lead@example.com")
    assert ws.store.get_run(ran["id"])["gate_status"] == "rejected by lead@example.com"
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, ran["id"])
    assert str(excinfo.value) == (f"run {ran['id']} cannot be merged: 0/1 approvals on {ran['commit_sha'][:12]}; "
                                  "rejected by lead@example.com")
    (signoff,) = ws.store.signoffs(ran["id"])
    assert (signoff["decision"], signoff["comment"], signoff["commit_sha"], signoff["actor_email"]) == \
        ("reject", "needs a test", ran["commit_sha"], "lead@example.com")
    event = ws.store.feed(run_id=ran["id"])[0]
    assert (event["kind"], event["actor"], event["data"]["sha"], event["data"]["comment"]) == \
        ("gate.rejected", "Lead <lead@example.com>", ran["commit_sha"], "needs a test")
    # Their later approval of the same commit replaces their rejection.
    state = gates.sign_off(ws, ran["id"], "approve", comment="test added elsewhere")
    assert (state.status, state.label, state.rejections, state.can_merge) == \
        ("approved", "approved by lead@example.com", [], True)
    assert gates.merge(ws, ran["id"]).status == "merged"


def test_reviewed_sha_must_name_one_commit(repo, ran):
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    for bad, message in [
            ("a", "--sha 'a' is not a commit SHA; give at least 7 hex digits of the commit you reviewed"),
            ("main", "--sha 'main' is not a commit SHA; give at least 7 hex digits of the commit you reviewed"),
            ("0123456789ab", "--sha 0123456789ab names no single commit in this repository; give more of its digits")]:
        with pytest.raises(PromptrailError) as excinfo:
            gates.sign_off(ws, ran["id"], "approve", reviewed_sha=bad)
        assert str(excinfo.value) == message
    # A prefix of another commit (the run's base) is not the commit under review.
    with pytest.raises(PromptrailError, match=rf"^the run's branch {ran['branch']} moved since it was opened"):
        gates.sign_off(ws, ran["id"], "approve", reviewed_sha=ran["base_sha"][:7])
    assert ws.store.signoffs(ran["id"]) == []
    refused = subprocess.run([sys.executable, "-m", "promptrail", "gate", "approve", ran["id"], "--sha", "a",
                              "--repo", str(repo)], capture_output=True, text=True)
    assert (refused.returncode, refused.stderr) == (
        2, "promptrail: error: --sha 'a' is not a commit SHA; give at least 7 hex digits of the commit you "
           "reviewed\n")
    state = gates.sign_off(ws, ran["id"], "approve", reviewed_sha=ran["commit_sha"][:7].upper())
    assert state.label == "approved by lead@example.com"


def test_no_required_approval_says_so(repo):
    commit_policy(repo, "[gate]\nrequired_approvals = 0\n")
    data = run_prompt(repo, [Write("x.py", "1\n")])
    ws = Workspace(repo)
    state = gates.gate_state(ws, ws.store.get_run(data["id"]))
    assert (state.status, state.label, state.can_merge) == ("approved", "no approval needed", True)
    assert gates.merge(ws, data["id"]).label == "merged"


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
    commit_on_branch(repo, ran["branch"], {"feature.py": "def feature():\n    return 2\n"})
    state = gates.gate_state(ws, ws.store.get_run(ran["id"]))
    assert (state.status, state.label, state.stale_signoffs) == ("stale", "stale", 1)
    with pytest.raises(PromptrailError, match=r"cannot be merged: 0/1 approvals on"):
        gates.merge(ws, ran["id"])
    with pytest.raises(PromptrailError, match=r"moved since it was opened for review"):
        gates.sign_off(ws, ran["id"], "approve")
    tip = git(repo, "rev-parse", ran["branch"]).strip()
    assert gates.sign_off(ws, ran["id"], "approve", reviewed_sha=tip[:12]).status == "approved"


def test_lens_title_history_and_blame_show_stale_after_a_new_commit(repo, ran, monkeypatch):
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, ran["id"], "approve")

    def labels() -> tuple[str, str, str]:
        row = ws.store.get_run(ran["id"])
        line = queries.blame(ws, "feature.py", rev=ran["branch"])[0]  # `def feature():`, the run's line
        (listed,) = queries.history(ws)
        return queries.lens_title(queries.with_live_gate(ws, row)), line["label"], listed["gate"]["status"]

    title, blamed, listed = labels()
    assert title.endswith("· gate: approved by lead@example.com") and blamed == title
    assert listed == "approved by lead@example.com"
    tip = commit_on_branch(repo, ran["branch"], {"feature.py": "def feature():\n    return 2\n"})
    title, blamed, listed = labels()
    assert title.endswith("· gate: stale") and blamed == title and listed == "stale"
    assert ws.store.get_run(ran["id"])["gate_status"] == "stale"  # stored: the next reader need not recompute
    git(repo, "pack-refs", "--all")  # as `git gc` does: the tip is still read without starting git
    assert not (repo / ".git" / "refs" / "heads" / ran["branch"]).exists()
    monkeypatch.setenv("PATH", "")  # no git to start
    assert ws.repo.branch_sha_fast(ran["branch"]) == tip


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


def test_a_checks_runaway_output_is_kept_up_to_a_limit(repo, monkeypatch):
    monkeypatch.setattr(gates, "CHECK_LOG_LINES", 3)
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "loud"\nrun = "seq 1 10; exit 1"\n')
    data = run_prompt(repo, [Write("feature.py", "1\n")])
    ws = Workspace(repo)
    (check,) = asyncio.run(gates.simulate(ws, data["id"])).checks
    cut = ("[promptrail] the check printed more than 3 lines; the rest is not kept (the check goes on, and its exit "
           "code decides)")
    assert (check["status"], check["exit_code"], check["output"].splitlines()) == ("failed", 1, ["1", "2", "3", cut])
    log = ws.store.log(data["id"])
    assert [(e["kind"], e["text"]) for e in log[-5:-1]] == [("check", "1"), ("check", "2"), ("check", "3"),
                                                            ("warning", cut)]


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
    steps = [(e["kind"], e["actor"], e["data"]["sha"]) for e in ws.store.feed(run_id=data["id"])[:3]]
    assert steps == [("deployed", "Someone <lead@example.com>", data["commit_sha"]),
                     ("gate.approved", "Someone <lead@example.com>", data["commit_sha"]),
                     ("gate.simulated", "Dev One <dev@example.com>", data["commit_sha"])]


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
    for name, operation in gate_operations(ws, data["id"]).items():
        with pytest.raises(PromptrailError) as excinfo:
            operation()
        assert (name, str(excinfo.value)) == (name, message)
    commit_policy(repo, "[gate\n")
    with pytest.raises(PromptrailError, match=r"^main:.promptrail.toml:1: invalid TOML: "):
        gates.merge(ws, data["id"])


@pytest.mark.parametrize("section", ["gaet", "Gate"])
def test_a_misspelt_gate_section_refuses_every_gate_operation(repo, ran, section):
    # Never "no [gate], so the defaults": the policy the team wrote would silently not apply.
    commit_policy(repo, f'[agent]\nmodel = "claude-x"\n\n[{section}]\nrequired_approvals = 2\n')
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    message = (f"main:.promptrail.toml:4: unknown section [{section}] (known: agent, anthropic, budget, gate, "
               "prices); fix the policy (every gate operation refuses until it is valid)")
    for name, operation in gate_operations(ws, ran["id"]).items():
        with pytest.raises(PromptrailError) as excinfo:
            operation()
        assert (name, str(excinfo.value)) == (name, message)
    assert ws.store.signoffs(ran["id"]) == [] and ws.store.checks(ran["id"]) == []


@pytest.mark.parametrize(("text", "message", "line"), [
    # The same key in another section earlier in the file is not the line at fault.
    ('[agent]\nmodel = "claude-x"\n\n[gate]\nmodel = "y"\n',
     "[gate] unknown key 'model' (known: allow_self_approval, approvers, block_on, check, required_approvals, "
     "target)", 5),
    ('[gate]\n[[gate.check]]\nname = "a"\nrun = "true"\ntimeout_s = 5\n[[gate.check]]\nname = "b"\n',
     "[gate] each [[gate.check]] needs a name and a run command", 6),
    ('[gate]\n[[gate.check]]\nname = "a"\nrun = "true"\ntimeout_s = 5\n[[gate.check]]\nname = "b"\nrun = "x"\n'
     'timeout_s = 0\n', "[gate] timeout_s must be a positive number of seconds", 9),
    ('[gate]\n[[gate.check]]\nname = "a"\nrun = "true"\n[[gate.check]]\nname = "b"\nrun = "x"\ncmd = "y"\n',
     "[gate] unknown key 'cmd' in [[gate.check]]", 8),
    ('gate = 1\n', "'gate' must be a table ([gate])", 1),
    ('[gate]\ncheck = [1]\n', "[gate] check must be written as [[gate.check]] tables", 2),
    ('[gate]\nrequired_approvals = 99999999999999999999\n',
     "[gate] required_approvals must be a whole number from 0 to 100", 2),
])
def test_policy_mistakes_name_their_own_line(text, message, line):
    with pytest.raises(PromptrailError) as excinfo:
        gates.parse_policy(text, "main:.promptrail.toml")
    assert str(excinfo.value) == (f"main:.promptrail.toml:{line}: {message}; fix the policy (every gate operation "
                                  "refuses until it is valid)")


def two_approved_runs(repo: Path, second_prompt: str = "add b") -> tuple[Workspace, dict, dict]:
    """Two runs from the same base (a.py, then b.py), both approved by lead@example.com."""
    first = run_prompt(repo, [Write("a.py", "a\n")], prompt="add a")
    second = run_prompt(repo, [Write("b.py", "b\n")], prompt=second_prompt)
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    for data in (first, second):
        gates.sign_off(ws, data["id"], "approve")
    return ws, first, second


def test_two_runs_merged_into_a_moving_target(repo):
    ws, first, second = two_approved_runs(repo)
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
    assert f"\n\nThis reverts commit {ran['commit_sha']}.\n\n" in message
    assert rolled["actor"] == {"name": "Lead", "email": "lead@example.com"}
    assert rolled["reverts_run_id"] == ran["id"] and rolled["agent"] == "rollback"
    assert ws.store.get_run(ran["id"])["gate_status"] == "rolled back"
    assert ws.store.verify().ok


@pytest.mark.parametrize("target_moved", [False, True], ids=["fast-forward", "merge-commit"])
def test_rollback_reverts_every_commit_the_merge_brought(repo, target_moved):
    data = run_prompt(repo, [Write("feature.py", "def feature():\n    return 1\n"),
                             Edit("app.py", "return 1", "return 'run'")], prompt="add feature")
    tip = commit_on_branch(repo, data["branch"], {"feature.py": "def feature():\n    return 2\n",
                                                  "extra.txt": "more\n"}, "second commit of the run")
    if target_moved:
        (repo / "README.md").write_text("# project, moved on\n")
        git(repo, "commit", "-qam", "meanwhile on main")
    ws = Workspace(repo)
    tree_before, main_before = tree_of(repo, "main"), git(repo, "rev-parse", "main").strip()
    as_user(repo, "lead@example.com", "Lead")
    gates.sign_off(ws, data["id"], "approve", reviewed_sha=tip)
    gates.merge(ws, data["id"])
    merged = git(repo, "rev-parse", "main").strip()
    assert (merged == tip) is not target_moved
    # The user's diff settings must not leak into the patch that reverts.
    git(repo, "config", "diff.noprefix", "true")
    git(repo, "config", "color.ui", "always")
    rolled = gates.rollback(ws, data["id"])
    assert tree_of(repo, "main") == tree_before
    assert git(repo, "status", "--porcelain") == ""  # the checked-out target followed
    assert git(repo, "log", "-1", "--format=%B", "main").splitlines()[2] == \
        f"This reverts {main_before}..{merged}, all that the run brought to main."
    assert sorted(f["path"] for f in rolled["files"]) == ["app.py", "extra.txt", "feature.py"]
    event = ws.store.feed(run_id=data["id"])[0]
    assert (event["kind"], event["data"]["reverted"]) == ("rolled_back", f"{main_before}..{merged}")


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
    as_user(repo, "second@example.com")
    assert cli("gate", "approve", ran["id"]).stdout == (
        "gate: approved by lead@example.com, second@example.com\n"
        f"target main · reviewing {ran['commit_sha'][:12]} · 2 approval(s), 1 required\nready to merge\n")
    assert json.loads(cli("gate", "merge", ran["id"], "--json").stdout)["status"] == "merged"
    shown = json.loads(cli("show", ran["id"], "--json").stdout)
    assert shown["gate"]["status"] == "merged"


def test_merge_refused_on_a_blocking_violation(repo):
    commit_rules(repo)
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


def test_a_fix_commit_on_the_run_branch_clears_its_blocking_violation(repo):
    commit_rules(repo)
    data = run_prompt(repo, [Write("noisy.py", "print('hi')\n")])
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    fixed = commit_on_branch(repo, data["branch"], {"noisy.py": "import logging\nlogging.info('hi')\n"}, "fix")
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, data["id"])
    assert str(excinfo.value) == f"run {data['id']} cannot be merged: 0/1 approvals on {fixed[:12]}"
    gates.sign_off(ws, data["id"], "approve", reviewed_sha=fixed)
    assert gates.merge(ws, data["id"]).status == "merged"
    assert git(repo, "rev-parse", "main").strip() == fixed
    assert len(ws.store.violations(data["id"])) == 1  # the run's own check stays on record


def test_a_new_commit_with_a_forbidden_line_blocks_the_merge(repo):
    commit_rules(repo)
    data = run_prompt(repo, [Write("quiet.py", "VALUE = 1\n")])
    ws = Workspace(repo)
    assert ws.store.violations(data["id"]) == []
    as_user(repo, "lead@example.com")
    noisy = commit_on_branch(repo, data["branch"], {"quiet.py": "VALUE = 1\nprint(VALUE)\n"}, "debug")
    state = gates.sign_off(ws, data["id"], "approve", reviewed_sha=noisy)
    assert [(v["rule_id"], v["path"], v["line"], v["severity"]) for v in state.blocking] == \
        [("no-print", "quiet.py", 2, "error")]
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, data["id"])
    assert str(excinfo.value) == f"run {data['id']} cannot be merged: 1 blocking CLAUDE.md violation(s) (error)"


def test_gate_into_another_target_branch(repo):
    commit_policy(repo, '[gate]\ntarget = "release"\n')
    git(repo, "branch", "release")
    data = run_prompt(repo, [Write("feature.py", "1\n")])
    assert data["target_branch"] == "main"  # started on main ...
    ws = Workspace(repo)
    main_before, release_tree = git(repo, "rev-parse", "main").strip(), tree_of(repo, "release")
    as_user(repo, "lead@example.com")
    state = gates.sign_off(ws, data["id"], "approve")
    assert (state.target, state.label) == ("release", "approved by lead@example.com")
    gates.merge(ws, data["id"])  # ... gated into release
    assert git(repo, "rev-parse", "release").strip() == data["commit_sha"]
    assert git(repo, "rev-parse", "main").strip() == main_before
    assert ws.store.feed(run_id=data["id"])[0]["data"]["target"] == "release"
    gates.rollback(ws, data["id"])
    assert tree_of(repo, "release") == release_tree and git(repo, "rev-parse", "main").strip() == main_before


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


def test_a_run_in_a_repository_without_commits_names_the_missing_target(tmp_path):
    repo = make_repo(tmp_path / "empty")
    data = run_prompt(repo, [Write("first.py", "1\n")])
    assert data["status"] == "succeeded" and data["gate"]["status"] == "policy error"
    as_user(repo, "lead@example.com")
    message = ("the gate's target branch 'main' does not exist (a repository without commits has none yet); create "
               "it with a first commit, or set [gate] target in .promptrail.toml to an existing branch")
    for operation in (lambda: gates.sign_off(Workspace(repo), data["id"], "approve"),
                      lambda: gates.merge(Workspace(repo), data["id"])):
        with pytest.raises(PromptrailError) as excinfo:
            operation()
        assert str(excinfo.value) == message


def test_two_merges_at_once_deploy_the_run_once(repo, ran):
    as_user(repo, "lead@example.com")
    gates.sign_off(Workspace(repo), ran["id"], "approve")
    command = [sys.executable, "-m", "promptrail", "gate", "merge", ran["id"], "--repo", str(repo)]
    merges = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = sorted((merge.wait(timeout=60), merge.communicate()[1]) for merge in merges)
    refused = f"promptrail: error: run {ran['id']} is already merged into main\n"
    assert results == [(0, ""), (2, refused), (2, refused)]
    deployed = [e for e in queries.feed(Workspace(repo)) if e["kind"] == "deployed"]
    assert len(deployed) == 1 and deployed[0]["data"]["to"] == ran["commit_sha"]


def test_merge_and_rollback_messages_carry_no_terminal_controls(repo):
    ws, first, second = two_approved_runs(repo, "add b \x1b]0;pwned\x07\x1b[2J")
    for data in (first, second):
        gates.merge(ws, data["id"])  # the second is a merge commit
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == \
        f"Merge run {second['id']}: add b \\x1b]0;pwned\\x07\\x1b[2J"
    gates.rollback(ws, second["id"])
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == \
        f"Roll back run {second['id']}: add b \\x1b]0;pwned\\x07\\x1b[2J"


def test_a_direct_mode_runs_label_ignores_later_commits_on_the_users_branch(repo):
    data = run_prompt(repo, [Write("feature.py", "1\n")], mode="direct")
    assert data["status"] == "succeeded" and data["branch"] == "main"
    as_user(repo, "lead@example.com")
    assert gates.sign_off(Workspace(repo), data["id"], "approve").label == "approved by lead@example.com"
    (repo / "later.py").write_text("2\n")
    git(repo, "add", "later.py")
    git(repo, "commit", "-qm", "someone's later work")
    (row,) = queries.history(Workspace(repo))
    assert row["gate"]["status"] == "approved by lead@example.com"  # not "stale": the commit is not the run's


def test_a_direct_mode_run_has_nothing_to_merge_and_says_so(repo):
    """Direct mode commits on the user's branch: the commit is on the target already; approving it
    records the review, and merge says there is nothing to merge instead of a no-op "deployed"."""
    data = run_prompt(repo, [Write("feature.py", "1\n")], mode="direct")
    ws = Workspace(repo)
    sha = data["commit_sha"][:12]
    reason = f"its commit {sha} is already on main (direct mode commits to your branch): there is nothing to merge"
    state = gates.gate_state(ws, ws.store.get_run(data["id"]))
    assert (state.on_target, state.can_merge, state.merge_blockers[0]) == (True, False, reason)
    # Later commits on the user's branch are not the run's: the gate still judges the run's commit.
    (repo / "later.py").write_text("2\n")
    git(repo, "add", "later.py")
    git(repo, "commit", "-qm", "someone's later work")
    as_user(repo, "lead@example.com")
    approved = gates.sign_off(ws, data["id"], "approve")
    assert (approved.label, approved.sha) == ("approved by lead@example.com", data["commit_sha"])
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, data["id"])
    assert str(excinfo.value) == f"run {data['id']}: {reason} (an approval still records the review)"
    assert ws.store.query("SELECT kind FROM events WHERE kind = 'deployed'") == []


def test_a_merged_run_cannot_be_merged_again_and_shows_it(repo, ran):
    ws = Workspace(repo)
    as_user(repo, "lead@example.com")
    gates.sign_off(ws, ran["id"], "approve")
    gates.merge(ws, ran["id"])
    state = gates.gate_state(ws, ws.store.get_run(ran["id"]))
    assert (state.status, state.can_merge, state.merge_blockers[0]) == ("merged", False, "already merged into main")
    assert queries.run_json(ws, ran["id"])["gate"]["can_merge"] is False


def test_simulating_without_a_policy_says_where_checks_would_be(repo, ran):
    ws = Workspace(repo)
    asyncio.run(gates.simulate(ws, ran["id"]))
    assert ws.store.log(ran["id"])[-1]["text"] == \
        "no [[gate.check]] in the defaults (main has no .promptrail.toml); nothing to simulate"


def test_ctrl_c_of_a_simulation_ends_its_check_and_says_so_in_one_line(repo, ran):
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "slow"\nrun = "sleep 60"\n')
    simulation = subprocess.Popen([sys.executable, "-m", "promptrail", "gate", "simulate", ran["id"]], cwd=repo,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = Workspace(repo).store.log
    deadline = time.monotonic() + 20
    while not log(ran["id"])[-1]["text"].startswith("check 'slow' on "):
        assert time.monotonic() < deadline, "the check did not start"
        time.sleep(0.05)
    os.killpg(simulation.pid, signal.SIGINT)
    _, err = simulation.communicate(timeout=30)
    assert (simulation.returncode, err) == (130, "promptrail: error: the gate simulation was cancelled (Ctrl-C); its "
                                                 "running check was ended, and the checks that had finished are "
                                                 "recorded\n")
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline(pid) == b"sleep\x0060\x00"]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def test_a_direct_runs_sign_off_on_another_commit_names_the_runs_own(repo):
    data = run_prompt(repo, [Write("feature.py", "1\n")], mode="direct")
    (repo / "later.py").write_text("2\n")
    git(repo, "add", "later.py")
    git(repo, "commit", "-qm", "later")
    later = git(repo, "rev-parse", "HEAD").strip()
    as_user(repo, "lead@example.com")
    with pytest.raises(PromptrailError) as excinfo:
        gates.sign_off(Workspace(repo), data["id"], "approve", reviewed_sha=later)
    sha = data["commit_sha"][:12]
    assert str(excinfo.value) == (f"{later[:12]} is not run {data['id']}'s commit; a direct-mode run is reviewed at "
                                  f"its own commit {sha} (sign off with --sha {sha}, or without --sha)")
