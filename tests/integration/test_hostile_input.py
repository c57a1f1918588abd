"""Hostile input never breaks a run or the audit trail: file names that are not UTF-8 and lone
surrogates in an agent's JSON are stored escaped (the run still commits, `verify` stays ok),
impossible run ids are one clear line, absurd reported costs are unknown, prompts too long for
an argument reach the claude CLI whole, and escape sequences never reach a commit message raw.
Real git repositories, real SQLite, the replay agent and stand-in `claude` scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptrail import costs
from promptrail.audit.ledger import Verdict
from promptrail.audit.store import AuditStore, storable, storable_values
from promptrail.runs import RunRequest, start_run
from promptrail.workspace import Workspace
from tests.conftest import git
from tests.integration.test_claude_cli_agent import stand_in
from tests.integration.test_costs import USAGE, _run_with
from tests.integration.test_runs import Collect, run_prompt
from tests.support.transcripts import RECORDED_CWD, Write


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def log_texts(repo: Path, run_id: str) -> list[tuple[str, str]]:
    return [(entry["kind"], entry["text"]) for entry in Workspace(repo).store.log(run_id)]


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


# -- 1. text that UTF-8 cannot carry ----------------------------------------------------------------
def test_storable_escapes_what_utf8_cannot_carry():
    assert storable("plain") == "plain" and storable("naïve ✓") == "naïve ✓"
    assert storable("bad\udcffname.txt") == "bad\\xffname.txt"  # a byte git printed, kept by surrogateescape
    assert storable("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert storable_values({"k\udcff": ["a\ud800", ("b",), 1, None, {"n": 2.5}]}) == \
        {"k\\xff": ["a\\ud800", ["b"], 1, None, {"n": 2.5}]}


def test_a_file_name_that_is_not_utf8_is_committed_and_recorded(repo):
    data = run_prompt(repo, [Write("bad\udcffname.txt", "x\n"), Write("ok.txt", "fine\n")])
    assert (data["status"], data["error"]) == ("succeeded", None)
    assert [(f["path"], f["status"]) for f in data["files"]] == [("bad\\xffname.txt", "added"), ("ok.txt", "added")]
    assert git(repo, "rev-parse", data["branch"]).strip() == data["commit_sha"]
    assert git(repo, "notes", "--ref=refs/notes/promptrail", "list", data["commit_sha"]).strip()
    events = Workspace(repo).store.feed(run_id=data["id"])
    assert [e["kind"] for e in reversed(events)] == ["run.started", "run.committed", "run.checked", "run.succeeded"]
    assert events[2]["data"]["files"] == ["bad\\xffname.txt", "ok.txt"]
    assert worktrees(repo) == [f"worktree {repo}"]  # the run's worktree was removed once committed
    assert cli("verify", cwd=repo).stdout.startswith("ok: 4 feed events, hash chain intact; 1 finished run, ")


def test_every_text_the_store_writes_is_storable_and_verify_stays_ok(tmp_path):
    store = AuditStore(tmp_path / "audit.db")
    byte, lone = "bad\udcffname", "lone \ud800"  # shown as "bad\\xffname", "lone \\ud800"
    store.insert_run({"id": "abc000000001", "prompt": lone, "status": "queued", "started_at": "t0", "agent": "replay",
                      "model": byte, "mode": "isolated", "base_sha": None}, event_actor=lone)
    store.update_run("abc000000001", status="succeeded", error=lone, commit_sha="c" * 40)
    store.set_run_files("abc000000001", [{"path": byte, "old_path": lone, "status": "renamed", "additions": 1,
                                          "deletions": 0}])
    store.set_violations("abc000000001", [{"rule_id": "r", "path": byte, "line": 1, "message": lone}])
    store.append_log([("abc000000001", 1, "t1", "text", byte)])
    store.record_event("run.succeeded", run_id="abc000000001", actor=byte, data={lone: [byte]}, seal="run")
    run = store.get_run("abc000000001")
    assert (run["prompt"], run["model"], run["error"]) == ("lone \\ud800", "bad\\xffname", "lone \\ud800")
    assert [(f["path"], f["old_path"]) for f in store.run_files("abc000000001")] == [("bad\\xffname", "lone \\ud800")]
    assert [(v["path"], v["message"]) for v in store.violations("abc000000001")] == [("bad\\xffname", "lone \\ud800")]
    assert store.log("abc000000001")[0]["text"] == "bad\\xffname"
    assert [(e["actor"], e["data"].get("lone \\ud800")) for e in store.feed()] == \
        [("bad\\xffname", ["bad\\xffname"]), ("lone \\ud800", None)]
    assert store.verify() == Verdict(True, 2)
    store.close()


# -- 2. a replayed Write that UTF-8 cannot carry ----------------------------------------------------
def test_a_lone_surrogate_in_written_content_is_a_note_and_the_replay_goes_on(repo):
    data = run_prompt(repo, [Write("a.py", "lone \ud800 surrogate"), Write("b.py", "ok\n")])
    assert (data["status"], data["error"]) == ("succeeded", None)
    assert [f["path"] for f in data["files"]] == ["b.py"]
    assert ("stderr", f"replay: Write '{RECORDED_CWD}/a.py' not applied: the new content has a lone surrogate "
                      "(\\ud800) at character 6, which UTF-8 cannot carry") in log_texts(repo, data["id"])


# -- 4. run ids that cannot be ----------------------------------------------------------------------
def test_a_run_id_that_cannot_be_one_is_unknown_shortened_and_escaped(repo):
    result = cli("show", "a" * 100_000, cwd=repo)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("promptrail: error: unknown run id 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'… "
                             "(100,000 characters); `promptrail history` lists the runs\n")
    result = cli("log", "\x1b]0;pwned\x07\x1b[2J", cwd=repo)
    assert (result.returncode, result.stderr) == (
        2, "promptrail: error: unknown run id '\\x1b]0;pwned\\x07\\x1b[2J'; `promptrail history` lists the runs\n")
    assert cli("diff", "12%", cwd=repo).stderr == \
        "promptrail: error: unknown run id '12%'; `promptrail history` lists the runs\n"


def test_a_run_id_prefix_in_capitals_still_resolves(repo):
    data = run_prompt(repo, [Write("x.py", "1\n")])
    assert Workspace(repo).store.resolve_run_id(data["id"][:6].upper()) == data["id"]


# -- 5. absurd reported costs ---------------------------------------------------------------------
@pytest.mark.parametrize("reported, shown", [(-5.0, "-5 dollars, which is negative"),
                                             (float("nan"), "nan, which is not a number of dollars"),
                                             (float("inf"), "inf, which is not a number of dollars")])
def test_a_negative_or_non_finite_reported_cost_is_unknown_and_the_computed_one_kept(repo, tmp_path, reported, shown):
    # USAGE costs $0.45 at claude-sonnet-4-5's prices. The transcript says NaN or Infinity: not JSON,
    # but Python's reader (and a careless agent) accepts it.
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=reported, usage=USAGE)
    assert (data["status"], data["cost_reported_usd"], data["cost_computed_usd"]) == ("succeeded", None, 0.45)
    assert (data["cost_usd"], data["cost_source"], data["cost_mismatch"]) == (0.45, "computed", False)
    assert ("warning", f"the agent reported a cost of {shown}: it is recorded as unknown and the cost computed "
                       "from its tokens ($0.4500) is kept") in log_texts(repo, data["id"])
    assert ("status", "agent finished · 1 turns") in log_texts(repo, data["id"])
    assert costs.spent_today(Workspace(repo).store) == 0.45  # the budgets see the computed cost


def test_a_huge_reported_cost_is_flagged_as_a_mismatch(repo, tmp_path):
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=1e308, usage=USAGE)
    assert (data["cost_reported_usd"], data["cost_computed_usd"], data["cost_mismatch"]) == (1e308, 0.45, True)


# -- 6. a prompt too long for one argument ----------------------------------------------------------
LONG_PROMPT = "Rename every helper. " + "é" * 70_000 + " END"  # 140,025 bytes: over Linux's 131,072


async def test_a_prompt_too_long_for_an_argument_goes_to_the_cli_on_stdin(repo, tmp_path):
    claude = stand_in(tmp_path, """
        prompt = sys.stdin.read()
        with open("seen.json", "w") as f:
            json.dump({"argv": sys.argv[1:], "prompt": prompt}, f)
        open("done.txt", "w").write(str(len(prompt.encode())))
        emit(INIT)
        emit(result())
    """)
    run = await start_run(Workspace(repo), RunRequest(prompt=LONG_PROMPT, agent="claude-cli", claude_path=claude),
                          Collect())
    data = await run.wait()
    assert (data["status"], data["error"]) == ("succeeded", None)
    assert git(repo, "show", f"{data['commit_sha']}:done.txt") == "140025"
    seen = json.loads(git(repo, "show", f"{data['commit_sha']}:seen.json"))
    assert seen["prompt"] == LONG_PROMPT
    assert seen["argv"] == ["-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"]
    assert worktrees(repo) == [f"worktree {repo}"]


# -- 7. escape sequences in a prompt --------------------------------------------------------------
def test_a_commit_message_never_carries_terminal_control_characters(repo):
    prompt = "fix \x1b]0;pwned\x07\x1b[2J it\n\nbody\tline \x1b[31mred\r\nnext \x9b1m"
    data = run_prompt(repo, [Write("x.py", "1\n")], prompt=prompt)
    assert git(repo, "log", "-1", "--format=%B", data["commit_sha"]) == (
        "fix \\x1b]0;pwned\\x07\\x1b[2J it\n\n"
        "fix \\x1b]0;pwned\\x07\\x1b[2J it\n\nbody\tline \\x1b[31mred\\r\nnext \\x9b1m\n\n"
        f"Agent: replayed session\n\nPromptrail-Run: {data['id']}\n\n")
    assert Workspace(repo).store.get_run(data["id"])["prompt"] == prompt.strip()  # the record keeps it exact
