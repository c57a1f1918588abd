"""The real Claude Code CLI against the fake Messages API: file effects and the final ``result`` line.

These tests pin what the ``claude-cli`` agent relies on (DESIGN.md §4): scripted Write/Edit tool
calls change the working tree exactly, and API failures end in a ``result`` line with
``is_error: true`` (``subtype`` stays ``"success"``, so it alone proves nothing). The CLI retries
every API error -- 401 included -- with exponential backoff, about ten times by default;
``CLAUDE_CODE_MAX_RETRIES`` caps that so these tests stay fast (``ANTHROPIC_MAX_RETRIES`` has no
effect on the CLI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.claude_tools import ClaudeRun, require_claude, run_claude
from tests.support.fake_anthropic import FakeAnthropic, HttpError, Reply, ToolCall, Turn

pytestmark = pytest.mark.e2e

TIMEOUT = 30  # seconds per CLI run; each test makes one run


@pytest.fixture(scope="module")
def claude() -> str:
    return require_claude()


def run(
    claude: str,
    tmp_path: Path,
    script: list[Reply],
    project: Path,
    *,
    prompt: str = "do the task",
    max_retries: int | None = None,
) -> tuple[ClaudeRun, FakeAnthropic]:
    with FakeAnthropic(script) as api:
        result = run_claude(
            claude,
            prompt,
            cwd=project,
            api_url=api.url,
            home=tmp_path / "home",
            max_retries=max_retries,
            timeout=TIMEOUT,
        )
    return result, api


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def tool_results(api: FakeAnthropic, request_index: int) -> list[dict]:
    """The tool_result blocks the CLI sent back in one agent request's last user message."""
    last = api.agent_requests[request_index].body["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def test_write_creates_the_file_exactly(claude: str, tmp_path: Path, project: Path) -> None:
    content = "Hello, promptrail!\n  indented {braces} and unicode: é ✓\nno trailing newline"
    script = [
        Turn(
            "I will create the file.",
            [ToolCall("Write", {"file_path": "{cwd}/notes/hello.txt", "content": content})],
            input_tokens=2000,
            output_tokens=120,
        ),
        Turn("Created notes/hello.txt.", input_tokens=2300, output_tokens=30),
    ]
    result, api = run(claude, tmp_path, script, project, prompt="create notes/hello.txt")

    assert result.returncode == 0, result.stderr
    assert (project / "notes" / "hello.txt").read_text(encoding="utf-8") == content
    assert snapshot(project).keys() == {"notes/hello.txt"}

    final = result.result
    assert final is not None
    assert (final["subtype"], final["is_error"], final["result"]) == (
        "success",
        False,
        "Created notes/hello.txt.",
    )
    assert final["total_cost_usd"] > 0
    [model_usage] = final["modelUsage"].values()
    assert (model_usage["inputTokens"], model_usage["outputTokens"]) == (4300, 150)

    assert len(api.agent_requests) == 2
    [written] = tool_results(api, 1)
    assert written["tool_use_id"] == "toolu_01" and not written.get("is_error")
    init = result.of_type("system", "init")[0]
    assert Path(init["cwd"]).resolve() == project.resolve()


def test_edit_changes_an_existing_file_exactly(claude: str, tmp_path: Path, project: Path) -> None:
    original = "def greet(name):\n    return 'Hello ' + name\n\n\nprint(greet('x'))\n"
    expected = "def greet(name: str) -> str:\n    return f'Hello, {name}!'\n\n\nprint(greet('x'))\n"
    (project / "greet.py").write_text(original)
    (project / "other.txt").write_text("untouched\n")
    script = [
        # The CLI refuses to Edit a file it has not Read in this session.
        Turn("Let me look at greet.py.", [ToolCall("Read", {"file_path": "{cwd}/greet.py"})]),
        Turn(
            "Adding type hints and an f-string.",
            [
                ToolCall(
                    "Edit",
                    {
                        "file_path": "{cwd}/greet.py",
                        "old_string": "def greet(name):\n    return 'Hello ' + name",
                        "new_string": "def greet(name: str) -> str:\n    return f'Hello, {name}!'",
                    },
                )
            ],
        ),
        Turn("greet() now has type hints."),
    ]
    result, api = run(claude, tmp_path, script, project, prompt="type greet")

    assert result.returncode == 0, result.stderr
    assert (project / "greet.py").read_text() == expected
    assert (project / "other.txt").read_text() == "untouched\n"
    assert snapshot(project).keys() == {"greet.py", "other.txt"}
    assert result.result is not None and result.result["is_error"] is False
    assert result.result["result"] == "greet() now has type hints."
    tool_names = [
        block["name"]
        for event in result.of_type("assistant")
        for block in event["message"]["content"]
        if block["type"] == "tool_use"
    ]
    assert tool_names == ["Read", "Edit"]
    [edited] = tool_results(api, 2)
    assert not edited.get("is_error")


@pytest.mark.parametrize(
    ("status", "retries", "error_kind"),
    [
        (401, 0, "authentication_failed"),
        (500, 1, "server_error"),
        (529, 1, "server_error"),
    ],
)
def test_api_error_ends_in_an_error_result(
    claude: str, tmp_path: Path, project: Path, status: int, retries: int, error_kind: str
) -> None:
    (project / "keep.txt").write_text("as it was\n")
    before = snapshot(project)
    script = [HttpError(status, message=f"scripted failure {status}", repeat=True)]

    result, api = run(claude, tmp_path, script, project, max_retries=retries)

    assert snapshot(project) == before
    assert result.returncode == 1
    final = result.result
    assert final is not None
    # Observed with 2.1.197: subtype stays "success"; is_error and api_error_status carry the failure.
    assert final["subtype"] == "success"
    assert final["is_error"] is True
    assert final["api_error_status"] == status
    assert f"API Error: {status} scripted failure {status}" in final["result"]
    assert final["total_cost_usd"] == 0
    assert final["modelUsage"] == {}

    # One first attempt plus exactly `retries` retries, each announced by a system/api_retry line.
    assert [r.reply for r in api.agent_requests] == [f"error {status}"] * (1 + retries)
    retry_lines = result.of_type("system", "api_retry")
    assert [(e["attempt"], e["error_status"]) for e in retry_lines] == [
        (n, status) for n in range(1, retries + 1)
    ]
    # The CLI reports the failure as a synthetic assistant message before the result.
    [synthetic] = [e for e in result.of_type("assistant") if e["message"]["model"] == "<synthetic>"]
    assert synthetic["error"] == error_kind


def test_demo_transcript_still_records_the_same_way(claude: str, tmp_path: Path) -> None:
    from tests.support import record_demo_transcript as demo

    out = tmp_path / "transcript.jsonl"
    demo.record(claude, out, delays=False)  # raises if files or transcript are not as expected

    shipped = demo.TRANSCRIPT.read_text(encoding="utf-8")
    demo.check_transcript(shipped)
    assert demo.shape(out.read_text(encoding="utf-8")) == demo.shape(shipped)
