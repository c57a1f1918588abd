"""`promptrail run` with the real Claude Code CLI against the fake Messages API: the binary edits
real files in the run's worktree, promptrail commits them and records tokens and cost; API
failures end `failed` with the API's error text, no commit, cost unknown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.support.claude_tools import claude_env, require_claude
from tests.support.fake_anthropic import FakeAnthropic, HttpError, ToolCall, Turn

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def claude() -> str:
    return require_claude()


def promptrail_run(repo: Path, claude: str, api: FakeAnthropic, home: Path, prompt: str = "do the task",
                   max_retries: int | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    env = claude_env(api.url, home, max_retries=max_retries)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    result = subprocess.run([sys.executable, "-m", "promptrail", "run", prompt, "--agent", "claude-cli",
                             "--claude-path", claude, "--json", "--repo", str(repo)],
                            capture_output=True, text=True, env=env, timeout=90)
    assert result.stdout, result.stderr
    return result, json.loads(result.stdout)


def test_claude_writes_a_file(repo, claude, tmp_path):
    script = [Turn(text="Creating it.", tool_uses=[ToolCall("Write", {"file_path": "{cwd}/hello.py",
                                                                      "content": "print('hello')\n"})],
                   input_tokens=1500, output_tokens=60),
              Turn(text="Done: hello.py prints hello.", input_tokens=1700, output_tokens=20)]
    with FakeAnthropic(script) as api:
        result, data = promptrail_run(repo, claude, api, tmp_path / "home", prompt="add hello.py")
    assert result.returncode == 0, result.stderr
    assert data["status"] == "succeeded", data["error"]
    assert data["agent"] == "claude-cli"
    assert [(f["path"], f["status"]) for f in data["files"]] == [("hello.py", "added")]
    assert git(repo, "show", f"{data['commit_sha']}:hello.py") == "print('hello')\n"
    assert data["tokens"]["input"] == 3200 and data["tokens"]["output"] == 80
    assert data["cost_usd"] is not None and data["cost_usd"] > 0
    assert data["cost_source"] == "reported"
    log = [e["text"] for e in json.loads(subprocess.run(
        [sys.executable, "-m", "promptrail", "log", data["id"], "--json", "--repo", str(repo)],
        capture_output=True, text=True, check=True).stdout)]
    assert "Creating it." in log and "Write hello.py" in log


def test_claude_edits_a_file(repo, claude, tmp_path):
    script = [Turn(tool_uses=[ToolCall("Read", {"file_path": "{cwd}/app.py"})]),
              Turn(tool_uses=[ToolCall("Edit", {"file_path": "{cwd}/app.py", "old_string": "return 1",
                                                "new_string": "return 2"})]),
              Turn(text="Changed main() to return 2.")]
    with FakeAnthropic(script) as api:
        result, data = promptrail_run(repo, claude, api, tmp_path / "home")
    assert data["status"] == "succeeded", data["error"]
    assert git(repo, "show", f"{data['commit_sha']}:app.py") == "def main():\n    return 2\n"
    assert [(f["path"], f["additions"], f["deletions"]) for f in data["files"]] == [("app.py", 1, 1)]


@pytest.mark.parametrize("status, expected", [
    (401, "Failed to authenticate. API Error: 401"),
    (500, "API Error: 500"),
    (529, "API Error: 529"),
])
def test_api_errors_fail_the_run(repo, claude, tmp_path, status, expected):
    with FakeAnthropic([HttpError(status, message="scripted failure", repeat=True)]) as api:
        result, data = promptrail_run(repo, claude, api, tmp_path / "home", max_retries=0)
    assert result.returncode == 1
    assert data["status"] == "failed"
    assert data["error"].startswith(expected)
    assert data["commit_sha"] is None and data["files"] == []
    assert data["cost_usd"] is None
    assert data["branch"] is None and git(repo, "branch", "--list", "promptrail/*") == ""  # nothing left behind


def _processes_in(folder: Path) -> list[int]:
    """PIDs whose working directory is inside ``folder`` (the agent and anything it started)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(Path(proc / "cwd").resolve()).startswith(str(folder)):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_ctrl_c_cancels_the_run_and_ends_the_agent(repo, claude, tmp_path):
    import signal
    import time

    script = [Turn(text="thinking very slowly", delay=60)]
    with FakeAnthropic(script) as api:
        env = claude_env(api.url, tmp_path / "home")
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        proc = subprocess.Popen([sys.executable, "-m", "promptrail", "run", "slow task", "--agent", "claude-cli",
                                 "--claude-path", claude, "--repo", str(repo)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while not api.agent_requests and time.monotonic() < deadline:  # the agent is waiting on the API
            time.sleep(0.05)
        assert api.agent_requests, "claude never called the API"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    shown = json.loads(subprocess.run([sys.executable, "-m", "promptrail", "history", "--json", "--repo", str(repo)],
                                      capture_output=True, text=True, check=True).stdout)[0]
    assert shown["status"] == "cancelled"
    assert shown["commit_sha"] is None
    assert git(repo, "rev-parse", shown["branch"]).strip() == shown["base_sha"]
    assert _processes_in(Path(shown["worktree"])) == []
    assert "cancelling (Ctrl-C)" in err


def test_per_run_budget_is_passed_to_the_cli(repo, claude, tmp_path):
    (repo / ".promptrail.toml").write_text("[budget]\nper_run_usd = 0.05\n")
    # Turn 1 writes a file cheaply; turn 2 costs ~$1 and its write is cut off by the cap.
    first = ToolCall("Write", {"file_path": "{cwd}/first.py", "content": "x = 1\n"})
    script = [Turn(text="Writing.", tool_uses=[first],
                   input_tokens=1000, output_tokens=50),
              Turn(text="More work.", tool_uses=[ToolCall("Write", {"file_path": "{cwd}/second.py", "content": "y\n"})],
                   input_tokens=200_000, output_tokens=100),
              Turn(text="Done.")]
    with FakeAnthropic(script) as api:
        result, data = promptrail_run(repo, claude, api, tmp_path / "home")
    assert api.agent_requests[0].body.get("model")  # the CLI did call the API
    assert data["status"] == "budget_exceeded", data["error"]
    assert data["commit_sha"] is not None
    assert [f["path"] for f in data["files"]] == ["first.py"]  # no half-written temp file of second.py
    assert data["cost_usd"] > 0.05


def test_agent_left_behind_by_a_killed_promptrail_is_ended_on_the_next_start(repo, tmp_path):
    import signal
    import time

    fake = tmp_path / "claude"  # an agent that starts a child and then waits forever
    fake.write_text("#!/bin/sh\necho '{\"type\":\"system\",\"subtype\":\"init\",\"cwd\":\"'$PWD'\"}'\n"
                    "sleep 300 &\nsleep 300\n")
    fake.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "promptrail", "run", "task", "--agent", "claude-cli",
                             "--claude-path", str(fake), "--repo", str(repo)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    run = None
    while time.monotonic() < deadline:
        runs = json.loads(subprocess.run([sys.executable, "-m", "promptrail", "history", "--json", "--repo",
                                          str(repo)], capture_output=True, text=True).stdout or "[]")
        if runs and runs[0].get("worktree") and _processes_in(Path(runs[0]["worktree"])):
            run = runs[0]
            break
        time.sleep(0.2)
    assert run is not None, "the agent never started"
    proc.send_signal(signal.SIGKILL)  # promptrail dies without cleaning up
    proc.wait()
    folder = Path(run["worktree"])
    assert len(_processes_in(folder)) >= 2  # the agent and its child are still there
    shown = json.loads(subprocess.run([sys.executable, "-m", "promptrail", "show", run["id"], "--json", "--repo",
                                       str(repo)], capture_output=True, text=True, check=True).stdout)
    assert shown["status"] == "interrupted"
    assert shown["error"].startswith("the promptrail process running it stopped unexpectedly; its agent's ")
    deadline = time.monotonic() + 10
    while _processes_in(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(folder) == []
