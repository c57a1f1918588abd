"""Pure functions of the core: redaction, configuration, the hash chain, labels, blame parsing."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, strategies as st

from promptrail.audit import ledger
from promptrail.config import load_config, user_config_path
from promptrail.errors import PromptrailError
from promptrail.gitops.attribution import LineGroup, group_lines, parse_porcelain
from promptrail.gitops.commit import commit_message, summarize
from promptrail.queries import format_cost, format_tokens, lens_title
from promptrail.redact import redact


@pytest.mark.parametrize("text, expected", [
    ("key sk-ant-api03-AbCdEf_123-xyzXYZ0 ok", "key sk-ant-[REDACTED] ok"),
    ("openai sk-proj-abcdefghijklmnopqrstuvwx", "openai sk-[REDACTED]"),
    ("aws AKIAABCDEFGHIJKLMNOP", "aws AKIA[REDACTED]"),
    ("gh ghp_" + "a" * 36, "gh gh_[REDACTED]"),
    ("no secrets here, sk-short", "no secrets here, sk-short"),
    ("", ""),
])
def test_redact(text, expected):
    assert redact(text) == expected


@given(st.text())
def test_redact_is_idempotent(text):
    assert redact(redact(text)) == redact(text)


def test_summarize_cuts_at_a_word():
    assert summarize("  \n add retries to fetch()\nmore") == "add retries to fetch()"
    assert summarize("word " * 30) == ("word " * 14).strip() + "…"
    assert summarize("") == "(empty prompt)"


def test_commit_message_ends_with_the_trailer():
    message = commit_message("add x", "add x\n\nwith details", "abc123", "Claude Code CLI")
    assert message == "add x\n\nadd x\n\nwith details\n\nAgent: Claude Code CLI\n\nPromptrail-Run: abc123\n"


def test_labels():
    assert format_cost(None) == "cost unknown"
    assert format_cost(0.0325) == "$0.033"
    assert format_cost(0.004) == "$0.0040"
    assert format_cost(12.5) == "$12.50"
    row = {"summary": "add retries", "prompt": "add retries", "cost_usd": 0.042, "tokens_input": 18000,
           "tokens_output": 300, "tokens_cache_read": 0, "tokens_cache_write": 0, "gate_status": "pending",
           "agent": "claude-cli", "status": "succeeded"}
    assert lens_title(row) == "✦ add retries · $0.042 · 18.3k tok · gate: pending"
    assert format_tokens({"tokens_input": 999}) == "999 tok"


def test_parse_porcelain_and_group_lines():
    a, b = "a" * 40, "b" * 40
    output = (f"{a} 1 1 2\nauthor X\nfilename f\n\tline1\n{a} 2 2\n\tline2\n"
              f"{b} 1 3 1\nauthor Y\nfilename f\n\tline3\n{a} 3 4 1\n\tline4\n")
    shas = parse_porcelain(output)
    assert shas == [a, a, b, a]
    assert group_lines(shas, {a: "run1", b: None}) == [LineGroup(0, 1, "run1", a), LineGroup(3, 3, "run1", a)]


def _chain(n: int) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, ts TEXT, kind TEXT, run_id TEXT, actor TEXT, "
                 "data TEXT, prev_hash TEXT, hash TEXT)")
    for i in range(n):
        ledger.append(conn, ts=f"t{i}", kind="k", run_id="r", actor="a", data={"i": i})
    return conn


def test_ledger_detects_alteration_deletion_and_reordering():
    assert ledger.verify(_chain(5)) == ledger.Verdict(True, 5)
    altered = _chain(5)
    altered.execute("UPDATE events SET data = '{\"i\":99}' WHERE seq = 3")
    assert ledger.verify(altered) == ledger.Verdict(False, 2, 3, "row 3: content does not match its hash (row altered)")
    deleted = _chain(5)
    deleted.execute("DELETE FROM events WHERE seq = 5")
    assert ledger.verify(deleted).ok  # a cut-off tail is invisible to the chain alone...
    assert ledger.verify(deleted, anchor=(5, "x")) == ledger.Verdict(  # ...but not against the anchor
        False, 4, 5, "row 5: missing; the feed had 5 rows (rows were deleted from its end)")
    deleted.execute("DELETE FROM events WHERE seq = 2")
    assert ledger.verify(deleted).first_bad_seq == 3
    resealed = _chain(3)
    # Rewriting a row *and* its hash does not help: the next row's prev_hash no longer matches.
    row = dict(zip(("seq", "ts", "kind", "run_id", "actor", "data"), resealed.execute(
        "SELECT seq, ts, kind, run_id, actor, data FROM events WHERE seq = 2").fetchone()))
    row["actor"] = "mallory"
    resealed.execute("UPDATE events SET actor = 'mallory', hash = ? WHERE seq = 2",
                     [ledger.seal(resealed.execute("SELECT prev_hash FROM events WHERE seq = 2").fetchone()[0], row)])
    assert ledger.verify(resealed) == ledger.Verdict(False, 2, 3, "row 3: prev_hash does not match row 2's hash")


def test_config_layers_and_errors(tmp_path, isolated_home):
    user = user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text('[agent]\nmodel = "claude-user"\nmode = "direct"\n')
    (tmp_path / ".promptrail.toml").write_text('[agent]\nmode = "isolated"\n')
    config = load_config(tmp_path)
    assert (config.agent.model, config.agent.mode, config.agent.name) == ("claude-user", "isolated", "claude-cli")
    (tmp_path / ".promptrail.toml").write_text('[agent]\nname = "gpt"\n')
    with pytest.raises(PromptrailError, match="^\\[agent\\] name = 'gpt' is not an agent; use one of"):
        load_config(tmp_path)
    user.write_text("[agent\n")
    with pytest.raises(PromptrailError) as excinfo:
        load_config(tmp_path)
    assert str(excinfo.value).startswith(f"{user}:1: invalid TOML: ")
