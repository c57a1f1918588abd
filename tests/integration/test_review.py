"""`promptrail review RUN`: the model judges a run's diff against the prose of the base commit's
CLAUDE.md files, through the real `anthropic` SDK against the project's fake Messages API
(tests/support/fake_anthropic.py), never the real one. Runs are made with the replay agent by the
real `promptrail run`; findings are read back through `promptrail show --json` and the feed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptrail.standards.review import BadReply, parse_findings
from tests.conftest import git, make_repo
from tests.support.fake_anthropic import FakeAnthropic, HttpError, Turn
from tests.support.transcripts import Say, Write, write_transcript

ROOT_CLAUDE_MD = r'''# How we work

Keep functions short and name them for what they do.
- Never log a request's headers: they carry tokens.
- Every public function has a docstring.

```promptrail
[[rule]]
id = "no-print"
paths = ["**/*.py"]
forbid = '\bprint\('
message = "Use logging, not print."
severity = "warning"
```
'''
PKG_CLAUDE_MD = "# pkg\n\nModules in pkg/ never import from `app`.\n"
CHANGED = '''import logging

log = logging.getLogger(__name__)


def fetch(request):
    log.info("headers: %s", request.headers)
    print("fetched")
    return request.body
'''
GOOD = [
    {"file": "pkg/fetch.py", "line": 7, "rule": "Never log a request's headers: they carry tokens.",
     "why": "fetch() logs request.headers, which carry the caller's token.", "severity": "warning"},
    {"file": "pkg/fetch.py", "line": 6, "rule": "Every public function has a docstring.",
     "why": "fetch() is public and has no docstring.", "severity": "info"},
]
EXPECTED_VIOLATIONS = [
    {"rule_id": "Every public function has a docstring.", "path": "pkg/fetch.py", "line": 6, "start_col": 0,
     "end_col": 0, "severity": "info", "message": "fetch() is public and has no docstring.",
     "source": "CLAUDE.md (review)", "rule_file": "CLAUDE.md", "rule_line": 5},
    {"rule_id": "Never log a request's headers: they carry tokens.", "path": "pkg/fetch.py", "line": 7,
     "start_col": 0, "end_col": 0, "severity": "warning",
     "message": "fetch() logs request.headers, which carry the caller's token.", "source": "CLAUDE.md (review)",
     "rule_file": "CLAUDE.md", "rule_line": 4},
]
RULE_CHECK = {"rule_id": "no-print", "path": "pkg/fetch.py", "line": 8, "start_col": 4, "end_col": 10,
              "severity": "warning", "message": "Use logging, not print.", "source": "CLAUDE.md",
              "rule_file": "CLAUDE.md", "rule_line": 8}


def cli(repo: Path, *args: str, api: FakeAnthropic | None = None, key: str | None = "test-key"
        ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    if api is not None:
        env["ANTHROPIC_BASE_URL"] = api.url
    if key is not None:
        env["ANTHROPIC_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "promptrail", *args, "--repo", str(repo)], capture_output=True,
                          text=True, timeout=120, env=env)


def cli_json(repo: Path, *args: str) -> object:
    result = cli(repo, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {"CLAUDE.md": ROOT_CLAUDE_MD, "pkg/CLAUDE.md": PKG_CLAUDE_MD,
                                            "pkg/__init__.py": ""})


@pytest.fixture
def run(repo: Path, tmp_path: Path) -> dict:
    """A replayed run that changes pkg/fetch.py (and breaks the no-print rule block on the way)."""
    transcript = write_transcript(tmp_path / "fetch.jsonl", [Say("Adding fetch()."), Write("pkg/fetch.py", CHANGED)])
    data = cli_json(repo, "run", "add fetch()", "--agent", "replay", "--transcript", str(transcript))
    assert isinstance(data, dict) and data["status"] == "succeeded"
    assert data["violations"] == [RULE_CHECK]
    return data


def reply(findings: object) -> list:
    return [Turn(text=json.dumps(findings))]


def review_events(repo: Path, run_id: str) -> list[dict]:
    return [e for e in cli_json(repo, "feed") if e["kind"] == "run.reviewed" and e["run_id"] == run_id]


# -- a good reply -------------------------------------------------------------------------------------
def test_findings_are_stored_as_review_violations(repo: Path, run: dict):
    with FakeAnthropic(reply({"findings": GOOD})) as api:
        result = cli(repo, "review", run["id"], "--json", api=api)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["run_id"] == run["id"] and printed["commit"] == run["commit_sha"]
    assert printed["base"] == run["base_sha"] and printed["model"] == "claude-sonnet-4-5"
    assert printed["source"] == "CLAUDE.md (review)"
    assert printed["counts"] == {"error": 0, "warning": 1, "info": 1, "hint": 0}
    assert [{k: f[k] for k in ("file", "line", "rule", "why", "severity")} for f in printed["findings"]] == GOOD
    assert printed["claude_md"] == ["CLAUDE.md", "pkg/CLAUDE.md"]

    # Stored exactly, beside the rule check's violation (which the review leaves alone).
    shown = cli_json(repo, "show", run["id"])
    assert sorted(shown["violations"], key=lambda v: (v["source"], v["line"])) == [RULE_CHECK, *EXPECTED_VIOLATIONS]

    # One request, carrying the base commit's CLAUDE.md prose and the run's diff.
    [request] = api.requests
    assert request.path == "/v1/messages"
    # The SDK sends the key as x-api-key or, in newer versions, as a bearer token.
    assert "test-key" in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:])
    body = request.body
    assert body["model"] == "claude-sonnet-4-5" and not body.get("stream")
    system = body["system"] if isinstance(body["system"], str) else "".join(b["text"] for b in body["system"])
    assert "=== CLAUDE.md (applies to the whole repository) ===" in system
    assert "- Never log a request's headers: they carry tokens." in system
    assert "=== pkg/CLAUDE.md (applies to pkg/ and below) ===" in system
    assert "Modules in pkg/ never import from `app`." in system
    [message] = body["messages"]
    assert message["role"] == "user"
    assert f"commit {run['commit_sha']}" in message["content"]
    assert "+++ b/pkg/fetch.py" in message["content"]
    assert '+    log.info("headers: %s", request.headers)' in message["content"]

    # The feed: one run.reviewed event that keeps every finding.
    [event] = review_events(repo, run["id"])
    assert event["data"]["total"] == 2 and event["data"]["warning"] == 1 and event["data"]["info"] == 1
    assert [f["rule"] for f in event["data"]["findings"]] == [f["rule"] for f in GOOD]
    assert event["data"]["tokens"] == {"input": 1200, "output": 85}
    assert event["actor"] == "Dev One <dev@example.com>"
    assert cli_json(repo, "verify")["ok"] is True


def test_text_output_and_an_error_finding_exit_1(repo: Path, run: dict):
    finding = {"file": "pkg/fetch.py", "line": 7, "rule": "Never log a request's headers: they carry tokens.",
               "why": "The headers are logged.", "severity": "error"}
    with FakeAnthropic(reply({"findings": [finding]})) as api:
        result = cli(repo, "review", run["id"][:8], "--model", "claude-haiku-4-5", api=api)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "pkg/fetch.py:7: error \"Never log a request's headers: they carry tokens.\" The headers are logged.",
        f"1 error · run {run['id']} · commit {run['commit_sha'][:12]} · judged by claude-haiku-4-5 against "
        "CLAUDE.md, pkg/CLAUDE.md"]
    assert api.requests[0].body["model"] == "claude-haiku-4-5"


def test_no_findings_and_a_second_review_replaces_the_first(repo: Path, run: dict):
    with FakeAnthropic(reply({"findings": GOOD}) + reply({"findings": []})) as api:
        assert cli(repo, "review", run["id"], api=api).returncode == 0
        second = cli(repo, "review", run["id"], api=api)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1].startswith(f"no findings · run {run['id']}")
    # The newest review speaks for the run; the rule check's violation stays; the feed keeps both.
    assert cli_json(repo, "show", run["id"])["violations"] == [RULE_CHECK]
    assert [e["data"]["total"] for e in review_events(repo, run["id"])] == [0, 2]


def test_model_from_agent_config_and_a_fenced_reply(repo: Path, run: dict):
    (repo / ".promptrail.toml").write_text('[agent]\nmodel = "claude-opus-4-1"\n')
    fenced = "```json\n" + json.dumps({"findings": GOOD[:1]}, indent=2) + "\n```\n"
    with FakeAnthropic([Turn(text=fenced)]) as api:
        result = cli(repo, "review", run["id"], "--json", api=api)
    assert result.returncode == 0, result.stderr
    assert api.requests[0].body["model"] == "claude-opus-4-1"
    assert [v["rule_id"] for v in cli_json(repo, "show", run["id"])["violations"] if v["source"] != "CLAUDE.md"] == [
        GOOD[0]["rule"]]


def test_a_paraphrased_rule_is_kept_without_a_location(repo: Path, run: dict):
    finding = {**GOOD[0], "rule": "don't log headers"}
    with FakeAnthropic(reply({"findings": [finding]})) as api:
        assert cli(repo, "review", run["id"], api=api).returncode == 0
    [stored] = [v for v in cli_json(repo, "show", run["id"])["violations"] if v["source"] == "CLAUDE.md (review)"]
    assert stored["rule_id"] == "don't log headers" and stored["rule_file"] is None and stored["rule_line"] is None


# -- bad replies: a clear line, exit 2, nothing stored -------------------------------------------------
def assert_nothing_stored(repo: Path, run: dict, feed_before: list) -> None:
    assert cli_json(repo, "show", run["id"])["violations"] == [RULE_CHECK]
    assert cli_json(repo, "feed") == feed_before


def test_a_reply_that_is_not_json(repo: Path, run: dict):
    feed_before = cli_json(repo, "feed")
    with FakeAnthropic([Turn(text="Looks good to me! No violations found.")]) as api:
        result = cli(repo, "review", run["id"], api=api)
    assert result.returncode == 2
    assert result.stderr == ("promptrail: error: the model's review reply is not valid JSON (Expecting value at "
                             "line 1, column 1); nothing was stored\n")
    assert result.stdout == ""
    assert len(api.requests) == 1
    assert_nothing_stored(repo, run, feed_before)


def test_a_reply_cut_off_mid_json(repo: Path, run: dict):
    feed_before = cli_json(repo, "feed")
    text = json.dumps({"findings": GOOD})[:60]
    with FakeAnthropic([Turn(text=text, stop_reason="max_tokens")]) as api:
        result = cli(repo, "review", run["id"], api=api)
    assert result.returncode == 2
    assert result.stderr == ("promptrail: error: the model's review was cut off at 8192 output tokens before its "
                             "JSON ended; nothing was stored\n")
    assert_nothing_stored(repo, run, feed_before)


WRONG_SHAPES = [
    (GOOD, 'the reply must be an object whose only key is "findings"'),
    ({"findings": GOOD, "summary": "two issues"}, 'the reply must be an object whose only key is "findings"'),
    ({"findings": {"file": "pkg/fetch.py"}}, '"findings" must be a list'),
    ({"findings": ["pkg/fetch.py:7"]}, "findings[0] must be an object"),
    ({"findings": [GOOD[0], {**GOOD[1], "fix": "add one"}]}, 'findings[1] has an unknown key "fix"'),
    ({"findings": [{k: v for k, v in GOOD[0].items() if k != "why"}]}, 'findings[0] lacks "why"'),
    ({"findings": [{**GOOD[0], "line": "7"}]}, 'findings[0].line must be a whole number of at least 1, not "7"'),
    ({"findings": [{**GOOD[0], "line": 0}]}, "findings[0].line must be a whole number of at least 1, not 0"),
    ({"findings": [{**GOOD[0], "line": True}]}, "findings[0].line must be a whole number of at least 1, not true"),
    ({"findings": [{**GOOD[0], "severity": "critical"}]},
     'findings[0].severity must be one of error, warning, info, hint, not "critical"'),
    ({"findings": [{**GOOD[0], "file": "../outside.py"}]},
     'findings[0].file must be a path inside the repository, not "../outside.py"'),
    ({"findings": [{**GOOD[0], "rule": "  "}]}, 'findings[0].rule must be a non-empty string, not "  "'),
    ({"findings": [{**GOOD[0], "why": None}]}, "findings[0].why must be a non-empty string, not null"),
]


@pytest.mark.parametrize("data, detail", [WRONG_SHAPES[0], WRONG_SHAPES[6]], ids=["a bare list", "line as text"])
def test_a_json_reply_of_the_wrong_shape(repo: Path, run: dict, data: object, detail: str):
    feed_before = cli_json(repo, "feed")
    with FakeAnthropic(reply(data)) as api:
        result = cli(repo, "review", run["id"], api=api)
    assert result.returncode == 2
    assert result.stderr == (f"promptrail: error: the model's review reply is not the expected JSON shape: {detail}; "
                             "nothing was stored\n")
    assert_nothing_stored(repo, run, feed_before)


@pytest.mark.parametrize("data, detail", WRONG_SHAPES, ids=[d for _, d in WRONG_SHAPES])
def test_every_shape_problem_is_named(data: object, detail: str):
    # The validation itself, without a run each (the CLI cases above show the whole path).
    with pytest.raises(BadReply) as raised:
        parse_findings(json.dumps(data))
    assert str(raised.value) == f"the model's review reply is not the expected JSON shape: {detail}; nothing was stored"


def test_an_api_error(repo: Path, run: dict):
    feed_before = cli_json(repo, "feed")
    with FakeAnthropic([HttpError(401, message="invalid x-api-key")]) as api:
        result = cli(repo, "review", run["id"], api=api, key="wrong")
    assert result.returncode == 2
    assert result.stderr == ("promptrail: error: the Anthropic API rejected the credentials (invalid x-api-key); "
                             "check ANTHROPIC_API_KEY\n")
    assert_nothing_stored(repo, run, feed_before)


# -- bad input ------------------------------------------------------------------------------------------
def test_unknown_run_id(repo: Path, run: dict):
    with FakeAnthropic(reply({"findings": GOOD})) as api:
        result = cli(repo, "review", "zzzz", api=api)
    assert result.returncode == 2
    assert result.stderr == "promptrail: error: unknown run id 'zzzz'; `promptrail history` lists the runs\n"
    assert api.requests == []


def test_missing_api_key(repo: Path, run: dict):
    feed_before = cli_json(repo, "feed")
    with FakeAnthropic(reply({"findings": GOOD})) as api:
        result = cli(repo, "review", run["id"], api=api, key=None)
    assert result.returncode == 2
    assert result.stderr == ("promptrail: error: promptrail review needs an API key: set ANTHROPIC_API_KEY "
                             "(or ANTHROPIC_AUTH_TOKEN)\n")
    assert api.requests == []
    assert_nothing_stored(repo, run, feed_before)


def test_a_run_without_a_commit(repo: Path, tmp_path: Path):
    transcript = write_transcript(tmp_path / "idle.jsonl", [Say("Nothing to change.")])
    data = cli_json(repo, "run", "look around", "--agent", "replay", "--transcript", str(transcript))
    assert isinstance(data, dict) and data["status"] == "no_changes"
    with FakeAnthropic(reply({"findings": []})) as api:
        result = cli(repo, "review", data["id"], api=api)
    assert result.returncode == 2
    assert result.stderr == (f"promptrail: error: run {data['id']} has no commit (status: no_changes); there is "
                             "no change to review\n")
    assert api.requests == []


def test_a_base_without_claude_md(tmp_path: Path):
    repo = make_repo(tmp_path / "bare", {"README.md": "# bare\n"})
    transcript = write_transcript(tmp_path / "t.jsonl", [Write("a.py", "a = 1\n")])
    data = cli_json(repo, "run", "add a", "--agent", "replay", "--transcript", str(transcript))
    assert isinstance(data, dict)
    base = git(repo, "rev-parse", "HEAD").strip()
    with FakeAnthropic(reply({"findings": []})) as api:
        result = cli(repo, "review", data["id"], api=api)
    assert result.returncode == 2
    assert result.stderr == (f"promptrail: error: the base commit {base[:12]} of run {data['id']} has no CLAUDE.md; "
                             "there is nothing to review the change against\n")
    assert api.requests == []
