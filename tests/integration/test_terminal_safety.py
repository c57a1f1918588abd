"""Data never drives the user's terminal, and a secret printed in pieces never reaches the record.

Escape sequences and rich markup in agent output, prompts, file lines, model names, check output
and CLAUDE.md messages print as visible text in every terminal view (`run`'s live log, `log`,
`show`, `history`, `feed`, `blame`, `costs`, `check`, `gate simulate`), while `--json` and the
store keep the exact text. A private key an agent prints one plain line at a time is redacted in
the log, the SQLite file, the commit and its note. Runs the real `promptrail` executable against
real repositories, with the replay agent acting out the session.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptrail.cli import TerminalSink
from promptrail.events import LogEntry, RunOpened
from promptrail.views import printable
from tests.conftest import git
from tests.integration.test_gates import commit_policy
from tests.support.transcripts import Say, Write, transcript_lines

#: What must never reach a terminal raw: C0 controls but newline and tab, DEL, C1 controls.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def shown(*args: str, cwd: Path, code: int = 0) -> list[str]:
    """A command's terminal output as lines (right-stripped), checked to hold no raw control."""
    result = cli(*args, cwd=cwd)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert not RAW_CONTROL.search(result.stdout + result.stderr), (args, result.stdout, result.stderr)
    return [line.rstrip() for line in (result.stdout + result.stderr).splitlines()]


def write_session(path: Path, steps: list, raw_lines: dict[int, list[str]] | None = None,
                  model: str = "claude-test") -> Path:
    """A transcript; ``raw_lines`` inserts plain (non-JSON) lines before the given line index."""
    lines = [json.dumps({**line, "model": model} if line.get("subtype") == "init" else line)
             for line in transcript_lines(steps)]
    for index, extra in sorted((raw_lines or {}).items(), reverse=True):
        lines[index:index] = extra
    path.write_text("\n".join(lines) + "\n")
    return path


# -- printable ----------------------------------------------------------------------------------------
def test_printable_escapes_controls_but_newline_and_tab():
    assert printable("a\x1b]0;PWNED\x07b") == "a\\x1b]0;PWNED\\x07b"
    assert printable("\x1b[2K\rhidden") == "\\x1b[2K\\rhidden"
    assert printable("\x1b[2J\x1b[H") == "\\x1b[2J\\x1b[H"
    assert printable("tab\tnew\nline") == "tab\tnew\nline"
    assert printable("\x00\x08\x0b\x0c\x7f\x85\x9b\x9f") == "\\x00\\x08\\x0b\\x0c\\x7f\\x85\\x9b\\x9f"
    assert printable("\xa0é✓ [bold]x[/] \\x1b") == "\xa0é✓ [bold]x[/] \\x1b"  # printable text: untouched
    for code in range(0x200):
        char = chr(code)
        escaped = code < 0x20 and char not in "\t\n" or 0x7f <= code < 0xa0
        assert printable(char) == ({0x0d: "\\r"}.get(code, f"\\x{code:02x}") if escaped else char), code


def test_printable_escapes_bidi_overrides_and_isolates_but_not_marks():
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        assert printable(f"a{chr(code)}b") == f"a\\u{code:04x}b"
    assert printable("שלום\u200f.txt \u200e\u061c") == "שלום\u200f.txt \u200e\u061c"  # marks: real RTL text


def test_a_prompt_with_a_bidi_override_and_a_file_name_with_a_newline_show_as_they_read(repo, tmp_path):
    """A right-to-left override would make `show` display "txt.exe" for "exe.txt"; a newline in a
    file name would show as two rows of the files table."""
    prompt = "rename \u202eexe.txt"
    transcript = write_session(tmp_path / "t.jsonl", [Write("two\nlines.py", "1\n"), Write("tab\there.py", "2\n")])
    shown("run", prompt, "--transcript", str(transcript), cwd=repo)
    (run,) = json.loads(cli("history", "--json", cwd=repo).stdout)
    lines = shown("show", run["id"], cwd=repo)
    assert "prompt     rename \\u202eexe.txt" in lines
    assert not any("\u202e" in line for line in lines)
    files = [line.split()[0] for line in lines if line.strip().endswith("−0")]
    assert files == ["tab\\there.py", "two\\nlines.py"]
    assert git(repo, "log", "-1", "--format=%s", run["commit_sha"]) == "rename \\u202eexe.txt\n"
    data = json.loads(cli("show", run["id"], "--json", cwd=repo).stdout)
    assert data["prompt"] == prompt  # kept exact
    # A tab in a name once split git's numstat line: the file showed as binary.
    assert [(f["path"], f["additions"], f["deletions"]) for f in data["files"]] == [
        ("tab\there.py", 1, 0), ("two\nlines.py", 1, 0)]


