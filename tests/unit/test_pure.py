"""Pure functions of the core: redaction, configuration, the hash chain, labels, blame parsing."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from promptrail import costs
from promptrail.agents import anthropic_api
from promptrail.audit import ledger, store
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


# Any code point, lone surrogates and controls included: the digest of a stored log must not change.
@given(st.integers(min_value=0, max_value=2**62), st.text(), st.text(st.characters(blacklist_categories=())))
def test_log_line_json_is_exactly_what_json_dumps_writes(seq, kind, text):
    expected = json.dumps([seq, "2026-12-04T17:00:00.000Z", kind, text], separators=(",", ":"), ensure_ascii=False)
    assert ledger.log_line_json(seq, "2026-12-04T17:00:00.000Z", kind, text) == expected


def test_log_digest_of_a_known_log():
    digest = ledger.LogDigest()
    digest.add(1, "2026-12-04T17:00:00.000Z", "text", 'say "hi"\n\té')
    digest.add(2, "2026-12-04T17:00:00.001Z", "error", "\x00")
    body = ('[1,"2026-12-04T17:00:00.000Z","text","say \\"hi\\"\\n\\té"]\n'
            '[2,"2026-12-04T17:00:00.001Z","error","\\u0000"]\n')
    assert digest.as_seal() == {"count": 2, "through_seq": 2,
                                "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest()}


def test_utc_now_is_the_current_millisecond():
    before = datetime.now(timezone.utc)
    stamp = store.utc_now()
    after = datetime.now(timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed <= after
    time.sleep(0.002)
    assert store.utc_now() > stamp  # the cached string moves on with the clock


def test_config_layers_and_errors(tmp_path, isolated_home):
    user = user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text('[agent]\nmodel = "claude-user"\nmode = "direct"\n')
    (tmp_path / ".promptrail.toml").write_text('[agent]\nmode = "isolated"\n')
    config = load_config(tmp_path)
    assert (config.agent.model, config.agent.mode, config.agent.name) == ("claude-user", "isolated", "claude-cli")
    user.write_text("[agent\n")
    with pytest.raises(PromptrailError) as excinfo:
        load_config(tmp_path)
    assert str(excinfo.value).startswith(f"{user}:1: invalid TOML: ")


def _config_error(tmp_path, repo_text: str, user_text: str = "", section: str = "agent") -> str:
    user = user_config_path()
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(user_text)
    (tmp_path / ".promptrail.toml").write_text(repo_text)
    parsers = {"budget": costs.budget_from, "prices": costs.price_table, "anthropic": anthropic_api.settings_from}
    with pytest.raises(PromptrailError) as caught:
        config = load_config(tmp_path)
        config.parse(section, parsers[section])
    return str(caught.value)


@pytest.mark.parametrize("text, line, message", [
    ('[agent]\nname = "gpt"\n', 2, "[agent] name = 'gpt' is not an agent; use one of claude-cli, replay, anthropic"),
    ('[agent]\nmodel = "m"\nmode = "yolo"\n', 3, "[agent] mode = 'yolo' is not a mode; use one of isolated, direct"),
    ("[agent]\nsilence_timeout_s = -1\n", 2,
     "[agent] silence_timeout_s must be a positive number of seconds, not -1"),
    ('[agent]\nsilence_timeout_s = "10"\n', 2, "[agent] silence_timeout_s must be a number, not '10'"),
    ("[agent]\nmodel = 4\n", 2, "[agent] model must be a string, not 4"),
    ("agent = 3\n", 1, "'agent' must be a table; write it as [agent]"),
])
def test_agent_config_errors_name_file_and_line(tmp_path, text, line, message):
    assert _config_error(tmp_path, text) == f"{tmp_path / '.promptrail.toml'}:{line}: {message}"


@pytest.mark.parametrize("section, text, line, message", [
    ("budget", "[budget]\nper_run_usd = 1\n\nper_user_day_usd = -2\n", 4,
     "[budget] per_user_day_usd must be a positive number of dollars, not -2"),
    ("budget", "[budget]\nper_day = 1\n", 2,
     "unknown key 'per_day' in [budget]; known keys: per_repo_day_usd, per_run_usd, per_user_day_usd"),
    ("anthropic", "[anthropic]\nmax_turns = 0\n", 2, "[anthropic] max_turns must be positive, not 0"),
    ("anthropic", "[anthropic]\nmax_tokens = 1.5\n", 2, "[anthropic] max_tokens must be a whole number, not 1.5"),
    ("anthropic", "[anthropic]\nallowed_commands = ['pytest \"-q']\n", 2,
     "[anthropic] allowed_commands entry 'pytest \"-q' cannot be split into words (No closing quotation); "
     "fix its quoting"),
    ("prices", '[[prices.models]]\npattern = "x"\n', 1,
     "unknown key 'models' in [prices]; write each price as a [[prices.model]] table"),
    ("prices", '[[prices.model]]\npattern = "a"\ninput = 1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\n'
               'cache_read = 1\n\n[[prices.model]]\npattern = "b"\ninput = 1\nouput = 1\n', 12,
     "unknown key 'ouput' in [[prices.model]] 'b'; known keys: pattern, input, output, cache_write_5m, "
     "cache_write_1h, cache_read"),
    ("prices", '[[prices.model]]\npattern = "b"\ninput = 1\noutput = 2\n', 1,
     "[[prices.model]] 'b' has no cache_write_5m price; give all five (input, output, cache_write_5m, "
     "cache_write_1h, cache_read) in dollars per million tokens"),
    ("prices", '[[prices.model]]\npattern = "b"\ninput = -1\n', 3,
     "[[prices.model]] 'b' input must be dollars per million tokens (a number, 0 or more), not -1"),
    ("prices", "[[prices.model]]\ninput = 1\n", 1,
     'each [[prices.model]] table needs a pattern, a glob of model ids such as "claude-sonnet-4*"'),
])
def test_section_config_errors_name_file_and_line(tmp_path, section, text, line, message):
    assert _config_error(tmp_path, text, section=section) == f"{tmp_path / '.promptrail.toml'}:{line}: {message}"


@pytest.mark.parametrize("text, message", [
    ("[agent]\nmodel = 'm'\nsilence_timeout_s = nan\n",
     ":3: agent.silence_timeout_s = nan is not a usable number; write a finite one"),
    ("[budget]\nper_run_usd = inf\n", ":2: budget.per_run_usd = inf is not a usable number; write a finite one"),
    ("[gate]\n[[gate.check]]\nname = 'a'\nrun = 'x'\ntimeout_s = -inf\n",
     ":5: gate.check.0.timeout_s = -inf is not a usable number; write a finite one"),
])
def test_nan_and_inf_are_refused_wherever_they_are_written(tmp_path, text, message):
    (tmp_path / ".promptrail.toml").write_text(text)
    with pytest.raises(PromptrailError) as excinfo:
        load_config(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / '.promptrail.toml'}{message}"


def test_a_config_that_is_not_a_file_is_an_error_and_a_bom_is_read(tmp_path):
    path = tmp_path / ".promptrail.toml"
    path.mkdir()
    with pytest.raises(PromptrailError) as excinfo:
        load_config(tmp_path)
    assert str(excinfo.value) == f"{path} is not a readable file; make it a TOML file or remove it"
    path.rmdir()
    path.symlink_to(tmp_path / "gone.toml")
    with pytest.raises(PromptrailError) as excinfo:
        load_config(tmp_path)
    assert str(excinfo.value) == f"{path} is not a readable file; make it a TOML file or remove it"
    path.unlink()
    path.write_text('\ufeff[agent]\nmode = "direct"\n', encoding="utf-8")  # as some Windows editors save it
    assert load_config(tmp_path).agent.mode == "direct"


def test_config_errors_name_the_file_that_set_the_value(tmp_path, isolated_home):
    user = user_config_path()
    # The value at fault is the user's: the repository's file sets other keys of the same section.
    assert _config_error(tmp_path, '[agent]\nmodel = "m"\n', '# mine\n[agent]\nmode = "yolo"\n') == (
        f"{user}:3: [agent] mode = 'yolo' is not a mode; use one of isolated, direct")
    assert _config_error(tmp_path, "[budget]\nper_run_usd = 1\n", "[budget]\nper_repo_day_usd = 0\n",
                         section="budget") == (
        f"{user}:2: [budget] per_repo_day_usd must be a positive number of dollars, not 0")
    assert _config_error(tmp_path, "", "[anthropic]\n\ncommand_timeout_s = 0\n", section="anthropic") == (
        f"{user}:3: [anthropic] command_timeout_s must be positive, not 0")
    # The repository's value overrides the user's, so it is the one at fault.
    assert _config_error(tmp_path, "[budget]\nper_run_usd = -1\n", "[budget]\nper_run_usd = 1\n",
                         section="budget") == (
        f"{tmp_path / '.promptrail.toml'}:2: [budget] per_run_usd must be a positive number of dollars, not -1")
    # An array of tables comes whole from one file: the repository's [[prices.model]] replace the user's.
    repo_prices, user_prices = '[[prices.model]]\npattern = "r"\n', '[[prices.model]]\npattern = "u"\n'
    assert _config_error(tmp_path, repo_prices, user_prices, section="prices").startswith(
        f"{tmp_path / '.promptrail.toml'}:1: [[prices.model]] 'r' has no ")
