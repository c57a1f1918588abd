"""The ``anthropic`` agent through the real run pipeline: ``runs.start_run`` in real git repositories,
real SQLite, the real ``anthropic`` SDK streaming from the project's fake Messages API server
(``tests/support/fake_anthropic.py``). What the model was told is checked in the requests the fake
recorded; what the run did, in git, the audit store and the run log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptrail import costs
from promptrail.agents.anthropic_api import MISSING_KEY, AnthropicAgent, AnthropicSettings
from promptrail.agents.base import Finished, Raw, ToolResult, ToolUse, Usage
from promptrail.errors import PromptrailError
from promptrail.queries import run_log
from promptrail.runs import RunRequest, start_run
from promptrail.workspace import Workspace
from tests.conftest import git, make_repo
from tests.support.fake_anthropic import Disconnect, FakeAnthropic, HttpError, RecordedRequest, ToolCall, Turn

MODEL = "claude-sonnet-4-5"


class Collect:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def fake(monkeypatch):
    """Start a FakeAnthropic with a script and point the SDK at it through the environment."""
    servers: list[FakeAnthropic] = []

    def start(script: list[Any]) -> FakeAnthropic:
        api = FakeAnthropic(script).start()
        servers.append(api)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        return api

    yield start
    for api in servers:
        api.stop()


def configure(repo: Path, text: str) -> None:
    (repo / ".promptrail.toml").write_text(text)


def run(repo: Path, prompt: str = "do the thing", **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One run with the anthropic agent; returns the run (as `promptrail show --json`) and its log."""

    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        workspace = Workspace(repo)
        try:
            started = await start_run(workspace, RunRequest(prompt=prompt, agent="anthropic", model=MODEL,
                                                            **kwargs), Collect())
            data = await asyncio.wait_for(started.wait(), 60)
            return data, run_log(workspace, data["id"])
        finally:
            workspace.close()

    return asyncio.run(go())


def tool_results(request: RecordedRequest) -> dict[str, dict[str, Any]]:
    """The tool_result blocks a request carries in its last (user) message, by tool_use id."""
    last = request.body["messages"][-1]
    assert last["role"] == "user"
    return {block["tool_use_id"]: block for block in last["content"] if block.get("type") == "tool_result"}


def log_texts(log: list[dict[str, Any]], kind: str) -> list[str]:
    return [entry["text"] for entry in log if entry["kind"] == kind]