def test_terminal_sink_prints_agent_output_escaped(capsys):
    sink = TerminalSink()
    sink.emit(RunOpened("r1", "p", "replay", "label\x1b]0;T\x07", None, "isolated", None, None))
    sink.emit(LogEntry("r1", 1, "ts", "text", "hello \x1b]0;PWNED\x07 world\nsecond\r"))
    sink.emit(LogEntry("r1", 2, "ts", "stderr", "\x1b[2K\rhidden"))
    out, err = capsys.readouterr()
    assert out == ("▶ run r1 · replay (label\\x1b]0;T\\x07) · isolated mode\n"
                   "│ hello \\x1b]0;PWNED\\x07 world\n  second\\r\n")
    assert err == "! \\x1b[2K\\rhidden\n"


# -- every terminal view ------------------------------------------------------------------------------
PROMPT = "\x1b[2J[bold red]x[/] and [/] :smile: now"
PROMPT_SHOWN = "\\x1b[2J[bold red]x[/] and [/] :smile: now"


@pytest.fixture
def hostile_run(repo, tmp_path):
    """A run whose prompt, agent text, plain output, written file and model name carry escapes."""
    transcript = write_session(
        tmp_path / "t.jsonl", [Say("hello \x1b]0;PWNED\x07 world"), Write("evil.py", "print('\x1b[31mred')\n")],
        raw_lines={2: ["\x1b[2K\rhidden line"]}, model="claude\x1b[2Jtest")
    live = shown("run", PROMPT, "--transcript", str(transcript), cwd=repo)
    (run,) = json.loads(cli("history", "--json", cwd=repo).stdout)
    return run["id"], live


def test_run_log_escapes_agent_output_as_it_happens(repo, hostile_run):
    _, live = hostile_run
    assert "│ hello \\x1b]0;PWNED\\x07 world" in live
    assert "  \\x1b[2K\\rhidden line" in live
    assert "· agent started · session_id s-test · model claude\\x1b[2Jtest" in live
    assert "prompt     " + PROMPT_SHOWN in live  # the summary after the run


def test_query_views_escape_data(repo, hostile_run):
    run_id, _ = hostile_run
    log = shown("log", run_id, cwd=repo)
    assert [line[19:] for line in log if line[19:].startswith(("text", "raw"))] == [
        "text        hello \\x1b]0;PWNED\\x07 world", "raw         \\x1b[2K\\rhidden line"]
    assert "prompt     " + PROMPT_SHOWN in shown("show", run_id, cwd=repo)
    (row,) = [line for line in shown("history", cwd=repo) if run_id in line]
    assert row.endswith("│ " + PROMPT_SHOWN)
    details = " ".join(line.rpartition("│ ")[2] for line in shown("feed", cwd=repo) if "│" in line)
    # the column folds long details, cut at 120 characters
    assert "prompt=\\x1b[2J[bold red]x[/] and [/]" in " ".join(details.split())
    assert shown("blame", "evil.py", "--rev", f"promptrail/{run_id}", cwd=repo)[1] == "1 ✦ print('\\x1b[31mred')"
    (model_row,) = [line for line in shown("costs", "--by", "model", cwd=repo) if "claude" in line]
    assert model_row.startswith(" claude\\x1b[2Jtest │")


def test_json_output_and_the_store_keep_the_exact_text(repo, hostile_run):
    run_id, _ = hostile_run
    entries = json.loads(cli("log", run_id, "--json", cwd=repo).stdout)
    assert [e["text"] for e in entries if e["kind"] in ("text", "raw")] == [
        "hello \x1b]0;PWNED\x07 world", "\x1b[2K\rhidden line"]
    assert json.loads(cli("show", run_id, "--json", cwd=repo).stdout)["prompt"] == PROMPT


