"""Tamper evidence end to end: a feed that lost rows (or its whole database) refuses the next
write instead of starting a new chain; runs, logs, changed files, violations and sign-offs
altered behind the feed's back fail `promptrail verify`; an audit store that cannot be written
is one clear error. Real git repositories, real SQLite, runs acted out by the replay agent, the
real `promptrail` executable."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from promptrail import gates
from promptrail.audit import ledger
from promptrail.audit.ledger import Verdict
from promptrail.audit.store import AuditStore
from promptrail.errors import PromptrailError
from promptrail.workspace import Workspace
from tests.conftest import git, make_repo
from tests.integration.test_gates import as_user, commit_policy
from tests.integration.test_runs import run_prompt
from tests.support.transcripts import Edit, Say, Write, write_transcript


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def db_path(repo: Path) -> Path:
    return repo / ".git" / "promptrail" / "audit.db"


def anchor_path(repo: Path) -> Path:
    return repo / ".git" / "promptrail" / "feed-head"


def tamper(repo: Path, sql: str, params: list | tuple = ()) -> None:
    conn = sqlite3.connect(db_path(repo))
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def scalar(repo: Path, sql: str, params: list | tuple = ()):
    conn = sqlite3.connect(db_path(repo))
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def delete_database(repo: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path(repo)}{suffix}").unlink(missing_ok=True)


#: What `verify --json` adds to the verdict: where the problem is and what the cross-check counted.
VERIFY_DETAIL = ("table", "runs_checked", "log_entries_checked", "run_files_checked", "violations_checked",
                 "signoffs_checked")


def verify_json(repo: Path) -> tuple[int, dict]:
    """`verify --json`'s exit code and verdict, without ``VERIFY_DETAIL`` (a test of the counts reads them)."""
    result = cli("verify", "--json", cwd=repo)
    verdict = json.loads(result.stdout)
    assert set(VERIFY_DETAIL) <= set(verdict)
    return result.returncode, {key: value for key, value in verdict.items() if key not in VERIFY_DETAIL}


def refusal(repo: Path, detail: str) -> str:
    return (f"promptrail: error: refusing to write to the audit store {db_path(repo)}: {detail}; nothing was "
            f"written. `promptrail verify` explains it; to start a new feed on purpose, move {anchor_path(repo)} "
            "aside first\n")


@pytest.fixture
def transcript(tmp_path) -> Path:
    return write_transcript(tmp_path / "t.jsonl", [Say("ok"), Write("hello.py", "a = 1\n"),
                                                  Edit("app.py", "return 1", "return 2")])