# -- a multi-turn edit ------------------------------------------------------------------------------
def test_multi_turn_edit_commits_exact_content_and_sums_usage_over_turns(repo, fake):
    api = fake([
        Turn("I'll create the module.", [ToolCall("write_file", {"path": "pkg/hello.py",
                                                                  "content": "def hello():\n    return 'hi'\n"})],
             input_tokens=1000, output_tokens=50, cache_creation_input_tokens=2000),
        Turn(None, [ToolCall("read_file", {"path": "pkg/hello.py"}), ToolCall("list_files", {})],
             input_tokens=1100, output_tokens=20, cache_read_input_tokens=2000, cache_creation_input_tokens=300),
        Turn("Now the edits.", [ToolCall("edit_file", {"path": "pkg/hello.py", "old_string": "'hi'",
                                                       "new_string": "'hello'"}),
                                ToolCall("edit_file", {"path": "app.py", "old_string": "return 1",
                                                       "new_string": "return 2"})],
             input_tokens=1300, output_tokens=70, cache_read_input_tokens=2300, cache_creation_input_tokens=150),
        Turn("Done: hello() now says hello.", input_tokens=1500, output_tokens=12, cache_read_input_tokens=2450),
    ])
    data, log = run(repo, "add a hello module")

    assert data["status"] == "succeeded", data["error"]
    assert data["agent"] == "anthropic" and data["agent_label"] == "Anthropic API"
    assert git(repo, "show", f"{data['commit_sha']}:pkg/hello.py") == "def hello():\n    return 'hello'\n"
    assert git(repo, "show", f"{data['commit_sha']}:app.py") == "def main():\n    return 2\n"
    assert sorted(f["path"] for f in data["files"]) == ["app.py", "pkg/hello.py"]
    # Usage summed exactly over the four turns, cache tokens included.
    expected = Usage(input=1000 + 1100 + 1300 + 1500, output=50 + 20 + 70 + 12,
                     cache_read=2000 + 2300 + 2450, cache_write=2000 + 300 + 150)
    assert data["tokens"] == {"input": 4900, "output": 152, "cache_read": 6750, "cache_write": 2450}
    assert data["num_turns"] == 4
    # The API reports no cost: the orchestrator computes it from the tokens.
    assert data["cost_source"] == "computed"
    assert data["cost_usd"] == costs.compute_cost(MODEL, expected) == pytest.approx(
        (4900 * 3 + 152 * 15 + 6750 * 0.3 + 2450 * 3.75) / 1e6)

    requests = api.agent_requests
    assert len(requests) == 4
    assert all(r.body["stream"] is True and r.body["model"] == MODEL for r in requests)
    assert [t["name"] for t in requests[0].body["tools"]] == [
        "read_file", "write_file", "edit_file", "list_files", "run_command"]
    assert requests[0].body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "add a hello module", "cache_control": {"type": "ephemeral"}}]}]
    # Turn 2 got turn 1's tool result; turn 3 the file as written and the file list.
    assert tool_results(requests[1]) == {"toolu_01": {"type": "tool_result", "tool_use_id": "toolu_01",
                                                      "content": "created pkg/hello.py (2 lines)",
                                                      "cache_control": {"type": "ephemeral"}}}
    second = tool_results(requests[2])
    assert second["toolu_02"]["content"] == "def hello():\n    return 'hi'\n"
    assert second["toolu_03"]["content"].splitlines() == ["README.md", "app.py", "pkg/hello.py"]
    assert "is_error" not in second["toolu_02"]
    third = tool_results(requests[3])
    assert [third[k]["content"] for k in ("toolu_04", "toolu_05")] == ["edited pkg/hello.py", "edited app.py"]
    # Only the newest block carries the conversation's cache mark (the API allows four per request).
    marks = [block for message in requests[3].body["messages"] for block in message["content"]
             if "cache_control" in block]
    assert len(marks) == 1
    # The assistant turns went back verbatim.
    assert requests[1].body["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "I'll create the module."},
        {"type": "tool_use", "id": "toolu_01", "name": "write_file",
         "input": {"path": "pkg/hello.py", "content": "def hello():\n    return 'hi'\n"}}]}

    assert log_texts(log, "text") == ["I'll create the module.", "Now the edits.", "Done: hello() now says hello."]
    assert log_texts(log, "tool_use") == ["write_file pkg/hello.py", "read_file pkg/hello.py", "list_files",
                                          "edit_file pkg/hello.py", "edit_file app.py"]
    assert "agent started · model claude-sonnet-4-5" in log_texts(log, "system")