def test_rich_markup_in_data_prints_literally(repo, tmp_path):
    prompt = "[bold red]x[/] [/] [link=https://x.org]y[/link] :smile:"
    transcript = write_session(tmp_path / "t.jsonl", [Say("[red]said[/red] [/]"), Write("a.py", "[/]\n")])
    live = shown("run", prompt, "--transcript", str(transcript), cwd=repo)  # `[/]` as markup would raise
    assert "│ [red]said[/red] [/]" in live
    (run,) = json.loads(cli("history", "--json", cwd=repo).stdout)
    assert "prompt     " + prompt in shown("show", run["id"], cwd=repo)
    (row,) = [line for line in shown("history", cwd=repo) if run["id"] in line]
    assert row.endswith("│ " + prompt)
    assert shown("blame", "a.py", "--rev", run["branch"], cwd=repo)[1] == "1 ✦ [/]"


def test_gate_and_check_output_escaped(repo, tmp_path):
    commit_policy(repo, '[gate]\n[[gate.check]]\nname = "t\\u001b]0;x\\u0007"\n'
                        'run = "printf \'out \\\\033]0;PWNED\\\\007 here\\\\n\'"\n')
    transcript = write_session(tmp_path / "t.jsonl", [Write("feature.py", "1\n")])
    result = cli("run", "add feature", "--transcript", str(transcript), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["id"]
    gate = shown("gate", "simulate", run_id, cwd=repo)
    assert "⚑ out \\x1b]0;PWNED\\x07 here" in gate
    assert any(line.startswith("  check t\\x1b]0;x\\x07: passed (exit 0, ") for line in gate)

    (repo / "CLAUDE.md").write_text('```promptrail\n[[rule]]\nid = "no-xx"\npaths = ["*.py"]\nforbid = \'XX\'\n'
                                    'message = "bad \\u001b]0;PWNED\\u0007 thing"\nseverity = "warning"\n```\n')
    (repo / "x.py").write_text('a = "XX"\n')
    assert shown("check", "x.py", cwd=repo)[0] == "x.py:1:6: warning [no-xx] bad \\x1b]0;PWNED\\x07 thing"
    assert shown("check", "x.py", "--format", "github", cwd=repo) == [
        "::warning file=x.py,line=1,col=6,title=CLAUDE.md rule no-xx::bad \\x1b]0;PWNED\\x07 thing"]


# -- a private key printed line by line ----------------------------------------------------------------
def test_private_key_printed_line_by_line_is_redacted_everywhere(repo, tmp_path):
    encoded = base64.b64encode(os.urandom(192)).decode()
    body = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]  # 4 lines, unique to this test
    key = ["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"]
    transcript = write_session(tmp_path / "t.jsonl", [Say("here is the key"), Write("deploy.py", "KEY = None\n")],
                               raw_lines={2: [*key, "key printed"]})
    result = cli("run", "print the deploy key", "--transcript", str(transcript), cwd=repo)
    assert result.returncode == 0, result.stderr
    run = json.loads(cli("history", "--json", cwd=repo).stdout)[0]

    log_json = cli("log", run["id"], "--json", cwd=repo).stdout
    assert [e["text"] for e in json.loads(log_json) if e["kind"] == "raw"] == [
        "-----BEGIN PRIVATE KEY-----[REDACTED]", "[REDACTED]", "[REDACTED]", "[REDACTED]", "[REDACTED]",
        "[REDACTED]", "key printed"]
    commit = git(repo, "log", "-1", "--format=%B", run["commit_sha"])
    note = git(repo, "notes", "--ref=refs/notes/promptrail", "show", run["commit_sha"])
    store = b"".join(path.read_bytes() for path in (repo / ".git" / "promptrail").glob("audit.db*"))
    for line in body:
        for piece in (line, line[10:40]):
            assert piece not in log_json and piece not in result.stdout + result.stderr
            assert piece not in commit and piece not in note
            assert piece.encode() not in store