@pytest.fixture
def ran(repo, transcript) -> dict:
    """One finished run through the CLI: feed events 1 run.started … 4 run.succeeded."""
    result = cli("run", "add hello", "--transcript", str(transcript), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def branches(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname)")


# -- 1. a feed that lost rows refuses the next write ----------------------------------------------
def test_deleted_database_refuses_the_next_run_and_writes_nothing(repo, ran, transcript):
    anchor_before = anchor_path(repo).read_text()
    refs_before = branches(repo)
    delete_database(repo)
    result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
    assert result.returncode == 2
    assert result.stderr == refusal(repo, f"it holds 0 feed events but its anchor {anchor_path(repo)} records 4 "
                                          "(events were deleted or the database was replaced)")
    assert anchor_path(repo).read_text() == anchor_before  # the only record of the lost feed survives
    assert scalar(repo, "SELECT COUNT(*) FROM runs") == 0
    assert scalar(repo, "SELECT COUNT(*) FROM events") == 0
    assert scalar(repo, "SELECT COUNT(*) FROM log_entries") == 0
    assert branches(repo) == refs_before  # the agent never started: no branch, no worktree
    assert [p.name for p in anchor_path(repo).parent.iterdir() if p.name.endswith(".tmp")] == []
    # A second attempt is refused the same way (the refusal did not "repair" anything).
    assert cli("run", "again", "--transcript", str(transcript), cwd=repo).stderr == result.stderr
    assert verify_json(repo) == (1, {"ok": False, "checked": 0, "first_bad_seq": 1, "reason":
                                     "row 1: missing; the feed had 4 rows (rows were deleted from its end)"})


def test_starting_over_on_purpose_after_moving_the_anchor_aside(repo, ran, transcript):
    delete_database(repo)
    anchor_path(repo).rename(anchor_path(repo).with_name("feed-head.lost"))
    result = cli("run", "again", "--transcript", str(transcript), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert anchor_path(repo).read_text().startswith("4 ")  # a new feed: run.started … run.succeeded
    assert cli("verify", cwd=repo).stdout.startswith("ok: 4 feed events, hash chain intact; 1 finished run, ")


def test_events_cut_from_the_end_refuse_the_next_run(repo, ran, transcript):
    tamper(repo, "DELETE FROM events WHERE seq > 2")
    result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
    assert result.returncode == 2
    assert result.stderr == refusal(repo, f"it holds 2 feed events but its anchor {anchor_path(repo)} records 4 "
                                          "(events were deleted or the database was replaced)")
    assert scalar(repo, "SELECT COUNT(*) FROM runs") == 1
    assert scalar(repo, "SELECT MAX(seq) FROM events") == 2
    assert anchor_path(repo).read_text().startswith("4 ")
    assert verify_json(repo)[1]["reason"] == "row 3: missing; the feed had 4 rows (rows were deleted from its end)"


def test_a_sign_off_is_refused_too_and_leaves_no_row(repo, ran):
    tamper(repo, "DELETE FROM events WHERE seq = 4")
    as_user(repo, "lead@example.com", "Lead")
    with pytest.raises(PromptrailError) as excinfo:
        gates.sign_off(Workspace(repo), ran["id"], "approve")
    assert f"promptrail: error: {excinfo.value}\n" == refusal(
        repo, f"it holds 3 feed events but its anchor {anchor_path(repo)} records 4 "
              "(events were deleted or the database was replaced)")
    assert scalar(repo, "SELECT COUNT(*) FROM signoffs") == 0
    assert scalar(repo, "SELECT COUNT(*) FROM events") == 3


def test_database_swapped_for_another_feed_is_refused(repo, ran, tmp_path, transcript):
    other = make_repo(tmp_path / "other", {"README.md": "x\n", "app.py": "def main():\n    return 1\n"})
    for _ in range(2):
        assert cli("run", "p", "--transcript", str(transcript), cwd=other).returncode == 0
    delete_database(repo)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db_path(other)}{suffix}").exists():
            shutil.copy(f"{db_path(other)}{suffix}", f"{db_path(repo)}{suffix}")
    result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
    assert result.returncode == 2
    assert result.stderr == refusal(repo, f"its feed event 4 is not the one its anchor {anchor_path(repo)} records "
                                          "(the feed was rewritten or the database replaced)")
    assert verify_json(repo)[1]["reason"] == "row 4: does not match the recorded head of the feed"


def test_unreadable_anchor_refuses_writes_and_fails_verify(repo, ran, transcript):
    anchor_path(repo).write_text("garbage\n")
    result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
    assert result.returncode == 2
    assert result.stderr == refusal(repo, f"the feed's anchor {anchor_path(repo)} is not a '<seq> <hash>' line")
    assert anchor_path(repo).read_text() == "garbage\n"
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": None, "reason":
                                     f"the feed's anchor {anchor_path(repo)} is not a '<seq> <hash>' line"})


# -- 2. runs, logs and sign-offs are sealed into the feed --------------------------------------------
def test_edited_prompt_fails_verify(repo, ran):
    tamper(repo, "UPDATE runs SET prompt = 'something harmless' WHERE id = ?", [ran["id"]])
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": 1, "reason":
                                     f"run {ran['id']}: prompt differs from the sealed run.started event"})
    text = cli("verify", cwd=repo)
    assert (text.returncode, text.stdout) == (1, f"BROKEN: run {ran['id']}: prompt differs from the sealed "
                                                 "run.started event (the hash chain of 4 feed events is intact)\n")


def test_edited_cost_fails_verify(repo, ran):
    tamper(repo, "UPDATE runs SET cost_usd = 0.0001 WHERE id = ?", [ran["id"]])
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": 4, "reason":
                                     f"run {ran['id']}: cost_usd differs from the sealed run.succeeded event "
                                     "(sealed 0.0123, found 0.0001)"})


def test_edited_reported_cost_and_tokens_fail_verify(repo, ran):
    tamper(repo, "UPDATE runs SET tokens_output = 15 WHERE id = ?", [ran["id"]])
    assert verify_json(repo)[1]["reason"] == (f"run {ran['id']}: tokens_output differs from the sealed "
                                              "run.succeeded event (sealed 150, found 15)")
    tamper(repo, "UPDATE runs SET tokens_output = 150, cost_reported_usd = NULL WHERE id = ?", [ran["id"]])
    assert verify_json(repo)[1]["reason"] == (f"run {ran['id']}: cost_reported_usd differs from the sealed "
                                              "run.succeeded event (sealed 0.0123, found null)")


