"""`promptrail check` (exact output, exit codes 0/1/2, GitHub annotations, JSON) and the core calls
the language server makes for diagnostics, on real repositories with root and nested CLAUDE.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptrail.standards import diagnose_claude_md, diagnose_document
from promptrail.workspace import Workspace
from tests.conftest import make_repo

RULES = r'''# Conventions

```promptrail
[[rule]]
id = "no-print"
paths = ["*.py"]
forbid = '\bprint\('
message = "Use logging, not print: the server owns stdout"
severity = "error"

[[rule]]
id = "todo"
forbid = 'TODO'
severity = "warning"
```
'''

NESTED = r'''# pkg

```promptrail
[[rule]]
id = "pkg-width"
max_line_length = 10
severity = "info"

[[rule]]
id = "broken"
forbid = '(unclosed'
```
'''


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def project(tmp_path) -> Path:
    return make_repo(tmp_path / "project", {
        "CLAUDE.md": RULES, "pkg/CLAUDE.md": NESTED,
        "app.py": "import logging\n\nlogging.info('ok')\n",
        "bad.py": "x = 1\n温度 = 2; print(x)  # TODO\n",
        "pkg/mod.py": "value = 12345678\n",
        "notes.txt": "TODO: later\n",
    })


def test_errors_exit_1_with_every_finding_on_one_line(project):
    result = cli("check", cwd=project)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "pkg/CLAUDE.md:11:1: error [bad-regex] rule 'broken': bad regex in forbid: missing ), unterminated "
        "subpattern at position 0",
        "bad.py:2:9: error [no-print] Use logging, not print: the server owns stdout",
        "bad.py:2:21: warning [todo] matches the forbidden pattern TODO",
        "notes.txt:1:1: warning [todo] matches the forbidden pattern TODO",
        "pkg/mod.py:1:11: info [pkg-width] line too long (16 > 10 characters)",
        "1 error, 2 warning, 1 info · 6 file(s), 3 rule(s) · 1 CLAUDE.md problem(s)",
    ]
    assert result.stderr == ""


def test_a_broken_rule_fails_the_check(project):
    # pkg/CLAUDE.md has a rule with a bad regex: CI must not pass quietly with it switched off.
    result = cli("check", "app.py", cwd=project)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "no violations · 1 file(s), 3 rule(s) · 1 CLAUDE.md problem(s)"


def test_warnings_only_exit_0_and_paths_narrow_the_check(project):
    (project / "pkg" / "CLAUDE.md").write_text(NESTED.split("[[rule]]\nid = \"broken\"")[0] + "```\n")
    result = cli("check", "notes.txt", "pkg", cwd=project)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "notes.txt:1:1: warning [todo] matches the forbidden pattern TODO",
        "pkg/mod.py:1:11: info [pkg-width] line too long (16 > 10 characters)",
        "1 warning, 1 info · 3 file(s), 3 rule(s)",
    ]
    clean = cli("check", "app.py", cwd=project)
    assert clean.returncode == 0
    assert clean.stdout.splitlines() == ["no violations · 1 file(s), 3 rule(s)"]
    # An untracked file named explicitly is checked; from a subfolder, paths are relative to it.
    (project / "pkg" / "new.py").write_text("print('x')\n")
    sub = cli("check", "new.py", cwd=project / "pkg")
    assert sub.returncode == 1
    assert "pkg/new.py:1:1: error [no-print] Use logging, not print: the server owns stdout" in sub.stdout


def test_github_annotations_exactly(project):
    result = cli("check", "--format", "github", cwd=project)
    assert result.returncode == 1
    assert result.stdout == (
        "::error file=pkg/CLAUDE.md,line=11,col=1,title=CLAUDE.md bad-regex::rule 'broken': bad regex in forbid: "
        "missing ), unterminated subpattern at position 0\n"
        "::error file=bad.py,line=2,col=9,title=CLAUDE.md rule no-print::Use logging, not print: the server owns "
        "stdout\n"
        "::warning file=bad.py,line=2,col=21,title=CLAUDE.md rule todo::matches the forbidden pattern TODO\n"
        "::warning file=notes.txt,line=1,col=1,title=CLAUDE.md rule todo::matches the forbidden pattern TODO\n"
        "::notice file=pkg/mod.py,line=1,col=11,title=CLAUDE.md rule pkg-width::line too long (16 > 10 "
        "characters)\n")


def test_json_output(project):
    result = cli("check", "bad.py", "--json", cwd=project)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["counts"] == {"error": 1, "warning": 1, "info": 0, "hint": 0}
    assert data["files_checked"] == 1 and data["rules"] == 3
    assert data["violations"][0] == {
        "rule_id": "no-print", "path": "bad.py", "line": 2, "start_col": 8, "end_col": 14, "severity": "error",
        "message": "Use logging, not print: the server owns stdout", "source": "CLAUDE.md", "rule_file": "CLAUDE.md",
        "rule_line": 4}
    assert [p["code"] for p in data["problems"]] == ["bad-regex"]


def test_bad_input_exits_2_with_one_line(project, tmp_path):
    missing = cli("check", "nope.py", cwd=project)
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        2, "", "promptrail: error: nope.py: no such file or directory\n")
    missing_later = cli("check", "app.py", "gone/x.py", cwd=project)
    assert (missing_later.returncode, missing_later.stderr) == (
        2, "promptrail: error: gone/x.py: no such file or directory\n")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("print(1)\n")
    result = cli("check", "app.py", str(outside), cwd=project)
    assert (result.returncode, result.stderr) == (
        2, f"promptrail: error: {outside} is outside the repository at {project.resolve()}\n")
    both = cli("check", "--json", "--format", "github", cwd=project)
    assert (both.returncode, both.stderr) == (2, "promptrail: error: choose one of --json and --format github\n")
    not_repo = cli("check", cwd=tmp_path)
    assert not_repo.returncode == 2 and "is not inside a git repository" in not_repo.stderr


def test_a_repository_without_rules(repo):
    result = cli("check", cwd=repo)
    assert (result.returncode, result.stdout) == (0, "no violations · 2 file(s), 0 rule(s)\n")


def test_a_regex_that_backtracks_catastrophically_is_stopped_not_hung(tmp_path):
    # ^(a|a)*$ has 2^40 ways to fail on a line of 40 a's and a b: it hung `check` with Python's re.
    rules = "```promptrail\n[[rule]]\nid = \"nested\"\nforbid = '^(a+)+$'\n\n" \
            "[[rule]]\nid = \"slow\"\nforbid = '^(a|a)*$'\nseverity = \"info\"\n```\n"
    line = "a" * 40 + "b\n"
    project = make_repo(tmp_path / "project", {"CLAUDE.md": rules, "a.txt": line, "b.txt": line, "c.txt": "aaa\n"})
    result = cli("check", cwd=project)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "CLAUDE.md:8:1: error [regex-timeout] rule 'slow': the forbid pattern took more than 1 s on a.txt, so this "
        "check stopped it there and skipped it on later files; simplify the pattern (nested repeats such as (a|a)* "
        "can take exponential time)",
        "c.txt:1:1: warning [nested] matches the forbidden pattern ^(a+)+$",
        "1 warning · 4 file(s), 2 rule(s) · 1 CLAUDE.md problem(s)",
    ]
    assert result.stderr == ""


# -- the language server's calls -------------------------------------------------------------------
def test_diagnose_document_uses_unsaved_text_and_unsaved_claude_md(project):
    ws = Workspace(project)
    text = "# unsaved\nprint(1)  # 🙂 TODO\r\n"
    found = [(v.rule_id, v.line, v.start_col, v.end_col, v.rule_file, v.rule_line)
             for v in diagnose_document(ws, "bad.py", text)]
    assert found == [("no-print", 2, 0, 6, "CLAUDE.md", 4), ("todo", 2, 14, 18, "CLAUDE.md", 11)]
    relaxed = RULES.replace('severity = "warning"', 'severity = "hint"').replace("TODO", "FIXME")
    assert [v.rule_id for v in diagnose_document(ws, "bad.py", text, claude_md={"CLAUDE.md": relaxed})] == \
        ["no-print"]
    assert diagnose_document(ws, "pkg/deep/x.py", "x = 123456789012\n")[0].rule_id == "pkg-width"


def test_diagnose_document_reports_a_stopped_rule_on_the_document(project, monkeypatch):
    from promptrail.standards import check as check_module

    monkeypatch.setattr(check_module, "MATCH_TIME_LIMIT_S", 0.05)
    slow = "```promptrail\n[[rule]]\nid = \"slow\"\nforbid = '^(a|a)*$'\n```\n"
    found = diagnose_document(Workspace(project), "a.txt", "a" * 40 + "b\n", claude_md={"CLAUDE.md": slow})
    assert [(v.rule_id, v.line, v.start_col, v.end_col, v.severity, v.rule_line, v.message) for v in found] == [
        ("slow", 1, 0, 41, "error", 2, "rule 'slow': the forbid pattern took more than 0.05 s on a.txt, so this check "
         "stopped it there and skipped it on later files; simplify the pattern (nested repeats such as (a|a)* can "
         "take exponential time)")]


def test_diagnose_claude_md_on_unsaved_text(project):
    ws = Workspace(project)
    assert [(p.line, p.code) for p in diagnose_claude_md(ws, "pkg/CLAUDE.md", NESTED)] == [(11, "bad-regex")]
    edited = NESTED.replace("(unclosed", "fixed").replace('id = "pkg-width"', 'id = "todo"') + "\n```promptrail\n" \
        "[[rule]]\nid = \"x\"\nmax_lines = \n```\n"
    assert [(p.line, p.code, p.message) for p in diagnose_claude_md(ws, "pkg/CLAUDE.md", edited)] == [
        (5, "duplicate-id", "duplicate rule id 'todo' (already defined at CLAUDE.md:11); ids are unique across all "
                            "CLAUDE.md files"),
        (17, "toml-syntax", "invalid TOML in the promptrail block: Invalid value"),
    ]
    # A new CLAUDE.md not yet on disk, and the root file's own problems are not the nested file's.
    assert diagnose_claude_md(ws, "other/CLAUDE.md", "no rules here") == []
    assert diagnose_claude_md(ws, "CLAUDE.md", RULES) == []