def test_system_prompt_carries_claude_md_files_with_prompt_caching(tmp_path, fake):
    outside = tmp_path / "secret.md"
    outside.write_text("TOP SECRET OUTSIDE TEXT\n")
    repo = make_repo(tmp_path / "project", {
        "CLAUDE.md": "# Rules\nUse tabs.\n", "web/CLAUDE.md": "No jQuery in web/.\n",
        "web/app.js": "x()\n", ".gitignore": "node_modules/\n",
        "node_modules/lib/CLAUDE.md": "IGNORED PACKAGE TEXT\n"})
    os.symlink(outside, repo / "docs-CLAUDE.md")
    (repo / "evil").mkdir()
    os.symlink(outside, repo / "evil" / "CLAUDE.md")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "symlinks")
    api = fake([Turn("Nothing to do.")])
    data, _ = run(repo)
    assert data["status"] == "no_changes"

    system = api.agent_requests[0].body["system"]
    cached = [block for block in system if block.get("cache_control") == {"type": "ephemeral"}]
    assert len(cached) == 1
    text = cached[0]["text"]
    assert "## CLAUDE.md (applies to the whole repository)\n\n# Rules\nUse tabs.\n" in text
    assert "## web/CLAUDE.md (applies to files under web/)\n\nNo jQuery in web/.\n" in text
    assert text.index("## CLAUDE.md") < text.index("## web/CLAUDE.md")
    assert "IGNORED PACKAGE TEXT" not in text  # ignored folders do not count
    # A CLAUDE.md that is a symlink out of the tree never reaches the prompt.
    assert all("TOP SECRET" not in block["text"] for block in system)
    # The run's own folder comes after the cache mark, so the cached prefix is the same for every run.
    assert system.index(cached[0]) == len(system) - 2
    assert system[-1]["text"].startswith("Primary working directory: ")
    assert "cache_control" not in system[-1]


# -- confinement ------------------------------------------------------------------------------------
def test_escapes_through_dotdot_absolute_paths_and_symlinks_are_refused_and_logged(tmp_path, fake):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("untouched\n")
    repo = make_repo(tmp_path / "project", {"README.md": "# p\n"})
    os.symlink(outside, repo / "out")                        # a folder symlink that leads out
    os.symlink(outside / "target.txt", repo / "target.txt")  # a file symlink that leads out
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "symlinks")
    calls = [
        ToolCall("write_file", {"path": "../escaped.txt", "content": "x"}, id="t_dotdot"),
        ToolCall("write_file", {"path": "sub/../../../escaped.txt", "content": "x"}, id="t_dotdot_deep"),
        ToolCall("read_file", {"path": "../../../../../../etc/passwd"}, id="t_read_up"),
        ToolCall("write_file", {"path": str(outside / "abs.txt"), "content": "x"}, id="t_absolute"),
        ToolCall("write_file", {"path": "out/escaped.txt", "content": "x"}, id="t_dir_link"),
        ToolCall("edit_file", {"path": "target.txt", "old_string": "untouched", "new_string": "pwned"},
                 id="t_file_link"),
        ToolCall("read_file", {"path": "out/target.txt"}, id="t_read_link"),
        ToolCall("list_files", {"path": "out"}, id="t_list_link"),
    ]
    api = fake([Turn("Trying.", calls), Turn("I could not.")])
    data, log = run(repo)

    assert data["status"] == "no_changes"
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert (outside / "target.txt").read_text() == "untouched\n"
    worktrees = Path(data["worktree"]).parent
    assert not list(worktrees.parent.rglob("escaped.txt")) and not list(tmp_path.rglob("escaped.txt"))

    results = tool_results(api.agent_requests[1])
    expected = {
        "t_dotdot": "refused: the path escapes the working directory (..)",
        "t_dotdot_deep": "refused: the path escapes the working directory (..)",
        "t_read_up": "refused: the path escapes the working directory (..)",
        "t_absolute": "refused: an absolute path outside the working directory",
        "t_dir_link": "refused: a symlink leads outside the working directory",
        "t_file_link": "refused: a symlink leads outside the working directory",
        "t_read_link": "refused: a symlink leads outside the working directory",
        "t_list_link": "refused: a symlink leads outside the working directory",
    }
    assert {key: block["content"] for key, block in results.items()} == expected
    assert all(block["is_error"] is True for block in results.values())
    # Every attempt is in the run log: as a refusal note (stderr) and as the tool's error result.
    notes = log_texts(log, "stderr")
    assert notes[0] == "anthropic agent: refused write_file '../escaped.txt': " \
        "the path escapes the working directory (..)"
    assert notes[3] == f"anthropic agent: refused write_file '{outside / 'abs.txt'}': " \
        "an absolute path outside the working directory"
    assert len(notes) == len(calls)
    # Eight calls at once, then their eight results: each result names the call it answers.
    assert log_texts(log, "tool_result") == [f"{call.name} {call.input['path']}: error: {expected[call.id]}"
                                             for call in calls]