def test_edited_status_fails_verify(repo, ran):
    tamper(repo, "UPDATE runs SET status = 'failed' WHERE id = ?", [ran["id"]])
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": 4, "reason":
                                     f"run {ran['id']}: status differs from the sealed run.succeeded event "
                                     "(sealed \"succeeded\", found \"failed\")"})


def test_gate_status_is_not_sealed(repo, ran):
    tamper(repo, "UPDATE runs SET gate_status = 'approved by someone' WHERE id = ?", [ran["id"]])
    assert verify_json(repo)[0] == 0


def test_deleted_log_lines_fail_verify(repo, ran):
    count = scalar(repo, "SELECT COUNT(*) FROM log_entries WHERE run_id = ?", [ran["id"]])
    tamper(repo, "DELETE FROM log_entries WHERE run_id = ? AND seq IN (2, 3)", [ran["id"]])
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": 4, "reason":
                                     f"run {ran['id']}: its log was altered (sealed {count} entries, "
                                     f"found {count - 2})"})


def test_edited_log_line_fails_verify(repo, ran):
    count = scalar(repo, "SELECT COUNT(*) FROM log_entries WHERE run_id = ?", [ran["id"]])
    tamper(repo, "UPDATE log_entries SET text = 'nothing to see' WHERE run_id = ? AND seq = 2", [ran["id"]])
    assert verify_json(repo)[1]["reason"] == (f"run {ran['id']}: its log was altered (sealed {count} entries, "
                                              "found as many with different content)")


def test_deleted_run_row_fails_verify(repo, ran):
    tamper(repo, "DELETE FROM runs WHERE id = ?", [ran["id"]])
    assert verify_json(repo)[1] == {"ok": False, "checked": 4, "first_bad_seq": 1, "reason":
                                    f"run {ran['id']}: deleted from the runs table (announced by event 1)"}


def test_forged_run_row_fails_verify(repo, ran):
    tamper(repo, "INSERT INTO runs (id, prompt, status) VALUES ('f0f0f0f0f0f0', 'forged', 'succeeded')")
    assert verify_json(repo)[1] == {"ok": False, "checked": 4, "first_bad_seq": None, "reason":
                                    "run f0f0f0f0f0f0: not in the feed (no run.started event)"}


@pytest.fixture
def approved(repo, ran) -> dict:
    as_user(repo, "lead@example.com", "Lead")
    gates.sign_off(Workspace(repo), ran["id"], "approve", comment="looks right")
    return ran


def test_deleted_signoff_fails_verify(repo, approved):
    assert verify_json(repo)[0] == 0
    tamper(repo, "DELETE FROM signoffs")
    assert verify_json(repo) == (1, {"ok": False, "checked": 5, "first_bad_seq": 5, "reason":
                                     f"sign-off 1 of run {approved['id']}: deleted (sealed in event 5)"})
    text = cli("verify", cwd=repo)
    assert (text.returncode, text.stdout) == (1, f"BROKEN: sign-off 1 of run {approved['id']}: deleted (sealed in "
                                                 "event 5) (the hash chain of 5 feed events is intact)\n")


def test_forged_signoff_fails_verify(repo, approved):
    tamper(repo, "INSERT INTO signoffs (run_id, commit_sha, actor_name, actor_email, decision, ts) "
                 "VALUES (?, ?, 'Mallory', 'mallory@example.com', 'approve', '2030-01-01T00:00:00.000Z')",
           [approved["id"], approved["commit_sha"]])
    assert verify_json(repo)[1]["reason"] == f"sign-off 2 of run {approved['id']}: not in the feed"


def test_edited_signoff_fails_verify(repo, approved):
    tamper(repo, "UPDATE signoffs SET decision = 'reject'")
    assert verify_json(repo)[1] == {"ok": False, "checked": 5, "first_bad_seq": 5, "reason":
                                    f"sign-off 1 of run {approved['id']}: decision differs from the sealed "
                                    "gate.approved event (sealed \"approve\", found \"reject\")"}


