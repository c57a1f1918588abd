"""`promptrail demo`: offline, on a machine whose git has no identity, it makes a sample
repository, replays the shipped Claude Code session, commits it with the trailer and the note,
and prints the audit trail — saying plainly that the session was replayed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import git


def demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptrail", "demo", *args], capture_output=True, text=True,
                          timeout=120)


def test_demo_without_a_git_identity(tmp_path, isolated_home):
    target = tmp_path / "sample"
    result = demo(str(target))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Replaying a recorded Claude Code session (no model is called; this is a replay)." in out
    assert "The session above was replayed from a recording" in out
    runs = json.loads(subprocess.run([sys.executable, "-m", "promptrail", "history", "--json", "--repo", str(target)],
                                     capture_output=True, text=True, check=True).stdout)
    (run,) = runs
    assert run["status"] == "succeeded" and run["agent"] == "replay"
    assert f"Promptrail-Run: {run['id']}" in git(target, "log", "-1", "--format=%B", run["commit_sha"])
    note = json.loads(git(target, "notes", "--ref=refs/notes/promptrail", "show", run["commit_sha"]))
    assert note["run_id"] == run["id"]
    for expected in (run["id"], "add retries with exponential backoff to fetch()", "succeeded", run["commit_sha"],
                     "weather/retry.py", "+30", "16,159 in · 880 out · 8,798 cache read · 3,193 cache write",
                     "$0.127 (reported)", "✦ add retries with exponential backoff to fetch() (replay) · $0.127"):
        assert expected in out, expected
    # The agent asked for two tools at once: each result says which call it answers; a result right
    # after its own call needs no such label.
    assert "⚙ Read weather/fetch.py\n⚙ Write weather/retry.py\n  ↳ Read weather/fetch.py:\n    1\t" in out
    assert "\n  ↳ Write weather/retry.py: File created successfully at: " in out
    assert "⚙ Edit weather/fetch.py\n  ↳ The file /home/dev/weather/weather/fetch.py has been updated" in out
    # The demo identity lives in the sample repository's own config; nothing global was written.
    assert git(target, "config", "--local", "user.email").strip() == "demo@promptrail.invalid"
    assert not (isolated_home / ".gitconfig").exists()
    assert not (isolated_home / ".config" / "git").exists()
    # The run's worktree is gone once its commit is made, and so is the repository's cache folder.
    worktrees = isolated_home / ".cache" / "promptrail" / "worktrees"
    assert not worktrees.exists() or list(worktrees.iterdir()) == []


def test_demo_json_and_a_new_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the demo makes its new folder
    result = demo("--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["replayed"] is True and Path(data["repository"]).name.startswith("promptrail-demo-")
    assert Path(data["repository"]).parent == tmp_path
    assert data["run"]["status"] == "succeeded"
    assert sorted(data["blame"]) == ["weather/fetch.py", "weather/retry.py"]
    retry = data["blame"]["weather/retry.py"]
    assert {line["run_id"] for line in retry} == {data["run"]["id"]}
    assert [e["seq"] for e in data["log"]] == list(range(1, len(data["log"]) + 1))


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "keep.txt").write_text("mine\n")
    result = demo(str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == f"promptrail: error: {tmp_path} is not empty; give the demo a new or empty folder\n"
    assert (tmp_path / "keep.txt").read_text() == "mine\n"


def test_the_demos_next_steps_work_when_pasted_into_a_new_shell(tmp_path):
    target = tmp_path / "sample"
    out = demo(str(target)).stdout
    steps = out[out.index("Explore the trail:\n"):out.index("Done with it: ")].splitlines()
    commands = [line.strip() for line in steps if line.startswith("  ")]
    assert commands[0] == f"cd {target}"
    assert "export GIT_AUTHOR_NAME='Lee Lead' GIT_AUTHOR_EMAIL=lead@example.com   # you, as the reviewer, in this " \
        "shell" in commands
    # The command the demo says it ran works pasted too (the transcript is named).
    ran = out[out.index("$ promptrail run "):].splitlines()[0][2:]
    assert "--transcript " in ran
    # A new shell: nothing of this Python on PATH, so the steps must bring promptrail themselves.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["bash", "-e", "-c", "\n".join(commands)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(subprocess.run([sys.executable, "-m", "promptrail", "history", "--json", "--repo",
                                        str(target)], capture_output=True, text=True, check=True).stdout)
    assert run["gate"]["status"] == "merged"
    assert "gate: approved by lead@example.com\n" in done.stdout and "gate: merged\n" in done.stdout
    assert git(target, "config", "--get", "user.email").strip() == "demo@promptrail.invalid"  # the repo's own
    on_path = {**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    again = subprocess.run(f"{ran} --json", shell=True, cwd=target, capture_output=True, text=True, env=on_path,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["prompt"] == "add retries with exponential backoff to fetch()"
    # The last step blamed main, where the merged run's lines now carry its lens.
    lens = f"     ✦ add retries with exponential backoff to fetch() (replay) · $0.127 · 29.0k tok · gate: merged   " \
           f"[run {run['id']}]"
    blamed = done.stdout[done.stdout.rindex("gate: merged\n"):].splitlines()[2:]
    assert [line for line in blamed if "✦" in line] == [
        lens, " 5 ✦ from weather.retry import retry", lens, " 7 ✦ ", " 8 ✦ @retry(attempts=3, base_delay=0.5)"]
    assert len(blamed) == 14 and blamed[-1] == '12           return json.load(response)["temp_c"]'


def test_demo_into_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x\n")
    result = demo(str(tmp_path / "file" / "sub"))
    assert (result.returncode, result.stderr) == (
        2, f"promptrail: error: cannot make the demo repository in {tmp_path / 'file' / 'sub'}: Not a directory; "
           "give the demo a folder you can write to\n")
    result = demo("/proc/promptrail-demo")
    assert (result.returncode, result.stderr) == (
        2, "promptrail: error: cannot make the demo repository in /proc/promptrail-demo: No such file or directory; "
           "give the demo a folder you can write to\n")