def test_anything_under_dot_git_is_refused(repo, fake):
    hooks_before = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
    os.symlink(".git", repo / "gitlink")
    git(repo, "add", "gitlink")
    git(repo, "commit", "-q", "-m", "a link to .git")
    calls = [
        ToolCall("write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"}, id="t_hook"),
        ToolCall("read_file", {"path": ".git"}, id="t_gitfile"),
        ToolCall("write_file", {"path": "./src/../.GIT/config", "content": "x"}, id="t_case"),
        ToolCall("write_file", {"path": "vendor/.git/config", "content": "x"}, id="t_nested"),
        ToolCall("read_file", {"path": "gitlink"}, id="t_link"),
        ToolCall("list_files", {"path": ".git"}, id="t_list"),
    ]
    api = fake([Turn(None, calls), Turn("ok")])
    data, log = run(repo)

    assert data["status"] == "no_changes"
    results = {key: block["content"] for key, block in tool_results(api.agent_requests[1]).items()}
    assert results == {
        "t_hook": "refused: paths under .git are off limits",
        "t_gitfile": "refused: paths under .git are off limits",
        "t_case": "refused: paths under .git are off limits",
        "t_nested": "refused: paths under .git are off limits",
        "t_link": "refused: a symlink leads into .git",
        "t_list": "refused: paths under .git are off limits",
    }
    assert sorted(p.name for p in (repo / ".git" / "hooks").iterdir()) == hooks_before
    assert len(log_texts(log, "stderr")) == len(calls)


def test_edit_file_needs_exactly_one_match(repo, fake):
    api = fake([
        Turn(None, [ToolCall("write_file", {"path": "dup.py", "content": "x = 1\nx = 1\n"}, id="t_write"),
                    ToolCall("edit_file", {"path": "dup.py", "old_string": "x = 1", "new_string": "x = 2"},
                             id="t_many"),
                    ToolCall("edit_file", {"path": "dup.py", "old_string": "y = 1", "new_string": "y = 2"},
                             id="t_none"),
                    ToolCall("edit_file", {"path": "missing.py", "old_string": "a", "new_string": "b"},
                             id="t_missing"),
                    ToolCall("edit_file", {"path": "dup.py", "old_string": "x = 1\nx", "new_string": "x = 0\nx"},
                             id="t_unique")]),
        Turn("ok"),
    ])
    data, _ = run(repo)
    assert data["status"] == "succeeded"
    assert git(repo, "show", f"{data['commit_sha']}:dup.py") == "x = 0\nx = 1\n"
    results = tool_results(api.agent_requests[1])
    assert {key: (block["content"], block.get("is_error", False)) for key, block in results.items()} == {
        "t_write": ("created dup.py (2 lines)", False),
        "t_many": ("`old_string` occurs 2 times in dup.py; include more surrounding text so it matches "
                   "exactly once", True),
        "t_none": ("`old_string` was not found in dup.py; read the file and copy the text exactly", True),
        "t_missing": ("missing.py does not exist", True),
        "t_unique": ("edited dup.py", False),
    }


# -- run_command ------------------------------------------------------------------------------------
TOOL_SCRIPT = """import os, sys, time
if "--sleep" in sys.argv:
    time.sleep(30)
open("generated.txt", "w").write("made by tool.py\\n")
print("made it; key seen:", os.environ.get("ANTHROPIC_API_KEY"))
"""


