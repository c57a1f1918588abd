"""A prompt too long for one command-line argument (Linux: 128 KiB) reaches the real Claude Code
CLI whole, on its stdin, and the run commits as any other; the CLI talks to the fake Messages API."""

from __future__ import annotations

import json

import pytest

from promptrail.runs import RunRequest, start_run
from promptrail.workspace import Workspace
from tests.conftest import git
from tests.integration.test_runs import Collect
from tests.support.claude_tools import claude_env, require_claude
from tests.support.fake_anthropic import FakeAnthropic, ToolCall, Turn

pytestmark = pytest.mark.e2e


async def test_a_prompt_over_128_kib_reaches_the_cli_whole(repo, tmp_path):
    claude = require_claude()
    prompt = "Create hello.py. Context follows. " + "é" * 80_000 + " END-OF-PROMPT"  # 160,048 bytes
    script = [Turn(tool_uses=[ToolCall("Write", {"file_path": "{cwd}/hello.py", "content": "print('hi')\n"})]),
              Turn(text="Done.")]
    with FakeAnthropic(script) as api:
        run = await start_run(Workspace(repo), RunRequest(prompt=prompt, agent="claude-cli", claude_path=claude,
                                                          agent_env=claude_env(api.url, tmp_path / "home")),
                              Collect())
        data = await run.wait()
        first_turn = json.dumps(api.agent_requests[0].body["messages"], ensure_ascii=False)
    assert (data["status"], data["error"]) == ("succeeded", None)
    assert git(repo, "show", f"{data['commit_sha']}:hello.py") == "print('hi')\n"
    assert "Create hello.py. Context follows. " + "é" * 80_000 + " END-OF-PROMPT" in first_turn
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
