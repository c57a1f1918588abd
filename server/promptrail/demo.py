"""``promptrail demo``: the whole story offline in one command.

Makes a sample repository, replays a recorded Claude Code session (``data/demo/transcript.jsonl``,
real ``--output-format stream-json`` output) through the normal run pipeline (isolated worktree,
real commit, note, audit store), then prints the audit trail. Nothing here is special-cased: the
demo is an ordinary run whose agent is the replay agent.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import click

from promptrail.errors import PromptrailError

DEMO_PROMPT = "add retries with exponential backoff to fetch()"
DEMO_IDENTITY = ("Promptrail Demo", "demo@promptrail.invalid")
#: Who signs the demo run off in its next steps (the four-eyes rule refuses the prompter).
REVIEWER_EMAIL = "lead@example.com"


def demo_data() -> Path:
    return Path(str(resources.files("promptrail") / "data" / "demo"))


def make_sample_repo(directory: Path) -> Path:
    """Copy the sample project into ``directory`` and commit it with a repository-local identity."""
    try:
        if directory.exists() and not directory.is_dir():
            raise PromptrailError(f"{directory} is a file; give the demo a new or empty folder")
        if directory.exists() and any(directory.iterdir()):
            raise PromptrailError(f"{directory} is not empty; give the demo a new or empty folder")
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copytree(demo_data() / "repo", directory, dirs_exist_ok=True)
    except OSError as exc:  # a parent that is a file, a read-only or virtual file system (/proc, /sys)...
        raise PromptrailError(f"cannot make the demo repository in {directory}: {exc.strerror or exc}; give the "
                              "demo a folder you can write to") from None

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    # Only this sample repository's own config: the user's global git config is never written.
    git("config", "user.name", DEMO_IDENTITY[0])
    git("config", "user.email", DEMO_IDENTITY[1])
    git("add", "-A")
    git("commit", "-q", "-m", "weather: fetch the temperature of a city")
    return directory


def run_demo(directory: Path | None, *, as_json: bool = False) -> dict[str, Any]:
    from promptrail import queries, views
    from promptrail.cli import TerminalSink
    from promptrail.runs import RunRequest, start_run
    from promptrail.workspace import Workspace

    target = directory.expanduser().resolve() if directory else Path(tempfile.mkdtemp(prefix="promptrail-demo-"))
    make_sample_repo(target)
    say = (lambda *_: None) if as_json else click.echo
    say(f"Sample repository: {target}")
    say("Replaying a recorded Claude Code session (no model is called; this is a replay).\n")
    transcript = demo_data() / "transcript.jsonl"
    say(f"$ promptrail run {shlex.quote(DEMO_PROMPT)} --agent replay --transcript {shlex.quote(str(transcript))}\n")

    workspace = Workspace(target)
    request = RunRequest(prompt=DEMO_PROMPT, agent="replay", transcript=str(transcript))

    async def go() -> dict[str, Any]:
        run = await start_run(workspace, request, TerminalSink(quiet=as_json))
        return await run.wait()

    run = asyncio.run(go())
    changed = [f["path"] for f in run.get("files", []) if f["status"] != "deleted"]
    # The change waits on the run's branch for review, so show the lines as of the run's commit.
    blamed = {path: queries.blame(workspace, path, rev=run["commit_sha"]) for path in changed} \
        if run.get("commit_sha") else {}
    result = {"repository": str(target), "replayed": True, "run": run,
              "log": queries.run_log(workspace, run["id"]), "blame": blamed}
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return result
    say("")
    views.run_summary(run)
    for path, lines in blamed.items():
        say(f"\n{path} on {run['branch']} (what the editor's code lenses show):")
        views.blame_lines(lines)
    say(f"\nThe session above was replayed from a recording; its commit waits on {run['branch']} "
        f"for review (gate: {run['gate']['status']}).\n{next_steps(target, run, changed)}")
    if run["status"] != "succeeded":
        raise PromptrailError(f"the demo run ended '{run['status']}': {run.get('error')}")
    return result


def next_steps(target: Path, run: dict[str, Any], changed: list[str]) -> str:
    """What to try next, as commands that work when pasted into a new shell."""
    setup, command = promptrail_command()
    short, path = run["id"][:6], changed[0] if changed else "README.md"
    return "\n".join([
        "Explore the trail:",
        f"  cd {shlex.quote(str(target))}",
        *([f"  {setup}"] if setup else []),
        f"  {command} show {short}",
        f"  {command} log {short}",
        f"  {command} diff {short}",
        f"  {command} blame {path} --rev {run['branch']}",
        f"  {command} feed",
        f"  {command} verify",
        "Sign it off as a reviewer (the four-eyes rule refuses the prompter's own approval), merge it, "
        "and see its lines on main:",
        f"  export GIT_AUTHOR_NAME='Lee Lead' GIT_AUTHOR_EMAIL={REVIEWER_EMAIL}   # you, as the reviewer, "
        "in this shell",
        f"  {command} gate approve {short}",
        f"  {command} gate merge {short}",
        f"  {command} blame {path}",
        f"Done with it: rm -rf {shlex.quote(str(target))}",
    ])


def promptrail_command() -> tuple[str | None, str]:
    """How to call this promptrail from a new shell: a line that puts it on PATH when it is not
    (a virtualenv that is not activated), and the command itself."""
    running = Path(sys.argv[0]).resolve()
    on_path = shutil.which("promptrail")
    if running.name == "promptrail" and on_path and Path(on_path).resolve() == running:
        return None, "promptrail"
    activate = Path(sys.prefix) / "bin" / "activate"
    if sys.prefix != sys.base_prefix and activate.is_file():
        return f". {shlex.quote(str(activate))}   # puts promptrail on PATH", "promptrail"
    return None, f"{shlex.quote(sys.executable)} -m promptrail"