# -- 2b. a run's changed files and CLAUDE.md violations are sealed too ------------------------------
RULES = """# Rules

```promptrail
[[rule]]
id = "no-print"
paths = ["**/*.py"]
forbid = '\\bprint\\('
message = "Use logging."
severity = "error"

[[rule]]
id = "no-todo"
paths = ["**/*.py"]
forbid = 'TODO'
message = "File an issue instead."
severity = "warning"
```
"""


@pytest.fixture
def checked(tmp_path) -> dict:
    """A run whose commit breaks the rules: feed events 1 run.started, 2 run.committed (seals its
    2 files), 3 run.checked (seals its 3 violations: 2 errors, 1 warning), 4 run.succeeded."""
    repo = make_repo(tmp_path / "ruled", {"CLAUDE.md": RULES, "app.py": "def main():\n    return 1\n"})
    transcript = write_transcript(tmp_path / "ruled.jsonl", [
        Write("tool.py", "print(1)\nprint(2)\n# TODO: log instead\n"), Edit("app.py", "return 1", "return 2")])
    result = cli("run", "add a tool", "--transcript", str(transcript), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert [v["severity"] for v in run["violations"]] == ["error", "error", "warning"]
    assert [f["path"] for f in run["files"]] == ["app.py", "tool.py"]
    assert [kind for (kind,) in sqlite3.connect(db_path(repo)).execute("SELECT kind FROM events ORDER BY seq")] == [
        "run.started", "run.committed", "run.checked", "run.succeeded"]
    return {**run, "repo": repo}


def verify_table(repo: Path) -> str | None:
    return json.loads(cli("verify", "--json", cwd=repo).stdout)["table"]


FIRST_VIOLATION = "(SELECT MIN(id) FROM violations)"


@pytest.mark.parametrize("sql, table, seq, detail", [
    ("DELETE FROM violations", "violations", 3,
     "violations differ from the sealed run.checked event (sealed 3 violations, found 0)"),
    (f"DELETE FROM violations WHERE id = {FIRST_VIOLATION}", "violations", 3,
     "violations differ from the sealed run.checked event (sealed 3 violations, found 2)"),
    (f"UPDATE violations SET severity = 'hint' WHERE id = {FIRST_VIOLATION}", "violations", 3,
     "violations differ from the sealed run.checked event (sealed 3 violations, found as many with different "
     "content)"),
    ("INSERT INTO violations (run_id, rule_id, path, line, start_col, end_col, severity, message, source) "
     "SELECT id, 'forged', 'app.py', 1, 0, 1, 'warning', 'forged', 'CLAUDE.md' FROM runs", "violations", 3,
     "violations differ from the sealed run.checked event (sealed 3 violations, found 4)"),
    ("UPDATE run_files SET path = 'evil.txt' WHERE path = 'tool.py'", "run_files", 2,
     "changed files differ from the sealed run.committed event (sealed 2 files, found as many with different "
     "content)"),
    ("UPDATE run_files SET additions = 999 WHERE path = 'tool.py'", "run_files", 2,
     "changed files differ from the sealed run.committed event (sealed 2 files, found as many with different "
     "content)"),
    ("DELETE FROM run_files WHERE path = 'app.py'", "run_files", 2,
     "changed files differ from the sealed run.committed event (sealed 2 files, found 1)"),
], ids=["violations-all-deleted", "violation-deleted", "severity-altered", "violation-forged", "file-path-altered",
        "file-additions-altered", "file-deleted"])
def test_altered_files_and_violations_fail_verify(checked, sql, table, seq, detail):
    repo = checked["repo"]
    tamper(repo, sql)
    reason = f"run {checked['id']}: its {detail}"
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": seq, "reason": reason})
    assert verify_table(repo) == table
    text = cli("verify", cwd=repo)
    assert (text.returncode, text.stdout) == (1, f"BROKEN: {reason} (the hash chain of 4 feed events is intact)\n")


def test_deleting_a_blocking_violation_cannot_open_the_gate_unnoticed(checked):
    """The tester's case: with the run's violations deleted, the gate would merge it; verify says so."""
    repo = checked["repo"]
    ws = Workspace(repo)
    assert gates.gate_state(ws, ws.store.get_run(checked["id"])).blocking  # 2 errors block it
    ws.close()
    tamper(repo, "DELETE FROM violations WHERE run_id = ?", [checked["id"]])
    assert verify_json(repo)[0] == 1


def test_files_forged_for_a_run_that_committed_nothing_fail_verify(repo):
    """A run with no commit has no run.committed or run.checked: its final event seals "none"."""
    nothing = run_prompt(repo, [Say("nothing to do")], prompt="look around")
    assert nothing["status"] == "no_changes"
    tamper(repo, "INSERT INTO run_files (run_id, path, status, additions, deletions) VALUES (?, 'x.py', 'A', 1, 0)",
           [nothing["id"]])
    assert verify_json(repo) == (1, {"ok": False, "checked": 2, "first_bad_seq": 2, "reason":
                                     f"run {nothing['id']}: its changed files differ from the sealed run.no_changes "
                                     "event (sealed 0 files, found 1)"})
    tamper(repo, "DELETE FROM run_files")
    tamper(repo, "INSERT INTO violations (run_id, rule_id, path, line, severity, message, source) "
                 "VALUES (?, 'forged', 'x.py', 1, 'error', 'forged', 'CLAUDE.md')", [nothing["id"]])
    assert verify_json(repo)[1]["reason"] == (f"run {nothing['id']}: its violations differ from the sealed "
                                              "run.no_changes event (sealed 0 violations, found 1)")


def review_like(store: AuditStore, run_id: str, findings: list[tuple[str, int, str]]) -> None:
    """What `promptrail review` stores (standards/review.py): the findings replace the previous
    review's, beside the rule check's, with a run.reviewed event in the same transaction."""
    rows = [{"rule_id": rule, "path": "tool.py", "line": line, "start_col": 0, "end_col": 0, "severity": severity,
             "message": "judged", "source": "CLAUDE.md (review)", "rule_file": "CLAUDE.md", "rule_line": 1}
            for rule, line, severity in findings]
    store.add_violations(run_id, rows, replacing_source="CLAUDE.md (review)",
                         event=("run.reviewed", "Dev", {"total": len(rows)}))


def test_violations_added_later_by_a_simulation_and_a_review_verify(checked):
    """An intact store with violations verifies, and so do the legitimate later changes: a gate
    simulation (checks, log lines) and reviews (which add, then replace, violations)."""
    repo = checked["repo"]
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "exists"\nrun = "test -f tool.py && echo fine"\n')
    assert verify_json(repo) == (0, {"ok": True, "checked": 4, "first_bad_seq": None, "reason": None})
    ws = Workspace(repo)
    assert asyncio.run(gates.simulate(ws, checked["id"])).checks[0]["status"] == "passed"
    review_like(ws.store, checked["id"], [("Log, never print.", 1, "warning"), ("Short names.", 2, "info")])
    review_like(ws.store, checked["id"], [("Log, never print.", 1, "error")])  # a second review replaces it
    verdict = ws.store.verify()
    assert (verdict.ok, verdict.checked, verdict.violations_checked, verdict.run_files_checked) == (True, 7, 4, 2)
    assert verify_json(repo)[0] == 0
    # From now on the newest seal (the second review's) is the one the rows must match.
    tamper(repo, "DELETE FROM violations WHERE source = 'CLAUDE.md (review)'")
    assert verify_json(repo)[1] == {"ok": False, "checked": 7, "first_bad_seq": 7, "reason":
                                    f"run {checked['id']}: its violations differ from the sealed run.reviewed event "
                                    "(sealed 4 violations, found 3)"}
    ws.close()


def test_untouched_repository_verifies(repo):
    """Several runs of different outcomes, a gate simulation (which appends to a finished run's
    log), an approval, a merge and a rollback (a run inserted already finished): all sealed, all ok."""
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "exists"\nrun = "test -f feature.py && echo fine"\n')
    feature = run_prompt(repo, [Say("adding"), Write("feature.py", "def feature():\n    return 1\n")],
                         prompt="add feature")
    nothing = run_prompt(repo, [Say("nothing to do")], prompt="look around")
    failed = run_prompt(repo, [Write("broken.py", "x\n")], prompt="break it", is_error=True)
    direct = run_prompt(repo, [Edit("app.py", "return 1", "return 3")], prompt="edit directly", mode="direct")
    assert [r["status"] for r in (feature, nothing, failed, direct)] == ["succeeded", "no_changes", "failed",
                                                                          "succeeded"]
    ws = Workspace(repo)
    assert asyncio.run(gates.simulate(ws, feature["id"])).checks[0]["status"] == "passed"
    as_user(repo, "lead@example.com", "Lead")
    gates.sign_off(ws, feature["id"], "approve", comment="ship it")
    gates.sign_off(ws, failed["id"], "reject")
    gates.merge(ws, feature["id"])
    rolled = gates.rollback(ws, feature["id"])
    assert rolled["status"] == "succeeded"
    ws.close()

    events = scalar(repo, "SELECT COUNT(*) FROM events")
    # Each run's newest log seal covers its whole log: the simulation's gate.simulated sealed the
    # check's output appended to the feature run's log.
    newest = {run_id: json.loads(d)["seal"]["log"]["count"] for run_id, d in sqlite3.connect(db_path(repo)).execute(
        "SELECT run_id, data FROM events WHERE instr(data, '\"log\":{') ORDER BY seq")}
    sealed_lines = sum(newest.values())
    assert sealed_lines == scalar(repo, "SELECT COUNT(*) FROM log_entries")
    assert verify_json(repo) == (0, {"ok": True, "checked": events, "first_bad_seq": None, "reason": None})
    counts = json.loads(cli("verify", "--json", cwd=repo).stdout)
    assert {key: counts[key] for key in VERIFY_DETAIL} == {
        "table": None, "runs_checked": 5, "log_entries_checked": sealed_lines, "signoffs_checked": 2,
        # feature.py, broken.py, the direct run's file, and the rollback's revert of feature.py
        "run_files_checked": 4, "violations_checked": 0}
    text = cli("verify", cwd=repo)
    assert (text.returncode, text.stdout) == (
        0, f"ok: {events} feed events, hash chain intact; 5 finished runs, {sealed_lines} log lines, "
           "4 changed files, 0 violations and 2 sign-offs match it\n")
    # The rollback run is sealed by its run.started event: altering it is noticed too.
    tamper(repo, "UPDATE runs SET commit_sha = ? WHERE id = ?", [feature["commit_sha"], rolled["id"]])
    assert verify_json(repo)[1]["reason"] == (
        f"run {rolled['id']}: commit_sha differs from the sealed run.started event "
        f"(sealed \"{rolled['commit_sha']}\", found \"{feature['commit_sha']}\")")


def test_feed_written_before_seals_still_verifies(tmp_path):
    """Events recorded before this change carry no seals: their runs are compared as far as the
    events go (prompt; a sign-off's run, SHA, decision and comment), never reported as broken."""
    store = AuditStore(tmp_path / "audit.db")
    store.insert_run({"id": "0ld000000001", "prompt": "old run", "status": "queued", "started_at": "t0",
                      "agent": "replay", "model": None, "mode": "isolated", "base_sha": None}, event_actor="Dev")
    store.update_run("0ld000000001", status="succeeded", commit_sha="c" * 40, cost_usd=0.5)
    store.record_event("run.succeeded", run_id="0ld000000001", actor="Dev", data={"commit": "c" * 40})
    # An old version wrote the row and then an unsealed event.
    store.conn.execute("INSERT INTO signoffs (run_id, commit_sha, actor_name, actor_email, decision, comment, ts) "
                       "VALUES (?, ?, 'Lead', 'lead@example.com', 'approve', NULL, 't1')", ["0ld000000001", "c" * 40])
    store.record_event("gate.approved", run_id="0ld000000001", actor="Lead", data={"sha": "c" * 40, "comment": None})
    assert store.verify() == Verdict(True, 3)
    store.conn.execute("UPDATE runs SET cost_usd = 0.01")  # unsealed in an old feed: not noticed
    assert store.verify().ok
    store.conn.execute("DELETE FROM signoffs")
    assert store.verify().reason == "the sign-off of run 0ld000000001 recorded by event 3 (gate.approved) was deleted"
    store.close()


def test_files_and_violations_of_an_old_feed_still_verify(tmp_path):
    """Before files and violations were sealed, run.committed and run.checked carried no seal:
    such rows are never reported; a later review (new) seals all of the run's violations."""
    store = AuditStore(tmp_path / "audit.db")
    run_id = "0ld000000002"
    store.insert_run({"id": run_id, "prompt": "old run", "status": "queued", "started_at": "t0", "agent": "replay",
                      "model": None, "mode": "isolated", "base_sha": None}, event_actor="Dev")
    store.set_run_files(run_id, [{"path": "a.py", "old_path": None, "status": "A", "additions": 1, "deletions": 0}])
    store.set_violations(run_id, [{"rule_id": "r", "path": "a.py", "line": 1, "severity": "error", "message": "m",
                                  "source": "CLAUDE.md"}], source="CLAUDE.md")
    with store._write() as conn:  # as an old version appended them: no seal
        for kind in ("run.committed", "run.checked", "run.succeeded"):
            store._append_event(conn, ts="t1", kind=kind, run_id=run_id, actor="Dev", data={"commit": "c" * 40})
    assert store.verify() == Verdict(True, 4)
    store.conn.execute("UPDATE run_files SET path = 'evil.py'")
    store.conn.execute("UPDATE violations SET severity = 'hint'")  # unsealed in an old feed: not noticed
    assert store.verify().ok
    review_like(store, run_id, [("Short names.", 2, "info")])
    assert store.verify() == Verdict(True, 5)
    store.conn.execute("DELETE FROM violations WHERE source = 'CLAUDE.md'")
    verdict = store.verify()
    assert (verdict.reason, verdict.table) == (f"run {run_id}: its violations differ from the sealed run.reviewed "
                                               "event (sealed 2 violations, found 1)", "violations")
    store.close()


def test_a_file_and_violation_seal_hashes_the_rows_canonically(tmp_path):
    """The digest is sha256 over each row's sealed columns as compact JSON, one per line."""
    store = AuditStore(tmp_path / "audit.db")
    store.set_run_files("r1", [{"path": "b.py", "old_path": None, "status": "M", "additions": 2, "deletions": 1},
                               {"path": "a.py", "old_path": "z.py", "status": "R", "additions": 0, "deletions": 0}])
    expected = '["a.py","z.py","R",0,0]\n["b.py",null,"M",2,1]\n'
    assert ledger.seal_files(store.conn, "r1") == {"count": 2, "sha256": hashlib.sha256(expected.encode()).hexdigest()}
    assert ledger.seal_violations(store.conn, "r1") == {"count": 0, "sha256": hashlib.sha256().hexdigest()}
    store.close()


# -- 3. an audit store that cannot be written ------------------------------------------------------
def test_database_that_cannot_be_opened_is_one_clear_error(repo):
    """A folder where the database file should be: SQLite cannot open it, even as root."""
    db_path(repo).parent.mkdir(parents=True, exist_ok=True)
    db_path(repo).mkdir()
    result = cli("history", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == (f"promptrail: error: the audit store {db_path(repo)} cannot be written "
                             "(unable to open database file); check its permissions\n")
    with pytest.raises(PromptrailError, match="^the audit store .* cannot be written"):
        AuditStore(db_path(repo))


def _make_read_only(path: Path):
    """chmod 0444 stops writes for a normal user but not for root (tests may run as root): there
    the file is made immutable with `chattr +i`, which binds root too. Returns the undo."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return lambda: path.chmod(0o644)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root without a working `chattr +i`: cannot make the database read-only")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_database_refuses_a_run_with_one_clear_error(repo, ran, transcript):
    undo = _make_read_only(db_path(repo))
    try:
        result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
        assert result.returncode == 2
        assert result.stderr == (f"promptrail: error: the audit store {db_path(repo)} cannot be written "
                                 "(attempt to write a readonly database); check its permissions\n")
        assert cli("verify", cwd=repo).returncode == 0  # reading still works
        assert len(json.loads(cli("history", "--json", cwd=repo).stdout)) == 1
    finally:
        undo()
    assert anchor_path(repo).read_text().startswith("4 ")


# -- 4. a damaged database file --------------------------------------------------------------------
def damaged(repo: Path, detail: str) -> str:
    return (f"the audit store {db_path(repo)} is damaged ({detail}); restore it from a backup, or move it and "
            f"{anchor_path(repo)} aside to start a new audit trail")


def damage_table(repo: Path, table: str) -> int:
    """Overwrite the first page of ``table`` (or index) with bytes no SQLite page starts with, as a
    disk (or a hand) that wrote garbage into the middle of the file would. Returns the page number."""
    conn = sqlite3.connect(db_path(repo))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
    conn.close()
    with open(db_path(repo), "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)
    return root


def test_a_file_that_is_not_a_database_is_one_clear_error_everywhere(repo, ran, transcript):
    refs_before = branches(repo)
    delete_database(repo)
    db_path(repo).write_bytes(b"not an SQLite database, whatever it once was " * 100)
    expected = f"promptrail: error: {damaged(repo, 'file is not a database')}\n"
    for args in (["history"], ["verify"], ["show", ran["id"]], ["run", "again", "--transcript", str(transcript)]):
        result = cli(*args, cwd=repo)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", expected), args
    assert branches(repo) == refs_before
    with pytest.raises(PromptrailError, match="is damaged"):
        AuditStore(db_path(repo))


def test_a_damaged_table_refuses_a_run_before_its_agent_starts(repo, ran, transcript):
    # run_files is written only after the commit: found there, the damage used to stop the run with
    # its commit made and nothing recorded.
    refs_before = branches(repo)
    damage_table(repo, "run_files")
    result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"promptrail: error: {damaged(repo, 'database disk image is malformed')}\n"
    assert branches(repo) == refs_before
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert scalar(repo, "SELECT COUNT(*) FROM runs") == 1
    # Damage is tamper evidence: verify reports it (exit 1), after the chain it could still check.
    result = cli("verify", cwd=repo)
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (f"BROKEN: {damaged(repo, 'database disk image is malformed')} "
                             "(the hash chain of 4 feed events is intact)\n")
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": None,
                                     "reason": damaged(repo, "database disk image is malformed")})
    result = cli("show", ran["id"], cwd=repo)  # reads run_files
    assert (result.returncode, result.stderr) == (
        2, f"promptrail: error: {damaged(repo, 'database disk image is malformed')}\n")


def test_a_damaged_feed_is_reported_by_verify_where_the_chain_breaks(repo, ran):
    damage_table(repo, "events")
    result = cli("verify", cwd=repo)
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (f"BROKEN at event 1: {damaged(repo, 'database disk image is malformed')} "
                             "(0 events before it are intact)\n")
    assert cli("history", cwd=repo).returncode == 0  # the runs table is intact
    result = cli("feed", cwd=repo)
    assert (result.returncode, result.stderr) == (
        2, f"promptrail: error: {damaged(repo, 'database disk image is malformed')}\n")


def test_a_damaged_index_is_named_by_its_page(repo, ran, transcript):
    page = damage_table(repo, "idx_run_files_path")
    detail = f"Page {page}: btreeInitPage() returns error code 11"
    result = cli("run", "again", "--transcript", str(transcript), cwd=repo)
    assert (result.returncode, result.stderr) == (2, f"promptrail: error: {damaged(repo, detail)}\n")
    assert scalar(repo, "SELECT COUNT(*) FROM runs") == 1
    assert cli("verify", cwd=repo).stdout == \
        f"BROKEN: {damaged(repo, detail)} (the hash chain of 4 feed events is intact)\n"


def test_a_rollback_runs_files_are_sealed_too(repo):
    feature = run_prompt(repo, [Write("feature.py", "def feature():\n    return 1\n")], prompt="add feature")
    ws = Workspace(repo)
    as_user(repo, "lead@example.com", "Lead")
    gates.sign_off(ws, feature["id"], "approve")
    gates.merge(ws, feature["id"])
    rolled = gates.rollback(ws, feature["id"])
    ws.close()
    assert verify_json(repo)[0] == 0
    seq = scalar(repo, "SELECT seq FROM events WHERE run_id = ? AND kind = 'run.committed'", [rolled["id"]])
    tamper(repo, "UPDATE run_files SET path = 'other.py' WHERE run_id = ?", [rolled["id"]])
    assert verify_json(repo)[1] == {"ok": False, "checked": scalar(repo, "SELECT COUNT(*) FROM events"),
                                    "first_bad_seq": seq, "reason":
                                    f"run {rolled['id']}: its changed files differ from the sealed run.committed "
                                    "event (sealed 1 file, found as many with different content)"}
    assert verify_table(repo) == "run_files"


@pytest.mark.parametrize("sql, table, shown", [
    ("INSERT INTO run_files (run_id, path, status, additions, deletions) VALUES ('ghost', 'x.py', 'added', 1, 0)",
     "run_files", 'a file row names run "ghost"'),
    ("INSERT INTO violations (run_id, rule_id, path, line, severity, message) VALUES (NULL, 'r', 'x.py', 1, 'error', "
     "'forged')", "violations", "a violation row names run null"),
])
def test_rows_of_a_run_the_feed_never_started_fail_verify(checked, sql, table, shown):
    repo = checked["repo"]
    tamper(repo, sql)
    assert verify_json(repo) == (1, {"ok": False, "checked": 4, "first_bad_seq": None,
                                     "reason": f"{shown}, which the feed never started"})
    assert verify_table(repo) == table
