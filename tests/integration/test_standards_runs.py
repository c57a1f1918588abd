"""Every run is checked against the CLAUDE.md rules of its base commit: an agent that deletes a
rule from CLAUDE.md is still judged by it, and its run is flagged policy_change. The outcome is in
the store, `show --json`, `show`'s text, the run's log, the feed and the final RunStatus. Real git,
real SQLite, the replay agent acting out the session."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from promptrail.events import RunStatus
from promptrail.runs import RunRequest, start_run
from promptrail.workspace import Workspace
from tests.conftest import make_repo
from tests.support.transcripts import Edit, Say, Write, write_transcript

ROOT_RULES = r'''# How we work

Use logging. Keep secrets out of the repository.

```promptrail
[[rule]]
id = "no-print"
paths = ["**/*.py"]
forbid = '\bprint\('
message = "Use logging, not print."
severity = "error"

[[rule]]
id = "secrets"
protected = ["secrets/**"]
severity = "error"

[[rule]]
id = "tests"
requires_tests = { changed = ["src/**"], needs = ["tests/**"] }
message = "Change the tests with the code."
```
'''

SRC_RULES = '''# src

```promptrail
[[rule]]
id = "short-lines"
paths = ["*.py"]
max_line_length = 30
severity = "info"
```
'''


class Collect:
    def __init__(self) -> None:
        self.events = []

    def emit(self, event) -> None:
        self.events.append(event)


def run_prompt(repo: Path, steps, *, mode: str | None = None) -> tuple[dict, list]:
    transcript = write_transcript(repo.parent / f"t-{os.urandom(3).hex()}.jsonl", steps)
    sink = Collect()

    async def go():
        run = await start_run(Workspace(repo), RunRequest(prompt="tidy up", agent="replay", transcript=str(transcript),
                                                          mode=mode), sink)
        return await run.wait()

    return asyncio.run(go()), sink.events


def test_an_agent_that_deletes_a_rule_is_still_checked_against_it(tmp_path):
    repo = make_repo(tmp_path / "project", {"CLAUDE.md": ROOT_RULES, "src/CLAUDE.md": SRC_RULES,
                                            "src/__init__.py": "", "tests/test_ok.py": "def test(): pass\n"})
    long_line = "value = compute(alpha, beta, gamma)"
    data, events = run_prompt(repo, [
        Say("I'll relax the rules first."),
        Write("CLAUDE.md", "# How we work\n\nAnything goes.\n"),          # deletes every rule
        Write("src/app.py", f"print('hi')\n{long_line}\n"),
        Write("secrets/token.txt", "not really\n"),
    ])
    assert data["status"] == "succeeded"
    assert data["policy_change"] is True
    expected = [
        {"rule_id": "secrets", "path": "secrets/token.txt", "line": 1, "start_col": 0, "end_col": 0,
         "severity": "error", "message": "secrets/token.txt is protected; an agent run must not change it",
         "source": "CLAUDE.md", "rule_file": "CLAUDE.md", "rule_line": 13},
        {"rule_id": "no-print", "path": "src/app.py", "line": 1, "start_col": 0, "end_col": 6, "severity": "error",
         "message": "Use logging, not print.", "source": "CLAUDE.md", "rule_file": "CLAUDE.md", "rule_line": 6},
        {"rule_id": "tests", "path": "src/app.py", "line": 1, "start_col": 0, "end_col": 0, "severity": "warning",
         "message": "Change the tests with the code. (1 changed file(s) match src/** but no changed file matches "
                    "tests/**)", "source": "CLAUDE.md", "rule_file": "CLAUDE.md", "rule_line": 18},
        {"rule_id": "short-lines", "path": "src/app.py", "line": 2, "start_col": 30, "end_col": len(long_line),
         "severity": "info", "message": f"line too long ({len(long_line)} > 30 characters)", "source": "CLAUDE.md",
         "rule_file": "src/CLAUDE.md", "rule_line": 4},
    ]
    assert data["violations"] == expected

    # The store: the violations table and the run's policy_change column.
    db = sqlite3.connect(repo / ".git" / "promptrail" / "audit.db")
    assert db.execute("SELECT policy_change FROM runs WHERE id = ?", [data["id"]]).fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM violations WHERE run_id = ?", [data["id"]]).fetchone() == (4,)

    # The log: one line per violation, then the summary and the policy change.
    ws = Workspace(repo)
    checks = [e["text"] for e in ws.store.log(data["id"]) if e["kind"] == "check"]
    assert checks == [
        "secrets/token.txt:1:1: error [secrets] secrets/token.txt is protected; an agent run must not change it",
        "src/app.py:1:1: error [no-print] Use logging, not print.",
        "src/app.py:1:1: warning [tests] Change the tests with the code. (1 changed file(s) match src/** but no "
        "changed file matches tests/**)",
        f"src/app.py:2:31: info [short-lines] line too long ({len(long_line)} > 30 characters)",
        f"CLAUDE.md check (rules of base {data['base_sha'][:12]}): 2 error, 1 warning, 1 info · 1 file(s), 4 rule(s)",
        "policy change: this run changes CLAUDE.md (checked against the base commit's rules, not its own)",
    ]

    # `promptrail show`: the counts, then one line per violation (1-based columns, as `check` prints them).
    shown = subprocess.run([sys.executable, "-m", "promptrail", "show", data["id"]], cwd=repo, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.rstrip() for line in lines if line.startswith("CLAUDE.md ")] == [
        "CLAUDE.md  2 error  1 warning  1 info"]
    assert lines[lines.index("violations") + 1:] == [f"  {line}" for line in checks[:4]]  # the exact lines above

    # The feed: run.checked between run.committed and run.succeeded, with counts by severity.
    feed = ws.store.feed(run_id=data["id"])
    assert [e["kind"] for e in feed] == ["run.succeeded", "run.checked", "run.committed", "run.started"]
    checked = feed[1]["data"]
    assert {k: checked[k] for k in ("total", "error", "warning", "info", "hint", "policy_change", "policy_files",
                                    "rules", "files_checked", "rule_problems")} == {
        "total": 4, "error": 2, "warning": 1, "info": 1, "hint": 0, "policy_change": True,
        "policy_files": ["CLAUDE.md"], "rules": 4, "files_checked": 1, "rule_problems": 0}
    assert ws.store.verify().ok

    # The final RunStatus carries the summary (the language server's promptrail/runStatus).
    final = [e for e in events if isinstance(e, RunStatus) and e.final]
    assert len(final) == 1 and final[0].violations == {"total": 4, "error": 2, "warning": 1, "info": 1, "hint": 0,
                                                       "policy_change": True}


def test_a_clean_run_in_direct_mode_has_no_violations_and_no_policy_change(tmp_path):
    repo = make_repo(tmp_path / "project", {"CLAUDE.md": ROOT_RULES, "src/app.py": "x = 1\n",
                                            "tests/test_app.py": "def test(): pass\n"})
    data, events = run_prompt(repo, [Edit("src/app.py", "x = 1", "x = 2"),
                                     Edit("tests/test_app.py", "pass", "assert True")], mode="direct")
    assert data["status"] == "succeeded"
    assert data["violations"] == [] and data["policy_change"] is False
    final = [e for e in events if isinstance(e, RunStatus) and e.final][0]
    assert final.violations == {"total": 0, "error": 0, "warning": 0, "info": 0, "hint": 0, "policy_change": False}


def test_a_repository_without_claude_md_and_a_failed_run(tmp_path, repo):
    data, _ = run_prompt(repo, [Write(".promptrail.toml", "[agent]\nmode = \"isolated\"\n")])
    assert data["status"] == "succeeded"
    assert data["violations"] == [] and data["policy_change"] is True  # .promptrail.toml is policy too
    # A failed run's partial work is committed on its branch and checked like any other run.
    transcript = write_transcript(tmp_path / "fail.jsonl", [Write("x.py", "print(1)\n")], is_error=True)
    result = subprocess.run([sys.executable, "-m", "promptrail", "run", "fail", "--transcript", str(transcript),
                             "--json"], cwd=repo, capture_output=True, text=True, timeout=120)
    failed = json.loads(result.stdout)
    assert failed["status"] == "failed" and failed["violations"] == [] and failed["policy_change"] is False
    kinds = [e["kind"] for e in Workspace(repo).store.feed(run_id=failed["id"])]
    assert "run.checked" in kinds
    # A run that never committed was never checked: no run.checked event.
    empty = write_transcript(tmp_path / "empty.jsonl", [], is_error=True)
    result = subprocess.run([sys.executable, "-m", "promptrail", "run", "fail", "--transcript", str(empty),
                             "--json"], cwd=repo, capture_output=True, text=True, timeout=120)
    nothing = json.loads(result.stdout)
    assert nothing["status"] == "failed" and nothing["commit_sha"] is None
    assert "run.checked" not in [e["kind"] for e in Workspace(repo).store.feed(run_id=nothing["id"])]


def test_an_old_database_gains_the_violations_table(tmp_path, repo):
    """Migration 3 on a database that already has runs: their policy_change is NULL (never checked)."""
    from promptrail.audit import store as store_module

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    import sqlite_utils

    store_module.MIGRATIONS[0](sqlite_utils.Database(db))
    db.execute("INSERT INTO runs (id, prompt, status) VALUES ('r1', 'p', 'succeeded')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = store_module.AuditStore(path)
    assert store.get_run("r1")["policy_change"] is None
    assert store.violations("r1") == []
    store.set_violations("r1", [{"rule_id": "x", "path": "a", "line": 1, "start_col": 0, "end_col": 1,
                                 "severity": "error", "message": "m", "source": "CLAUDE.md", "rule_file": "CLAUDE.md",
                                 "rule_line": 3}])
    assert [v["rule_id"] for v in store.violations("r1")] == ["x"]


def test_a_violation_in_a_file_whose_name_has_a_newline_is_one_log_line(tmp_path):
    repo = make_repo(tmp_path / "repo", {"CLAUDE.md": ROOT_RULES, "README.md": "x\n"})
    data, _ = run_prompt(repo, [Write("v\nfake ⎇ line.py", "print(1)\n")])
    (line,) = [e["text"] for e in Workspace(repo).store.log(data["id"]) if "[no-print]" in e["text"]]
    assert line == "v\\nfake ⎇ line.py:1:1: error [no-print] Use logging, not print."