def test_run_command_is_refused_when_nothing_is_allow_listed(repo, fake):
    api = fake([Turn(None, [ToolCall("run_command", {"command": "touch pwned.txt"}, id="t_cmd")]), Turn("ok")])
    data, log = run(repo)
    assert data["status"] == "no_changes"
    block = tool_results(api.agent_requests[1])["t_cmd"]
    assert block["content"] == ("refused: no command is allowed in this repository "
                                "([anthropic] allowed_commands in .promptrail.toml)")
    assert block["is_error"] is True
    assert log_texts(log, "stderr") == [
        "anthropic agent: refused run_command 'touch pwned.txt': no command is allowed in this repository"]
    assert "No command is allowed" in next(t for t in api.agent_requests[0].body["tools"]
                                           if t["name"] == "run_command")["description"]


def test_run_command_runs_allow_listed_commands_in_the_worktree(repo, fake):
    (repo / "tool.py").write_text(TOOL_SCRIPT)
    git(repo, "add", "tool.py")
    git(repo, "commit", "-q", "-m", "tool")
    python = sys.executable
    configure(repo, f"[anthropic]\nallowed_commands = ['{python} tool.py']\ncommand_timeout_s = 1.5\n")
    api = fake([
        Turn(None, [
            ToolCall("run_command", {"command": f"{python} tool.py --go"}, id="t_ok"),
            ToolCall("run_command", {"command": f"{python} tool.py; touch pwned.txt"}, id="t_chained"),
            ToolCall("run_command", {"command": f"{python} other.py"}, id="t_other"),
            ToolCall("run_command", {"command": f"{python} tool.py --sleep"}, id="t_slow"),
        ]),
        Turn("ran it"),
    ])
    data, log = run(repo)

    assert data["status"] == "succeeded", data["error"]
    assert git(repo, "show", f"{data['commit_sha']}:generated.txt") == "made by tool.py\n"
    assert [f["path"] for f in data["files"]] == ["generated.txt"]
    assert not (repo / "generated.txt").exists()  # it ran in the run's worktree, not the user's tree
    results = tool_results(api.agent_requests[1])
    # The API key is not handed to commands.
    assert results["t_ok"]["content"] == f"$ {python} tool.py --go\nexit code 0\nmade it; key seen: None\n"
    assert "is_error" not in results["t_ok"]
    assert results["t_chained"]["content"] == ("refused: not on the allow-list "
                                               "([anthropic] allowed_commands in .promptrail.toml)")
    assert results["t_other"]["is_error"] is True
    assert results["t_slow"]["content"] == (f"$ {python} tool.py --sleep\nstopped after 1.5 s "
                                            "([anthropic] command_timeout_s)")
    assert log_texts(log, "tool_use")[0] == f"run_command $ {python} tool.py --go"
    assert log_texts(log, "stderr") == [
        f"anthropic agent: refused run_command '{python} tool.py; touch pwned.txt': not on the allow-list",
        f"anthropic agent: refused run_command '{python} other.py': not on the allow-list"]


# -- API errors -------------------------------------------------------------------------------------
def test_429_with_retry_after_is_retried_then_succeeds(repo, fake):
    api = fake([HttpError(429, retry_after=0.3),
                Turn(None, [ToolCall("write_file", {"path": "a.txt", "content": "a\n"})]), Turn("done")])
    data, _ = run(repo)
    assert data["status"] == "succeeded", data["error"]
    assert git(repo, "show", f"{data['commit_sha']}:a.txt") == "a\n"
    requests = api.agent_requests
    assert [r.reply for r in requests] == ["error 429", "turn", "turn"]
    assert requests[1].at - requests[0].at >= 0.3  # the retry honoured retry-after
    assert requests[1].body == requests[0].body
    assert data["num_turns"] == 2


def test_529_overloaded_is_retried_then_fails_with_a_clear_error(repo, fake):
    configure(repo, "[anthropic]\nmax_retries = 1\n")
    api = fake([HttpError(529, message="Overloaded", retry_after=0.05, repeat=True)])
    data, log = run(repo)
    assert data["status"] == "failed"
    assert data["error"] == ("the Anthropic API is overloaded (529 overloaded_error: Overloaded) after 1 retry; "
                             "try again later")
    assert len(api.agent_requests) == 2
    assert data["tokens"] == {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}  # nothing streamed
    assert log_texts(log, "error")[0] == f"agent failed: {data['error']}"


