"""Costs and budgets: the price table, reported vs computed cost, mismatches, unknown models,
spend reports and budgets — against real runs in real repositories."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from promptrail import costs, gates
from promptrail.agents.base import Usage
from promptrail.errors import PromptrailError
from promptrail.runs import RunRequest, start_run
from promptrail.workspace import Workspace
from tests.conftest import git
from tests.integration.test_gates import as_user
from tests.integration.test_runs import run_prompt
from tests.support.transcripts import Write, transcript_lines


def test_price_table_resolves_dated_and_suffixed_ids():
    table = costs.builtin_table()
    assert table.find("claude-opus-4-8[1m]").pattern == "claude-opus-4-[5-9]*"
    assert table.find("claude-sonnet-4-5-20250929").input == 3.0
    assert table.find("claude-opus-4-1-20250805").output == 75.0
    assert table.find("gpt-4o") is None and table.find(None) is None


def test_compute_cost_matches_the_cli_for_the_demo_session():
    # The recorded demo session: the CLI reported $0.12715025 for these tokens.
    usage = Usage(input=16159, output=880, cache_read=8798, cache_write=3193)
    assert costs.compute_cost("claude-opus-4-8[1m]", usage) == 0.12715025


def test_one_hour_cache_writes_and_unknown_models():
    usage = Usage(cache_write=1_000_000, cache_write_1h=400_000)
    assert costs.compute_cost("claude-sonnet-4-5", usage) == pytest.approx(0.6 * 3.75 + 0.4 * 6.0)
    assert costs.compute_cost("mystery-model", Usage(input=10)) is None
    assert costs.compute_cost("claude-sonnet-4-5", None) is None


CHEAP_SONNET = {"pattern": "claude-sonnet-4*", "input": 1.0, "output": 2.0, "cache_write_5m": 1.25,
                "cache_write_1h": 2.0, "cache_read": 0.1}


def test_config_prices_come_first():
    table = costs.price_table({"model": [CHEAP_SONNET]})
    assert costs.compute_cost("claude-sonnet-4-5", Usage(input=1_000_000, output=1_000_000), table) == 3.0
    with pytest.raises(PromptrailError) as caught:
        costs.price_table({"model": [{**CHEAP_SONNET, "pattern": "x", "inptu": 1.0}]})
    assert str(caught.value) == ("unknown key 'inptu' in [[prices.model]] 'x'; known keys: pattern, input, output, "
                                 "cache_write_5m, cache_write_1h, cache_read")


def test_an_override_must_give_every_price():
    # Left out, the cache prices would silently be $0.
    entry = {"pattern": "claude-sonnet-4*", "input": 1.0, "output": 2.0}
    with pytest.raises(PromptrailError) as caught:
        costs.price_table({"model": [entry]})
    assert str(caught.value) == ("[[prices.model]] 'claude-sonnet-4*' has no cache_write_5m price; give all five "
                                 "(input, output, cache_write_5m, cache_write_1h, cache_read) in dollars per "
                                 "million tokens")


def _run_with(repo, tmp_path, *, model: str, cost: float | None, usage: dict[str, int],
              model_usage: dict[str, dict[str, int]] | None = None) -> dict:
    lines = transcript_lines([Write("x.py", "1\n")], cost=cost, usage=usage)
    lines[0]["model"] = model
    if model_usage is not None:
        lines[-1]["modelUsage"] = model_usage
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = subprocess.run([sys.executable, "-m", "promptrail", "run", "p", "--transcript", str(path), "--json",
                             "--repo", str(repo)], capture_output=True, text=True)
    return json.loads(result.stdout)


USAGE = {"input_tokens": 100_000, "output_tokens": 10_000, "cache_read_input_tokens": 0,
         "cache_creation_input_tokens": 0}


def test_reported_and_computed_cost_agree(repo, tmp_path):
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.45, usage=USAGE)
    assert (data["cost_usd"], data["cost_source"], data["cost_computed_usd"], data["cost_mismatch"]) == \
        (0.45, "reported", 0.45, False)


def test_cost_mismatch_is_flagged_and_logged(repo, tmp_path):
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.50, usage=USAGE)
    assert data["cost_mismatch"] is True and data["cost_usd"] == 0.50 and data["cost_computed_usd"] == 0.45
    log = [e["text"] for e in Workspace(repo).store.log(data["id"])]
    assert ("cost mismatch: the agent reported $0.5000, the tokens cost $0.4500 at claude-sonnet-4-5's prices "
            "(more than 5 % apart)") in log


def test_a_mismatch_of_tiny_costs_shows_two_different_amounts(repo, tmp_path):
    usage = {**USAGE, "input_tokens": 150, "output_tokens": 0}  # 150 tokens at $3/M: $0.00045
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.0004, usage=usage)
    assert data["cost_mismatch"] is True
    log = [e["text"] for e in Workspace(repo).store.log(data["id"])]
    assert ("cost mismatch: the agent reported $0.00040, the tokens cost $0.00045 at claude-sonnet-4-5's prices "
            "(more than 5 % apart)") in log


@pytest.mark.parametrize("apart, flagged", [(0.049, False), (0.051, True)])
def test_the_mismatch_boundary_is_five_percent(repo, tmp_path, apart, flagged):
    # USAGE costs $0.45 at claude-sonnet-4-5's prices; the reported figure is `apart` below it.
    reported = round(0.45 * (1 - apart), 6)
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=reported, usage=USAGE)
    assert (data["cost_usd"], data["cost_computed_usd"], data["cost_mismatch"]) == (reported, 0.45, flagged)


def test_each_model_of_model_usage_is_priced_at_its_own_prices(repo, tmp_path):
    # Claude Code's result: `usage` is the main conversation (sonnet, 1-hour cache writes);
    # `modelUsage` adds a haiku helper call, and total_cost_usd covers both.
    usage = {**USAGE, "cache_creation_input_tokens": 20_000, "cache_creation": {"ephemeral_1h_input_tokens": 20_000}}
    model_usage = {
        "claude-sonnet-4-5": {"inputTokens": 100_000, "outputTokens": 10_000, "cacheReadInputTokens": 0,
                              "cacheCreationInputTokens": 20_000},
        "claude-haiku-4-5": {"inputTokens": 50_000, "outputTokens": 2_000, "cacheReadInputTokens": 0,
                             "cacheCreationInputTokens": 1_000},
    }
    sonnet = 100_000 * 3.0 + 10_000 * 15.0 + 20_000 * 6.0   # $0.57: the 1-hour writes at $6 per million
    haiku = 50_000 * 1.0 + 2_000 * 5.0 + 1_000 * 1.25       # $0.06125
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.63125, usage=usage, model_usage=model_usage)
    assert data["cost_computed_usd"] == round((sonnet + haiku) / 1e6, 8) == 0.63125
    assert (data["cost_usd"], data["cost_mismatch"]) == (0.63125, False)
    assert data["tokens"] == {"input": 150_000, "output": 12_000, "cache_read": 0, "cache_write": 21_000}


def test_a_model_usage_entry_without_a_price_makes_the_computed_cost_unknown(repo, tmp_path):
    model_usage = {"claude-sonnet-4-5": {"inputTokens": 100_000, "outputTokens": 10_000},
                   "mystery-helper": {"inputTokens": 10, "outputTokens": 1}}
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.5, usage=USAGE, model_usage=model_usage)
    assert (data["cost_usd"], data["cost_computed_usd"], data["cost_mismatch"]) == (0.5, None, False)
    log = [(e["kind"], e["text"]) for e in Workspace(repo).store.log(data["id"])]
    assert ("warning", "no price known for model 'mystery-helper': the computed cost is unknown (add it under "
                       "[prices] in .promptrail.toml)") in log


def test_unknown_model_has_unknown_computed_cost(repo, tmp_path):
    data = _run_with(repo, tmp_path, model="mystery-model", cost=None, usage=USAGE)
    assert data["cost_usd"] is None and data["cost_source"] is None and data["cost_computed_usd"] is None
    log = [(e["kind"], e["text"]) for e in Workspace(repo).store.log(data["id"])]
    assert ("warning", "no price known for model 'mystery-model': the computed cost is unknown (add it under "
                       "[prices] in .promptrail.toml)") in log


def test_config_prices_change_a_runs_computed_cost(repo, tmp_path):
    (repo / ".promptrail.toml").write_text('[[prices.model]]\npattern = "claude-sonnet-4*"\ninput = 1.0\n'
                                           'output = 2.0\ncache_write_5m = 1.25\ncache_write_1h = 2.0\n'
                                           'cache_read = 0.1\n')
    data = _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=None, usage=USAGE)
    # 100,000 input tokens at $1 and 10,000 output tokens at $2 per million (built in: $0.45).
    assert (data["cost_computed_usd"], data["cost_usd"], data["cost_source"]) == (0.12, 0.12, "computed")


def test_costs_report_groups_and_keeps_unknown_apart(repo, tmp_path):
    _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.45, usage=USAGE)
    _run_with(repo, tmp_path, model="mystery-model", cost=None, usage=USAGE)
    report = costs.spend_report(Workspace(repo).store, by="model")
    assert [(g["key"], g["runs"], g["cost_usd"], g["unknown_cost_runs"]) for g in report["groups"]] == [
        ("claude-sonnet-4-5", 1, 0.45, 0), ("mystery-model", 1, None, 1)]
    assert report["total"] == {"runs": 2, "cost_usd": 0.45, "unknown_cost_runs": 1,
                               "tokens": {"input": 200_000, "output": 20_000, "cache_read": 0, "cache_write": 0}}
    assert costs.spend_report(Workspace(repo).store, since="2999-01-01")["groups"] == []


def test_daily_budgets_refuse_a_run_before_it_starts(repo, tmp_path):
    _run_with(repo, tmp_path, model="claude-sonnet-4-5", cost=0.45, usage=USAGE)
    (repo / ".promptrail.toml").write_text("[budget]\nper_user_day_usd = 0.40\n")
    with pytest.raises(PromptrailError) as excinfo:
        run_prompt(repo, [Write("y.py", "1\n")])
    assert str(excinfo.value) == ("budget reached: dev@example.com spent $0.450 today, the per-user daily budget "
                                  "is $0.400 ([budget] per_user_day_usd); try again tomorrow or raise it")
    (repo / ".promptrail.toml").write_text("[budget]\nper_repo_day_usd = 0.45\n")
    with pytest.raises(PromptrailError, match=r"^budget reached: this repository spent \$0.450 today, its daily "):
        run_prompt(repo, [Write("y.py", "1\n")])
    (repo / ".promptrail.toml").write_text("[budget]\nper_day = 1\n")
    with pytest.raises(PromptrailError, match=r"unknown key 'per_day' in \[budget\]"):
        run_prompt(repo, [Write("y.py", "1\n")])


def test_a_run_stopped_by_its_budget_commits_what_it_changed(repo, tmp_path):
    lines = transcript_lines([Write("partial.py", "half done\n")], is_error=True, cost=0.21)
    lines[-1]["subtype"] = "error_max_budget_usd"
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ws = Workspace(repo)

    async def go():
        run = await start_run(ws, RunRequest(prompt="big job", transcript=str(path)))
        return await run.wait()

    data = asyncio.run(go())
    assert data["status"] == "budget_exceeded"
    assert data["commit_sha"] is not None and [f["path"] for f in data["files"]] == ["partial.py"]
    assert data["gate"]["status"] == "pending" and data["gate"]["can_merge"] is False
    # Its partial work may be merged once someone else approves it; a failed run's may not.
    failed = run_prompt(repo, [Write("broken.py", "1\n")], is_error=True)
    as_user(repo, "lead@example.com")
    for run in (data, failed):
        assert gates.sign_off(ws, run["id"], "approve").label == "approved by lead@example.com"
    merged = gates.merge(ws, data["id"])
    assert (merged.status, git(repo, "rev-parse", "main").strip()) == ("merged", data["commit_sha"])
    with pytest.raises(PromptrailError) as excinfo:
        gates.merge(ws, failed["id"])
    assert str(excinfo.value) == (f"run {failed['id']} cannot be merged: the run ended failed; only a finished "
                                  "run's work can be merged")
