"""`promptrail costs` as a user runs it: spend by user, model, day and agent over real runs in a real
repository, `--since`, its bad-date error and the `--json` shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from promptrail.workspace import Workspace
from tests.support.transcripts import Write, transcript_lines


def promptrail(repo, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", *args, "--repo", str(repo)], capture_output=True,
                          text=True, env={**os.environ, "TZ": "UTC", **(env or {})})


def tokens(input: int, output: int) -> dict[str, int]:
    return {"input": input, "output": output, "cache_read": 0, "cache_write": 0}


@pytest.fixture
def three_runs(repo, tmp_path):
    """dev@ on sonnet (reported $0.45) on March 1st, lead@ on haiku (computed $0.15) on March 2nd,
    dev@ on a model without a price (cost unknown) on March 5th."""
    runs = [("dev@example.com", "claude-sonnet-4-5", 0.45, 100_000, 10_000, "2026-03-01T12:00:00Z"),
            ("lead@example.com", "claude-haiku-4-5", None, 100_000, 10_000, "2026-03-02T12:00:00Z"),
            ("dev@example.com", "mystery-model", None, 1_000, 100, "2026-03-05T12:00:00Z")]
    for number, (email, model, cost, input_tokens, output_tokens, started) in enumerate(runs):
        lines = transcript_lines([Write(f"f{number}.py", "1\n")], cost=cost, usage={
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0})
        lines[0]["model"] = model
        path = tmp_path / f"t{number}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        result = promptrail(repo, "run", f"change {number}", "--transcript", str(path), "--json",
                            env={"GIT_AUTHOR_NAME": email.split("@")[0], "GIT_AUTHOR_EMAIL": email})
        assert result.returncode == 0, result.stderr
        workspace = Workspace(repo)
        workspace.store.update_run(json.loads(result.stdout)["id"], started_at=started)  # as if run that day
        workspace.close()
    return repo


def costs_json(repo, *args: str) -> dict:
    result = promptrail(repo, "costs", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_costs_by_user_is_the_whole_json_shape(three_runs):
    assert costs_json(three_runs, "--by", "user") == {
        "by": "user", "since": None,
        "groups": [{"key": "dev@example.com", "runs": 2, "cost_usd": 0.45, "unknown_cost_runs": 1,
                    "cost_mismatch_runs": 0, "tokens": tokens(101_000, 10_100)},
                   {"key": "lead@example.com", "runs": 1, "cost_usd": 0.15, "unknown_cost_runs": 0,
                    "cost_mismatch_runs": 0, "tokens": tokens(100_000, 10_000)}],
        "total": {"runs": 3, "cost_usd": 0.6, "unknown_cost_runs": 1, "tokens": tokens(201_000, 20_100)}}


def test_costs_by_model_day_and_agent(three_runs):
    def rows(report: dict) -> list[tuple]:
        return [(g["key"], g["runs"], g["cost_usd"], g["unknown_cost_runs"]) for g in report["groups"]]

    assert rows(costs_json(three_runs, "--by", "model")) == [
        ("claude-haiku-4-5", 1, 0.15, 0), ("claude-sonnet-4-5", 1, 0.45, 0), ("mystery-model", 1, None, 1)]
    assert rows(costs_json(three_runs, "--by", "day")) == [
        ("2026-03-01", 1, 0.45, 0), ("2026-03-02", 1, 0.15, 0), ("2026-03-05", 1, None, 1)]
    assert rows(costs_json(three_runs, "--by", "agent")) == [("replay", 3, 0.6, 1)]
    assert rows(costs_json(three_runs)) == rows(costs_json(three_runs, "--by", "day"))  # day is the default


def test_costs_since_a_past_date(three_runs):
    report = costs_json(three_runs, "--by", "user", "--since", "2026-03-02")
    assert [(g["key"], g["runs"], g["cost_usd"]) for g in report["groups"]] == [
        ("dev@example.com", 1, None), ("lead@example.com", 1, 0.15)]
    assert report["since"] == "2026-03-02"
    assert report["total"] == {"runs": 2, "cost_usd": 0.15, "unknown_cost_runs": 1, "tokens": tokens(101_000, 10_100)}
    assert costs_json(three_runs, "--since", "2026-03-06")["groups"] == []


@pytest.mark.parametrize("since", ["2026-13-01", "yesterday", "2026-3-1"])
def test_a_bad_since_is_one_error_line(repo, since):
    result = promptrail(repo, "costs", "--since", since)
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", f"promptrail: error: --since '{since}' is not a date; write it as YYYY-MM-DD\n")


def test_costs_as_a_table(three_runs):
    result = promptrail(three_runs, "costs", "--by", "model")
    assert result.returncode == 0, result.stderr
    lines = [[cell for cell in line.split() if cell not in "│┃"] for line in result.stdout.splitlines()]
    assert ["claude-haiku-4-5", "1", "$0.150", "100,000", "10,000", "0", "0"] in lines
    assert ["mystery-model", "1", "cost", "unknown", "1", "1,000", "100", "0", "0"] in lines
    assert ["total", "3", "$0.600", "1", "201,000", "20,100", "0", "0"] in lines


def test_the_price_table_errors_reach_the_cli(repo, tmp_path):
    (repo / ".promptrail.toml").write_text('[[prices.models]]\npattern = "claude-sonnet-4*"\ninput = 1.0\n')
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in transcript_lines([Write("x.py", "1\n")])))
    result = promptrail(repo, "run", "p", "--transcript", str(path))
    assert (result.returncode, result.stderr) == (2, f"promptrail: error: {repo / '.promptrail.toml'}:1: unknown key "
                                                     "'models' in [prices]; write each price as a [[prices.model]] "
                                                     "table\n")
