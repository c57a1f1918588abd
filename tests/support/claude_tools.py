"""Finding the real Claude Code CLI and the sealed environment it must run in during tests.

Tests run the real ``claude`` binary only against ``FakeAnthropic`` on 127.0.0.1. ``claude_env``
is the one place that guarantees this: it strips every credential or endpoint the developer's
environment might carry, points the CLI at the fake, disables its telemetry/update traffic and
gives it a throw-away ``HOME`` so the real ``~/.claude`` is never read or written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (this file is ``<root>/tests/support/claude_tools.py``)."""

BUNDLED_CLAUDE = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "claude"

# Prefixes of variables that could carry real credentials, a real endpoint or settings that change
# the CLI's behaviour (e.g. a Bedrock/Vertex switch); all are dropped before ours are set.
_DROPPED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "CLAUDECODE")
_DROPPED_NAMES = frozenset({"AWS_BEARER_TOKEN_BEDROCK", "DISABLE_PROMPT_CACHING"})


def find_claude() -> str | None:
    """The claude executable: ``$PROMPTRAIL_CLAUDE``, else the repo's ``.tools`` copy, else PATH."""
    override = os.environ.get("PROMPTRAIL_CLAUDE")
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(override)
        return found
    if BUNDLED_CLAUDE.exists() and os.access(BUNDLED_CLAUDE, os.X_OK):
        return str(BUNDLED_CLAUDE)
    return shutil.which("claude")


def claude_env(api_url: str, home: Path, *, max_retries: int | None = None) -> dict[str, str]:
    """The environment for running claude against the fake API at ``api_url``.

    ``home`` should be a fresh temporary directory. ``max_retries`` (when given) caps the CLI's
    own API retries via ``CLAUDE_CODE_MAX_RETRIES`` so error tests stay fast.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED_NAMES
    }
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "ANTHROPIC_BASE_URL": api_url,
            "ANTHROPIC_API_KEY": "sk-ant-test-dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "HOME": str(home),
            # The CLI also honours XDG dirs for some state; keep those inside the temp home too.
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
        }
    )
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    return env


@dataclass
class ClaudeRun:
    """One finished ``claude -p`` run: exit code, raw stdout/stderr and the parsed stream-json lines."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]

    @property
    def result(self) -> dict[str, Any] | None:
        """The final ``{"type": "result", ...}`` line, if the CLI wrote one."""
        results = [e for e in self.events if e.get("type") == "result"]
        return results[-1] if results else None

    def of_type(self, kind: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("type") == kind and (subtype is None or e.get("subtype") == subtype)
        ]


def run_claude(
    claude: str,
    prompt: str,
    *,
    cwd: Path,
    api_url: str,
    home: Path,
    max_retries: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60,
) -> ClaudeRun:
    """Run ``claude -p PROMPT --output-format stream-json --verbose --permission-mode acceptEdits``.

    These are the flags the ``claude-cli`` agent uses (DESIGN.md §4), so tests see the same stream.
    """
    argv = [
        claude,
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        *extra_args,
    ]
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=claude_env(api_url, home, max_retries=max_retries),
        stdin=subprocess.DEVNULL,  # -p must not wait for piped input
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return ClaudeRun(proc.returncode, proc.stdout, proc.stderr, events)


def require_claude() -> str:
    """The claude executable, or skip the test — fail it instead when ``PROMPTRAIL_REQUIRE_E2E=1``
    (CI), so an end-to-end test can never silently not run there."""
    from tests.support.e2e import missing_tool

    path = find_claude()
    if path is None:
        missing_tool("claude CLI not found (set PROMPTRAIL_CLAUDE or run scripts/test, which installs it into .tools/)")
    return path
