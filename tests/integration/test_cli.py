"""The terminal face: exact exit codes and one-line errors for bad input, the query commands,
and `verify` finding tampered feed rows. Runs the real `promptrail` executable."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.support.transcripts import Edit, Say, Write, write_transcript


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def ran(repo, tmp_path):
    transcript = write_transcript(tmp_path / "t.jsonl", [Say("ok"), Write("hello.py", "a = 1\nb = 2\n"),
                                                          Edit("app.py", "return 1", "return 2")])
    result = cli("run", "add hello", "--transcript", str(transcript), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_not_a_git_repository(tmp_path):
    result = cli("history", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"promptrail: error: {tmp_path.resolve()} is not inside a git " \
        "repository; run `git init` there or pass --repo PATH\n"
    assert "Traceback" not in result.stderr


def test_missing_path(tmp_path):
    result = cli("history", "--repo", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr == f"promptrail: error: {tmp_path / 'nope'}: no such file or directory\n"


def test_unknown_run_id(repo):
    result = cli("show", "zzzz", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == "promptrail: error: unknown run id 'zzzz'; `promptrail history` lists the runs\n"


def test_missing_transcript(repo):
    result = cli("run", "x", "--agent", "replay", "--transcript", "missing.jsonl", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == "promptrail: error: transcript not found: missing.jsonl\n"


def test_missing_claude_binary(repo):
    result = cli("run", "x", "--agent", "claude-cli", "--claude-path", "/nowhere/claude", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == ("promptrail: error: claude CLI not found at '/nowhere/claude'; install it with "
                             "`npm install -g @anthropic-ai/claude-code` or pass --claude-path PATH\n")
    assert json.loads(cli("history", "--json", cwd=repo).stdout) == []  # refused before any run row


def test_empty_prompt(repo):
    result = cli("run", "  ", "--agent", "replay", "--transcript", "x.jsonl", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == "promptrail: error: the prompt is empty; say what the agent should do\n"


def test_a_prompt_that_starts_with_a_dash_is_told_to_go_after_double_dash(repo):
    result = cli("run", "-rf the cache", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("Error: No such option '-r'. A prompt that starts with '-' goes after "
                                              "'--': promptrail run [OPTIONS] -- PROMPT")
    assert json.loads(cli("history", "--json", cwd=repo).stdout) == []
    mistyped = cli("run", "--modle", "x", "y", cwd=repo)  # click's own suggestion is the better hint
    assert mistyped.stderr.splitlines()[-1] == ("Error: No such option '--modle'. (Did you mean one "
                                                "of: '--mode', '--model'?)")


def test_malformed_config_names_file_and_line(repo):
    (repo / ".promptrail.toml").write_text("[agent]\nname = \"replay\"\nmode = \n")
    result = cli("run", "x", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.startswith(f"promptrail: error: {repo / '.promptrail.toml'}:3: invalid TOML: ")
    assert result.stderr.count("\n") == 1


def test_unknown_config_key(repo):
    (repo / ".promptrail.toml").write_text("[agent]\nnmae = \"replay\"\n")
    result = cli("run", "x", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.startswith(f"promptrail: error: {repo / '.promptrail.toml'}:2: unknown key 'nmae' in [agent]")


def test_show_prefix_log_diff_history_blame(repo, ran):
    run_id = ran["id"]
    shown = json.loads(cli("show", run_id[:5], "--json", cwd=repo).stdout)
    assert shown == ran
    for key in ("id", "prompt", "actor", "agent", "model", "mode", "status", "base_sha", "commit_sha", "branch",
                "files", "tokens", "cost_usd", "cost_source", "started_at", "ended_at", "error", "gate"):
        assert key in shown
    assert shown["actor"] == {"name": "Dev One", "email": "dev@example.com"}
    assert (shown["gate"]["status"], shown["gate"]["can_merge"]) == ("pending", False)
    assert shown["gate"]["merge_blockers"] == [f"0/1 approvals on {ran['commit_sha'][:12]}"]
    log = json.loads(cli("log", run_id, "--json", cwd=repo).stdout)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert "hello.py" in cli("diff", run_id, cwd=repo).stdout
    assert json.loads(cli("history", "--search", "hello", "--json", cwd=repo).stdout)[0]["id"] == run_id
    assert json.loads(cli("history", "--search", "nomatch", "--json", cwd=repo).stdout) == []
    git(repo, "merge", "-q", "--ff-only", ran["branch"])
    lines = json.loads(cli("blame", "hello.py", "--json", cwd=repo).stdout)
    assert [(l["line"], l["run_id"]) for l in lines] == [(1, run_id), (2, run_id)]
    assert lines[0]["label"] == "✦ add hello (replay) · $0.012 · 2.8k tok · gate: pending"
    app = json.loads(cli("blame", "app.py", "--json", cwd=repo).stdout)
    assert [l["run_id"] for l in app] == [None, run_id]


def test_ambiguous_prefix(repo, tmp_path):
    transcript = write_transcript(tmp_path / "t.jsonl", [Say("nothing")])
    for _ in range(20):
        assert cli("run", "p", "--transcript", str(transcript), "--json", cwd=repo).returncode == 0
    result = cli("show", "", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == "promptrail: error: no run id given; `promptrail history` lists the runs\n"
    ids = [r["id"] for r in json.loads(cli("history", "--json", cwd=repo).stdout)]
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 20 ids over 16 hex digits: one is shared
    result = cli("show", shared, cwd=repo)
    assert result.returncode == 2
    assert result.stderr.startswith(f"promptrail: error: run id prefix '{shared}' is ambiguous (")


def _tamper(repo: Path, sql: str) -> None:
    conn = sqlite3.connect(repo / ".git" / "promptrail" / "audit.db")
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_a_dropped_table_is_one_line_for_queries_and_broken_for_verify(repo, ran):
    _tamper(repo, "DROP TABLE run_files")
    shown = cli("show", ran["id"], cwd=repo)
    assert (shown.returncode, shown.stderr) == (2, "promptrail: error: the audit store could not be read (no such "
                                                   "table: run_files); `promptrail verify` says what is damaged\n")
    verified = cli("verify", cwd=repo)
    db = (repo / ".git" / "promptrail" / "audit.db").resolve()
    assert (verified.returncode, verified.stdout) == (1, f"BROKEN: {db} cannot be read: no such table: run_files\n")
    assert "Traceback" not in shown.stderr + verified.stderr


def test_show_prints_a_violation_row_with_missing_fields(repo, ran):
    _tamper(repo, f"INSERT INTO violations (run_id) VALUES ('{ran['id']}')")  # an edited store; verify names it
    shown = cli("show", ran["id"], cwd=repo)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1] == "  ?:?:?:  [None] None"


def test_verify_intact_then_altered(repo, ran):
    ok = cli("verify", cwd=repo)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 4 feed events")
    _tamper(repo, "UPDATE events SET actor = 'mallory@example.com' WHERE seq = 2")
    broken = cli("verify", "--json", cwd=repo)
    assert broken.returncode == 1
    assert json.loads(broken.stdout) == {"ok": False, "checked": 1, "first_bad_seq": 2,
                                         "reason": "row 2: content does not match its hash (row altered)",
                                         "table": "events", "runs_checked": 0, "log_entries_checked": 0,
                                         "run_files_checked": 0, "violations_checked": 0, "signoffs_checked": 0}


def test_verify_deleted_row(repo, ran):
    _tamper(repo, "DELETE FROM events WHERE seq = 2")
    broken = cli("verify", "--json", cwd=repo)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["first_bad_seq"] == 3
    assert json.loads(broken.stdout)["reason"] == "row 3: expected row 2 here; a row was deleted"


def test_verify_rows_cut_from_the_end(repo, ran):
    _tamper(repo, "DELETE FROM events WHERE seq = 4")
    broken = cli("verify", "--json", cwd=repo)
    assert broken.returncode == 1
    assert json.loads(broken.stdout) == {"ok": False, "checked": 3, "first_bad_seq": 4, "reason":
                                         "row 4: missing; the feed had 4 rows (rows were deleted from its end)",
                                         "table": "events", "runs_checked": 0, "log_entries_checked": 0,
                                         "run_files_checked": 0, "violations_checked": 0, "signoffs_checked": 0}


def test_verify_reordered_rows(repo, ran):
    conn = sqlite3.connect(repo / ".git" / "promptrail" / "audit.db")
    rows = conn.execute("SELECT seq, ts, kind, run_id, actor, data, prev_hash, hash FROM events "
                        "ORDER BY seq").fetchall()
    # Swap the contents of rows 2 and 3 (keeping each row's own hash with it).
    for (seq, *rest), target in ((rows[1], 3), (rows[2], 2)):
        conn.execute("UPDATE events SET ts=?, kind=?, run_id=?, actor=?, data=?, prev_hash=?, hash=? WHERE seq=?",
                     (*rest, target))
    conn.commit()
    conn.close()
    broken = cli("verify", "--json", cwd=repo)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["first_bad_seq"] == 2


def test_feed_lists_events(repo, ran):
    events = json.loads(cli("feed", "--json", cwd=repo).stdout)
    assert [e["kind"] for e in events] == ["run.succeeded", "run.checked", "run.committed", "run.started"]
    assert all(e["run_id"] == ran["id"] for e in events)


def test_feed_table_shortens_values_without_cutting_them_silently(repo, tmp_path):
    prompt = "rename every helper in the utilities module so that the names say what the helpers do"
    transcript = write_transcript(tmp_path / "t.jsonl", [Write("a.py", "1\n"), Write("b.py", "2\n")])
    ran = json.loads(cli("run", prompt, "--transcript", str(transcript), "--json", cwd=repo).stdout)
    out = subprocess.run([sys.executable, "-m", "promptrail", "feed"], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "400"}).stdout
    rows = {line.split("│")[2].strip(): line.split("│")[5].strip() for line in out.splitlines() if "│" in line}
    assert rows["run.committed"] == (f"branch=promptrail/{ran['id']}, commit={ran['commit_sha'][:12]}, "
                                     "files=a.py b.py")
    assert rows["run.started"] == (f"agent=replay, base_sha={ran['base_sha'][:12]}, mode=isolated, "
                                   f"prompt={prompt[:59]}…")


def test_blame_refuses_folders_binaries_and_git_internals(repo):
    (repo / "pkg").mkdir()
    (repo / "blob.bin").write_bytes(b"\x00\x01\x02")
    git(repo, "add", "blob.bin")
    git(repo, "commit", "-qm", "bin")
    for args, message in ((["pkg"], "pkg is a folder; blame a file in it"),
                          (["blob.bin"], "blob.bin is a binary file; blame shows text files"),
                          ([".git/config"], ".git/config is inside .git; blame a file of the working tree"),
                          ([""], "no file given; `promptrail blame FILE`")):
        result = cli("blame", *args, cwd=repo)
        assert (result.returncode, result.stderr) == (2, f"promptrail: error: {message}\n"), args


def test_blame_rev_is_a_revision_never_an_option(repo, ran, tmp_path):
    branch = f"promptrail/{ran['id']}"
    (repo / "pkg").mkdir()
    (repo / "pkg" / "m.py").write_text("x = 1\n")
    git(repo, "add", "pkg")
    git(repo, "commit", "-qm", "pkg")
    for args, message in (
            (["--rev", f"--output={tmp_path / 'pwn'}", "README.md"],
             f"'--output={tmp_path / 'pwn'}' is not a revision; name a commit, branch or tag (e.g. promptrail/RUN-ID)"),
            (["--rev", "HEAD~5", "README.md"],
             "unknown revision 'HEAD~5'; name a commit, branch or tag (e.g. promptrail/RUN-ID)"),
            (["--rev", "HEAD", "pkg"], "pkg is a folder at 'HEAD'; blame a file in it"),
            (["--rev", branch, "missing.py"], f"missing.py does not exist at '{branch}'")):
        result = cli("blame", *args, cwd=repo)
        assert (result.returncode, result.stderr) == (2, f"promptrail: error: {message}\n"), args
    assert list(tmp_path.glob("pwn*")) == []
    lines = json.loads(cli("blame", "--rev", branch, "hello.py", "--json", cwd=repo).stdout)
    assert [(line["text"], line["run_id"]) for line in lines] == [("a = 1", ran["id"]), ("b = 2", ran["id"])]


def test_config_typos_are_errors(repo):
    (repo / ".promptrail.toml").write_text("[agent]\nmode = \"direct\"\n\n[gaet]\nrequired_approvals = 2\n")
    result = cli("run", "x", "--transcript", "t.jsonl", cwd=repo)
    assert result.returncode == 2
    assert result.stderr == (f"promptrail: error: {repo / '.promptrail.toml'}:4: unknown section [gaet]; known: "
                             "agent, anthropic, budget, gate, prices\n")
    (repo / ".promptrail.toml").write_text("[agent]\nsilence_timeout_s = 0\n")
    result = cli("run", "x", "--transcript", "t.jsonl", cwd=repo)
    assert result.stderr == (f"promptrail: error: {repo / '.promptrail.toml'}:2: [agent] silence_timeout_s must be a "
                             "positive number of seconds, not 0\n")


def test_transcript_folder_and_non_executable_claude(repo, tmp_path):
    result = cli("run", "x", "--transcript", str(tmp_path), cwd=repo)
    assert result.stderr == f"promptrail: error: {tmp_path} is a folder; pass a transcript file (.jsonl)\n"
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\n")
    result = cli("run", "x", "--agent", "claude-cli", "--claude-path", str(fake), cwd=repo)
    assert result.stderr == (f"promptrail: error: '{fake}' is not executable; `chmod +x` it or pass another "
                             "--claude-path\n")
