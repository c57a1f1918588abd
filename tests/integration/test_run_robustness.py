"""A run always ends with a final status that tells the truth: when its log cannot be written, and
when the user presses Ctrl-C in the terminal while its commit (and the commit's hooks) run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from promptrail.audit.store import AuditStore
from promptrail.workspace import Workspace
from tests.integration.test_runs import run_prompt, write_hook
from tests.support.transcripts import Say, Write, write_transcript


def test_a_log_that_cannot_be_written_still_ends_the_run(repo, monkeypatch):
    # The disk fills up under the log writer: the run must still end with a final status that says
    # so, instead of staying `running`.
    def disk_full(self, rows):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(AuditStore, "append_log", disk_full)
    data = run_prompt(repo, [Say("some text"), Write("x.py", "1\n")])
    assert data["status"] == "failed"
    assert data["error"] == "promptrail error: the run log could not be written completely: database or disk is full"
    assert data["commit_sha"] is not None and [f["path"] for f in data["files"]] == ["x.py"]
    events = Workspace(repo).store.query("SELECT kind FROM events WHERE run_id = ? ORDER BY seq", [data["id"]])
    assert events[-1]["kind"] == "run.failed"


def test_text_utf8_cannot_carry_is_logged_escaped_and_the_run_goes_on(repo):
    # An agent's JSON may carry a lone surrogate ("\ud800"); it is stored as its escape.
    data = run_prompt(repo, [Say("odd \ud800 text"), Write("x.py", "1\n")])
    assert data["status"] == "succeeded"
    assert "odd \\ud800 text" in [entry["text"] for entry in Workspace(repo).store.log(data["id"])]


def test_ctrl_c_during_the_commit_never_reaches_git_or_its_hooks(repo, tmp_path):
    # The pre-commit hook says it started, then waits for the test; Ctrl-C in a terminal signals the
    # whole foreground process group, emulated by signalling the CLI's process group.
    started, release = tmp_path / "hook-started", tmp_path / "release"
    write_hook(repo, f"touch '{started}'\nwhile [ ! -e '{release}' ]; do sleep 0.02; done\necho hook done >&2\n")
    transcript = write_transcript(tmp_path / "t.jsonl", [Write("x.py", "1\n")])
    cli = subprocess.Popen([sys.executable, "-m", "promptrail", "run", "p", "--transcript", str(transcript), "--json",
                            "--repo", str(repo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        while not started.exists():
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.02)
        os.killpg(cli.pid, signal.SIGINT)
        time.sleep(0.3)  # room for a wrongly delivered SIGINT to end the hook before it is released
        release.touch()
        stdout, stderr = cli.communicate(timeout=60)  # a hang guard, not a timing
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 0, stderr
    data = json.loads(stdout)
    # The agent had finished: the commit goes ahead, and the log says the cancel came too late.
    assert data["status"] == "succeeded" and [f["path"] for f in data["files"]] == ["x.py"]
    log = [entry["text"] for entry in Workspace(repo).store.log(data["id"])]
    assert "cancel requested; the agent has finished, so its commit goes ahead" in log
