"""Record the transcript that ``promptrail demo`` replays: the real claude CLI against a scripted fake.

This module owns the demo session: the prompt, the four scripted assistant turns (``DEMO_SCRIPT``),
the files the session leaves behind (``EXPECTED_FILES``) and the recording procedure. Run it to
re-record after changing the script or upgrading the CLI:

    python tests/support/record_demo_transcript.py

It copies ``server/promptrail/data/demo/repo`` to ``<tmp>/weather``, runs
``claude -p PROMPT --output-format stream-json --verbose --permission-mode acceptEdits
--allowedTools Bash`` there against ``FakeAnthropic``, checks the outcome, then writes the CLI's
stdout to ``server/promptrail/data/demo/transcript.jsonl`` with the temporary paths replaced by
``/home/dev/weather`` (the working tree) and ``/home/dev`` (HOME), so the file is reproducible
apart from the CLI's own ids, timestamps and durations.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``tests.support`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.claude_tools import REPO_ROOT, ClaudeRun, find_claude, run_claude  # noqa: E402
from tests.support.fake_anthropic import FakeAnthropic, ToolCall, Turn  # noqa: E402

DEMO_DIR = REPO_ROOT / "server" / "promptrail" / "data" / "demo"
DEMO_REPO = DEMO_DIR / "repo"
TRANSCRIPT = DEMO_DIR / "transcript.jsonl"

DEMO_PROMPT = "add retries with exponential backoff to fetch()"
RECORDED_CWD = "/home/dev/weather"
RECORDED_HOME = "/home/dev"
# Bash needs explicit permission in acceptEdits mode, or the CLI answers "requires approval".
EXTRA_ARGS = ("--allowedTools", "Bash")

RETRY_PY = '''"""Retry a flaky call with exponential backoff."""
import functools
import logging
import time
from typing import Callable, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)


def retry(attempts: int = 3, base_delay: float = 0.5) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry on OSError (network errors, timeouts), sleeping base_delay * 2**n between tries."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in range(1, attempts):
                try:
                    return func(*args, **kwargs)
                except OSError as error:
                    delay = base_delay * 2 ** (attempt - 1)
                    log.warning("%s failed (%s); retry in %.1fs", func.__name__, error, delay)
                    time.sleep(delay)
            return func(*args, **kwargs)  # the last attempt: its error propagates

        return wrapper

    return decorate
'''

FETCH_OLD = "import json\nimport urllib.request\n\n\ndef fetch(city: str) -> float:"
FETCH_NEW = (
    "import json\nimport urllib.request\n\nfrom weather.retry import retry\n\n\n"
    "@retry(attempts=3, base_delay=0.5)\ndef fetch(city: str) -> float:"
)

# ``delay``: the fake waits before answering, so durations in the result line look like a real session.
DEMO_SCRIPT = [
    Turn(
        "I'll look at `fetch()` first, then add a small reusable retry decorator in "
        "`weather/retry.py` (logging rather than print, as CLAUDE.md asks).",
        [
            ToolCall("Read", {"file_path": "{cwd}/weather/fetch.py"}, id="toolu_01Kq7dW3vZbN2xRt8mYpLc4A"),
            ToolCall(
                "Write",
                {"file_path": "{cwd}/weather/retry.py", "content": RETRY_PY},
                id="toolu_01Hf2sJ9aQeX6uVn3kTgWb7D",
            ),
        ],
        input_tokens=3184,
        output_tokens=396,
        cache_creation_input_tokens=2412,
        delay=1.6,
    ),
    Turn(
        "Now I'll apply the decorator to `fetch()`: three attempts, waiting 0.5 s and then 1 s.",
        [
            ToolCall(
                "Edit",
                {"file_path": "{cwd}/weather/fetch.py", "old_string": FETCH_OLD, "new_string": FETCH_NEW},
                id="toolu_01Pw8cYr4tLm5BzQe2nHsV9K",
            )
        ],
        input_tokens=3952,
        output_tokens=214,
        cache_read_input_tokens=2412,
        cache_creation_input_tokens=781,
        delay=1.2,
    ),
    Turn(
        "Let me check that the package still imports.",
        [
            ToolCall(
                "Bash",
                {"command": 'python3 -c "import weather.fetch"', "description": "Check that weather.fetch imports"},
                id="toolu_01Zt5gMx7nRa3cVk9wEjUb2F",
            )
        ],
        input_tokens=4417,
        output_tokens=118,
        cache_read_input_tokens=3193,
        delay=0.9,
    ),
    Turn(
        "Added `weather/retry.py` with a typed `retry(attempts=3, base_delay=0.5)` decorator: it "
        "retries on `OSError` (which covers `URLError` and timeouts), logs each failure and sleeps "
        "0.5 s, then 1 s, before the next try; the last attempt's error propagates. `fetch()` is now "
        "decorated with it, and `weather.fetch` imports cleanly.",
        input_tokens=4606,
        output_tokens=152,
        cache_read_input_tokens=3193,
        delay=1.3,
    ),
]

EXPECTED_FILES = {
    "weather/retry.py": RETRY_PY,
    "weather/fetch.py": (DEMO_REPO / "weather" / "fetch.py").read_text().replace(FETCH_OLD, FETCH_NEW),
}


def _slug(path: str) -> str:
    # How the CLI names a project's folder under ~/.claude/projects (seen in memory_paths):
    # every character other than a letter or digit becomes "-".
    return re.sub(r"[^A-Za-z0-9]", "-", path)


def record(claude: str, out: Path = TRANSCRIPT, *, delays: bool = True) -> ClaudeRun:
    """Run the demo session and write the anonymised transcript to ``out``.

    ``delays=False`` drops the turns' pauses (for tests; the durations then look unrealistic).
    """
    script = DEMO_SCRIPT if delays else [dataclasses.replace(t, delay=0.0) for t in DEMO_SCRIPT]
    root = Path(tempfile.mkdtemp(prefix="promptrail-demo-")).resolve()
    try:
        cwd = root / "weather"
        shutil.copytree(DEMO_REPO, cwd)
        with FakeAnthropic(script) as api:
            run = run_claude(
                claude,
                DEMO_PROMPT,
                cwd=cwd,
                api_url=api.url,
                home=root / "home",
                extra_args=EXTRA_ARGS,
                timeout=60,
            )
        check_run(run, cwd, api)
        text = run.stdout
        for old, new in (
            (str(cwd), RECORDED_CWD),
            (str(root / "home"), RECORDED_HOME),
            (_slug(str(cwd)), _slug(RECORDED_CWD)),
        ):
            text = text.replace(old, new)
        if root.name in text or _slug(root.name) in text:
            raise AssertionError(f"temporary path {root} left in the transcript")
        check_transcript(text)
        out.write_text(text, encoding="utf-8")
        return run
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_run(run: ClaudeRun, cwd: Path, api: FakeAnthropic) -> None:
    """The session did what the script says: exit 0, every scripted turn used, files as expected."""
    if run.returncode != 0:
        raise AssertionError(f"claude exited {run.returncode}: {run.stderr}")
    if api.remaining or len(api.agent_requests) != len(DEMO_SCRIPT):
        raise AssertionError(f"{len(api.agent_requests)} agent turns for {len(DEMO_SCRIPT)} scripted")
    for name, content in EXPECTED_FILES.items():
        if (cwd / name).read_text() != content:
            raise AssertionError(f"{name} differs from the expected result")


def shape(text: str) -> list[tuple[str, ...]]:
    """Per line: type, subtype and the content block kinds / tool names -- what must not drift."""
    rows = []
    for line in text.splitlines():
        event = json.loads(line)
        content = event.get("message", {}).get("content", []) if event["type"] in ("assistant", "user") else []
        kinds = tuple(b.get("name", b.get("type", "")) for b in content if isinstance(b, dict))
        rows.append((event["type"], event.get("subtype", ""), *kinds))
    return rows


def check_transcript(text: str) -> None:
    """The transcript has the shape ``promptrail demo`` relies on."""
    events = [json.loads(line) for line in text.splitlines()]
    assert events[0]["type"] == "system" and events[0]["subtype"] == "init", events[0]
    assert events[0]["cwd"] == RECORDED_CWD
    blocks = [b for e in events if e["type"] == "assistant" for b in e["message"]["content"]]
    assert sum(b["type"] == "text" for b in blocks) == 4
    tools = [b["name"] for b in blocks if b["type"] == "tool_use"]
    assert tools == ["Read", "Write", "Edit", "Bash"], tools
    results = [
        b for e in events if e["type"] == "user" for b in e["message"]["content"] if b.get("type") == "tool_result"
    ]
    assert len(results) == 4 and not any(r.get("is_error") for r in results), results
    final = events[-1]
    assert final["type"] == "result" and final["is_error"] is False, final
    assert final["total_cost_usd"] > 0


def main() -> int:
    claude = find_claude()
    if claude is None:
        print("claude CLI not found (set PROMPTRAIL_CLAUDE or install it under .tools/)", file=sys.stderr)
        return 1
    run = record(claude)
    final = run.result or {}
    print(
        f"wrote {TRANSCRIPT.relative_to(REPO_ROOT)}: {len(run.events)} lines, "
        f"num_turns={final.get('num_turns')}, total_cost_usd={final.get('total_cost_usd')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