def test_401_fails_at_once_with_a_clear_error(repo, fake):
    api = fake([HttpError(401, message="invalid x-api-key", repeat=True)])
    data, _ = run(repo)
    assert data["status"] == "failed"
    assert data["error"] == ("the Anthropic API rejected the credentials (401 authentication_error: "
                             "invalid x-api-key); check ANTHROPIC_API_KEY")
    assert len(api.agent_requests) == 1  # never retried
    assert data["commit_sha"] is None


def test_a_missing_api_key_is_refused_before_the_run_starts(repo, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)

    async def go() -> None:
        workspace = Workspace(repo)
        try:
            with pytest.raises(PromptrailError) as caught:
                await start_run(workspace, RunRequest(prompt="x", agent="anthropic"), Collect())
            assert str(caught.value) == MISSING_KEY
            assert workspace.store.list_runs(limit=10) == []
        finally:
            workspace.close()

    asyncio.run(go())


def test_the_cli_runs_the_anthropic_agent_and_refuses_a_missing_key(repo, fake):
    api = fake([Turn(None, [ToolCall("write_file", {"path": "cli.txt", "content": "from the cli\n"})]),
                Turn("done")])
    env = {**os.environ}
    result = subprocess.run([sys.executable, "-m", "promptrail", "run", "write cli.txt", "--agent", "anthropic",
                             "--model", MODEL, "--json"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "succeeded" and data["agent"] == "anthropic"
    assert git(repo, "show", f"{data['commit_sha']}:cli.txt") == "from the cli\n"
    assert len(api.agent_requests) == 2

    env.pop("ANTHROPIC_API_KEY")
    result = subprocess.run([sys.executable, "-m", "promptrail", "run", "x", "--agent", "anthropic"], cwd=repo,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"promptrail: error: {MISSING_KEY}\n"


def test_unknown_anthropic_setting_is_one_clear_error(repo, fake):
    fake([])
    configure(repo, "[anthropic]\nmax_turn = 3\n")
    with pytest.raises(PromptrailError) as caught:
        run(repo)
    assert str(caught.value) == (f"{repo / '.promptrail.toml'}:2: unknown key 'max_turn' in [anthropic]; known keys: "
                                 "allowed_commands, command_timeout_s, max_retries, max_tokens, max_turns, model, "
                                 "request_timeout_s")


def test_a_stream_that_breaks_mid_turn_fails_the_run_and_keeps_earlier_writes(repo, fake):
    api = fake([
        Turn("Writing a.", [ToolCall("write_file", {"path": "a.txt", "content": "kept\n"})],
             input_tokens=1000, output_tokens=40),
        Disconnect(after_events=5, turn=Turn("Now b, which never arrives whole.",
                                             [ToolCall("write_file", {"path": "b.txt", "content": "lost\n"})],
                                             input_tokens=1200, cache_read_input_tokens=500)),
    ])
    data, log = run(repo)

    assert data["status"] == "failed"
    assert data["error"].startswith("the API stream broke off in turn 2: ")
    # The SDK's own words for the broken body (httpx's RemoteProtocolError; SDK 2.x wraps it in APIConnectionError).
    assert "peer closed connection without sending complete message body" in data["error"]
    assert data["error"].endswith("; what the agent changed in earlier turns is kept")
    assert len(api.agent_requests) == 2  # a broken stream is not retried
    # What was written before the break is committed on the run's branch; the gate will not merge it.
    assert [f["path"] for f in data["files"]] == ["a.txt"]
    assert git(repo, "show", f"{data['commit_sha']}:a.txt") == "kept\n"
    assert git(repo, "rev-parse", data["branch"]).strip() == data["commit_sha"]
    assert data["gate"]["merge_blockers"][0] == "the run ended failed; only a finished run's work can be merged"
    # Turn 2's tokens as far as they came (message_start: input and cache counts, 1 output token).
    assert data["tokens"] == {"input": 2200, "output": 41, "cache_read": 500, "cache_write": 0}
    assert log_texts(log, "text") == ["Writing a."]


# -- limits -----------------------------------------------------------------------------------------
def test_budget_cap_hit_on_turn_two_stops_the_run(repo, fake):
    # claude-sonnet-4-5: $3 per million input tokens, $15 per million output tokens.
    configure(repo, "[budget]\nper_run_usd = 0.006\n")
    api = fake([
        Turn(None, [ToolCall("write_file", {"path": "one.txt", "content": "1\n"})], input_tokens=1000,
             output_tokens=100),   # $0.0045
        Turn(None, [ToolCall("write_file", {"path": "two.txt", "content": "2\n"}, id="t_two")],
             input_tokens=1000, output_tokens=100),   # $0.0090 in all: over the cap
        Turn("never asked"),
    ])
    data, log = run(repo)

    assert data["status"] == "budget_exceeded"
    assert data["error"] == ("budget exceeded: $0.0090 spent after 2 turn(s), over the per-run budget of $0.006; "
                             "the agent was stopped and what it changed so far is kept")
    assert len(api.agent_requests) == 2
    assert data["num_turns"] == 2
    assert data["cost_usd"] == pytest.approx(0.009)
    assert [f["path"] for f in data["files"]] == ["one.txt"]  # turn 2's write was not run
    assert log_texts(log, "tool_result")[-1] == "error: not run: the run's budget is exceeded"


def test_budget_verdict_names_the_stop_reason(tmp_path, fake):
    fake([Turn(None, [ToolCall("write_file", {"path": "x.txt", "content": "x"})], input_tokens=10_000),
          Turn("done")])
    agent = AnthropicAgent(model=MODEL, max_budget_usd=0.01, price=costs.compute_cost)

    async def go() -> list[Any]:
        return [event async for event in agent.events("go", tmp_path)]

    events = asyncio.run(go())
    finished = events[-1]
    assert isinstance(finished, Finished) and sum(isinstance(e, Finished) for e in events) == 1
    assert finished.is_error and finished.complete
    assert finished.raw["stop_reason"] == "budget_exceeded" and agent.stop_reason == "budget_exceeded"
    assert finished.error.startswith("budget exceeded: $0.0313 spent after 1 turn(s)")
    assert finished.cost_usd is None and finished.raw["cost_usd_computed"] == pytest.approx(0.031275)
    assert not (tmp_path / "x.txt").exists()
    assert any(isinstance(e, ToolUse) for e in events) and any(isinstance(e, Raw) for e in events)


def test_turn_limit(repo, fake):
    configure(repo, "[anthropic]\nmax_turns = 2\n")
    api = fake([Turn(None, [ToolCall("write_file", {"path": f"f{n}.txt", "content": "x"})]) for n in range(5)])
    data, _ = run(repo)
    assert data["status"] == "failed"
    assert data["error"] == ("turn limit reached: 2 turns ([anthropic] max_turns) and the model still had work "
                             "to do; what it changed so far is kept")
    assert len(api.agent_requests) == 2


def test_cancel_stops_the_in_flight_stream(repo, fake):
    api = fake([Turn("slow", delay=20)])

    async def go() -> dict[str, Any]:
        workspace = Workspace(repo)
        try:
            started = await start_run(workspace, RunRequest(prompt="x", agent="anthropic", model=MODEL), Collect())
            while not api.agent_requests:  # the request is in flight, its answer 20 s away
                await asyncio.sleep(0.02)
            await started.cancel()
            return await asyncio.wait_for(started.wait(), 10)  # a hang guard, not a timing
        finally:
            workspace.close()

    data = asyncio.run(go())
    assert data["status"] == "cancelled"
    # The cut-off request may have been billed for more than arrived: the cost is unknown, not a guess.
    assert (data["cost_usd"], data["cost_computed_usd"]) == (None, None)


def test_agent_used_directly_yields_exactly_one_finished_last(tmp_path, fake):
    fake([Turn("hello")])
    agent = AnthropicAgent(model=MODEL, settings=AnthropicSettings(max_turns=3))

    async def go() -> list[Any]:
        return [event async for event in agent.events("hi", tmp_path)]

    events = asyncio.run(go())
    assert isinstance(events[-1], Finished) and sum(isinstance(e, Finished) for e in events) == 1
    finished = events[-1]
    assert not finished.is_error and finished.result == "hello" and finished.num_turns == 1
    assert finished.usage == Usage(input=1200, output=85)
    assert not any(isinstance(e, ToolResult) for e in events)


def test_cancel_during_a_command_ends_its_process_group(repo, fake):
    (repo / "slow.py").write_text("import os, time\nopen('pid.txt', 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    git(repo, "add", "slow.py")
    git(repo, "commit", "-q", "-m", "slow")
    configure(repo, f"[anthropic]\nallowed_commands = ['{sys.executable} slow.py']\n")
    fake([Turn(None, [ToolCall("run_command", {"command": f"{sys.executable} slow.py"})], cache_read_input_tokens=300,
               cache_creation_input_tokens=40)])
    sink = Collect()

    async def go() -> dict[str, Any]:
        workspace = Workspace(repo)
        try:
            started = await start_run(workspace, RunRequest(prompt="x", agent="anthropic", model=MODEL), sink)
            while "worktree" not in started.row:
                await asyncio.sleep(0.02)
            pid_file = Path(started.row["worktree"]) / "pid.txt"
            while not pid_file.exists() or not pid_file.read_text():
                await asyncio.sleep(0.02)
            pid = int(pid_file.read_text())
            await started.cancel()
            data = await asyncio.wait_for(started.wait(), 10)  # a hang guard, not a timing
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # ended and reaped before the run ended
            return data
        finally:
            workspace.close()

    data = asyncio.run(go())
    assert data["status"] == "cancelled"
    # Cancelled after turn 1's reply was read whole: its tokens are exactly what was billed.
    turn_one = Usage(input=1200, output=85, cache_read=300, cache_write=40)
    assert data["tokens"] == {"input": 1200, "output": 85, "cache_read": 300, "cache_write": 40}
    assert data["cost_usd"] == data["cost_computed_usd"] == costs.compute_cost(MODEL, turn_one) == pytest.approx(
        (1200 * 3 + 85 * 15 + 300 * 0.3 + 40 * 3.75) / 1e6)
    assert data["cost_source"] == "computed"


def test_a_claude_md_too_long_for_the_prompt_is_named_and_pointed_out_on_first_use(tmp_path, fake):
    big = "Rule line that matters.\n" * 4000  # ~96 KB: over the per-file cap
    repo = make_repo(tmp_path / "project", {"CLAUDE.md": "Root rules.\n", "big/CLAUDE.md": big,
                                            "big/mod.py": "x = 1\n"})
    api = fake([Turn(None, [ToolCall("read_file", {"path": "big/mod.py"}, id="t1"),
                            ToolCall("read_file", {"path": "big/mod.py"}, id="t2")]), Turn("ok")])
    data, _ = run(repo)
    assert data["status"] == "no_changes"
    cached = next(b for b in api.agent_requests[0].body["system"] if "cache_control" in b)["text"]
    assert "Root rules." in cached and "Rule line that matters." not in cached
    assert "read them with read_file before changing files under their folders: big/CLAUDE.md" in cached
    results = tool_results(api.agent_requests[1])
    assert results["t1"]["content"] == "x = 1\n\n\n(Instructions in big/CLAUDE.md apply here; read it with read_file.)"
    assert results["t2"]["content"] == "x = 1\n"  # pointed out once
