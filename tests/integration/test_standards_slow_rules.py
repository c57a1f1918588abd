"""A rule regex that backtracks catastrophically neither hangs a run's check nor passes quietly: the
check stops it at the time limit, the run's other rules still apply, and the log names the rule,
the file and the fix. Real git, real SQLite, the replay agent acting out the session."""

from __future__ import annotations

from promptrail.standards import check as check_module
from promptrail.workspace import Workspace
from tests.conftest import make_repo
from tests.integration.test_standards_runs import run_prompt
from tests.support.transcripts import Write

RULES = r'''# Rules

```promptrail
[[rule]]
id = "slow"
forbid = '^(a|a)*$'

[[rule]]
id = "no-print"
forbid = '\bprint\('
severity = "error"
```
'''


def test_a_runs_check_stops_a_catastrophic_regex_and_logs_it(tmp_path, monkeypatch):
    monkeypatch.setattr(check_module, "MATCH_TIME_LIMIT_S", 0.05)  # the run checks in this process
    repo = make_repo(tmp_path / "project", {"CLAUDE.md": RULES})
    data, _ = run_prompt(repo, [Write("a.txt", "a" * 40 + "b\n"), Write("app.py", "print(1)\n")])
    assert data["status"] == "succeeded"
    assert [(v["rule_id"], v["path"]) for v in data["violations"]] == [("no-print", "app.py")]
    ws = Workspace(repo)
    checks = [e["text"] for e in ws.store.log(data["id"]) if e["kind"] == "check"]
    assert checks == [
        "CLAUDE.md:6: base CLAUDE.md rule not applied: rule 'slow': the forbid pattern took more than 0.05 s on "
        "a.txt, so this check stopped it there and skipped it on later files; simplify the pattern (nested repeats "
        "such as (a|a)* can take exponential time)",
        "app.py:1:1: error [no-print] matches the forbidden pattern \\bprint\\(",
        f"CLAUDE.md check (rules of base {data['base_sha'][:12]}): 1 error · 2 file(s), 2 rule(s)",
    ]
    checked = [e for e in ws.store.feed(run_id=data["id"]) if e["kind"] == "run.checked"][0]["data"]
    assert (checked["rule_problems"], checked["files_checked"]) == (1, 2)
