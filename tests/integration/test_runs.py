"""A prompt becomes an audited commit: the run pipeline against real git repositories and real
SQLite, driven by the replay agent acting out scripted sessions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptrail.errors import PromptrailError
from promptrail.runs import RunRequest, prune_worktrees, start_run
from promptrail.workspace import Workspace
from tests.conftest import git, make_repo
from tests.support.transcripts import Bash, Edit, Say, Write, write_transcript


class Collect:
    def __init__(self) -> None:
        self.events = []

    def emit(self, event) -> None:
        self.events.append(event)


def run_prompt(repo: Path, steps, prompt="do the thing", tmp: Path | None = None, **kwargs) -> dict:
    transcript = write_transcript((tmp or repo.parent) / f"t-{os.urandom(3).hex()}.jsonl", steps,
                                  **{k: kwargs.pop(k) for k in ("cost", "is_error", "result") if k in kwargs})

    async def go():
        run = await start_run(Workspace(repo), RunRequest(prompt=prompt, agent="replay",
                                                          transcript=str(transcript), **kwargs), Collect())
        return await run.wait()

    return asyncio.run(go())


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every file in the working tree (not .git) → sha256, plus the index file's bytes."""
    snap = {}
    for path in sorted(root.rglob("*")):
        if ".git" in path.relative_to(root).parts or not path.is_file():
            continue
        snap[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    snap[".git/index"] = hashlib.sha256((root / ".git" / "index").read_bytes()).hexdigest()
    return snap


def committed(repo: Path, sha: str, path: str) -> str:
    return git(repo, "show", f"{sha}:{path}")


def test_isolated_run_commits_on_its_branch_with_trailer_and_note(repo):
    data = run_prompt(repo, [Say("adding"), Write("hello.py", "print('hi')\n"),
                             Edit("app.py", "return 1", "return 2")], prompt="add hello")
    assert data["status"] == "succeeded"
    assert data["branch"] == f"promptrail/{data['id']}"
    assert git(repo, "rev-parse", data["branch"]).strip() == data["commit_sha"]
    assert git(repo, "rev-parse", "main").strip() == data["base_sha"]  # the user's branch did not move
    message = git(repo, "log", "-1", "--format=%B", data["commit_sha"])
    assert message.startswith("add hello\n")
    assert f"Promptrail-Run: {data['id']}" in message
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", data["commit_sha"]).strip() == \
        "Dev One <dev@example.com>|Dev One <dev@example.com>"
    note = json.loads(git(repo, "notes", "--ref=refs/notes/promptrail", "show", data["commit_sha"]))
    assert note["run_id"] == data["id"] and note["cost_usd"] == 0.0123
    assert {f["path"]: (f["status"], f["additions"], f["deletions"]) for f in data["files"]} == {
        "hello.py": ("added", 1, 0), "app.py": ("modified", 1, 1)}
    assert data["tokens"] == {"input": 2000, "output": 150, "cache_read": 500, "cache_write": 100}
    assert data["cost_source"] == "reported"
    assert not Path(data["worktree"]).exists()  # cleaned up once committed


def test_isolated_mode_never_touches_uncommitted_user_work(repo):
    (repo / "README.md").unlink()                         # a deleted tracked file
    (repo / "app.py").write_text("def main():\n    return 1  # mine\n")  # modified; the agent edits it too
    git(repo, "add", "app.py")
    (repo / "app.py").write_text("def main():\n    return 1  # mine, unstaged\n")
    (repo / "notes.txt").write_text("untracked\n")
    before = tree_snapshot(repo)
    status_before = git(repo, "status", "--porcelain")
    data = run_prompt(repo, [Edit("app.py", "return 1", "return 42"), Write("new.py", "x = 1\n")])
    assert data["status"] == "succeeded"
    assert tree_snapshot(repo) == before
    assert git(repo, "status", "--porcelain") == status_before
    assert sorted(f["path"] for f in data["files"]) == ["app.py", "new.py"]
    assert committed(repo, data["commit_sha"], "app.py") == "def main():\n    return 42\n"
    assert committed(repo, data["commit_sha"], "README.md") == "# project\n"  # the user's deletion stays theirs


def test_direct_mode_leaves_conflicting_path_uncommitted(repo):
    (repo / "README.md").unlink()
    (repo / "app.py").write_text("def main():\n    return 1  # mine\n")
    data = run_prompt(repo, [Edit("app.py", "return 1", "return 42"), Write("new.py", "x = 1\n")], mode="direct")
    assert data["status"] == "needs_attention"
    ref = f"refs/promptrail/snapshots/{data['id']}"
    assert data["error"] == (f"1 path(s) the agent changed already had your uncommitted changes and were left "
                             f"uncommitted: app.py; your own versions are saved in {ref} (`git checkout {ref} -- "
                             "PATH` restores one)")
    # Nothing is lost: the user's own version of the file the agent overwrote is in the snapshot.
    assert git(repo, "show", f"{ref}:app.py") == "def main():\n    return 1  # mine\n"
    assert [f["path"] for f in data["files"]] == ["new.py"]
    assert git(repo, "rev-parse", "HEAD").strip() == data["commit_sha"]
    # The user's work and the agent's edit of the same file are still in the working tree, uncommitted.
    assert (repo / "app.py").read_text() == "def main():\n    return 42  # mine\n"
    assert not (repo / "README.md").exists()
    assert git(repo, "status", "--porcelain").splitlines() == [" D README.md", " M app.py"]


def test_direct_mode_keeps_what_the_user_staged(repo):
    (repo / "staged.txt").write_text("staged by me\n")
    git(repo, "add", "staged.txt")
    data = run_prompt(repo, [Write("new.py", "x = 1\n")], mode="direct")
    assert data["status"] == "succeeded"
    assert [f["path"] for f in data["files"]] == ["new.py"]
    assert git(repo, "status", "--porcelain").splitlines() == ["A  staged.txt"]


def write_hook(repo: Path, body: str) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(0o755)


def test_rejecting_hook_keeps_change_and_records_output(repo):
    write_hook(repo, "echo 'lint: trailing whitespace in hello.py' >&2\nexit 1\n")
    data = run_prompt(repo, [Write("hello.py", "x = 1 \n")])
    assert data["status"] == "hook_failed"
    assert data["commit_sha"] is None
    assert git(repo, "rev-parse", data["branch"]).strip() == data["base_sha"]  # no commit on the branch
    assert (Path(data["worktree"]) / "hello.py").read_text() == "x = 1 \n"    # the change is kept
    log = subprocess.run([_promptrail(), "log", data["id"], "--json", "--repo", str(repo)],
                         capture_output=True, text=True, check=True)
    assert any("lint: trailing whitespace in hello.py" in e["text"] for e in json.loads(log.stdout))


def test_reformatting_hook_content_is_what_gets_committed(repo):
    write_hook(repo, "for f in $(git diff --cached --name-only); do sed -i 's/  *$//' \"$f\"; git add \"$f\"; done\n")
    data = run_prompt(repo, [Write("hello.py", "x = 1   \n")])
    assert data["status"] == "succeeded"
    assert committed(repo, data["commit_sha"], "hello.py") == "x = 1\n"


def test_no_identity_fails_before_the_agent_and_writes_no_config(tmp_path, isolated_home):
    repo = make_repo(tmp_path / "p", identity=False)
    config_before = (repo / ".git" / "config").read_text()
    with pytest.raises(PromptrailError) as excinfo:
        run_prompt(repo, [Write("x.py", "1\n")])
    assert str(excinfo.value).startswith("git has no identity (user.name / user.email)")
    assert (repo / ".git" / "config").read_text() == config_before
    assert not (isolated_home / ".gitconfig").exists()
    assert Workspace(repo).store.list_runs() == []  # refused before any run row was written


def test_detached_head(repo):
    sha = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "--detach")
    data = run_prompt(repo, [Write("d.py", "1\n")])
    assert data["status"] == "succeeded" and data["base_sha"] == sha
    assert git(repo, "rev-parse", f"{data['commit_sha']}^").strip() == sha


def test_empty_repository_gets_a_root_commit(tmp_path):
    repo = make_repo(tmp_path / "empty")
    data = run_prompt(repo, [Write("first.py", "print(1)\n")])
    assert data["status"] == "succeeded"
    assert data["base_sha"] is None
    assert git(repo, "rev-list", "--parents", "-n1", data["commit_sha"]).split() == [data["commit_sha"]]
    assert [f["path"] for f in data["files"]] == ["first.py"]


def test_two_concurrent_runs_commit_on_their_own_branches(repo, tmp_path):
    t1 = write_transcript(tmp_path / "a.jsonl", [Write(f"a{i}.py", f"{i}\n") for i in range(20)])
    t2 = write_transcript(tmp_path / "b.jsonl", [Write(f"b{i}.py", f"{i}\n") for i in range(20)])

    async def both():
        ws = Workspace(repo)
        runs = [await start_run(ws, RunRequest(prompt=f"run {n}", agent="replay", transcript=str(t)), Collect())
                for n, t in ((1, t1), (2, t2))]
        return await asyncio.gather(*(r.wait() for r in runs))

    first, second = asyncio.run(both())
    assert first["status"] == second["status"] == "succeeded", (first["error"], second["error"])
    assert first["branch"] != second["branch"]
    assert len(first["files"]) == len(second["files"]) == 20
    assert "index.lock" not in json.dumps([first, second])


def test_secret_in_prompt_is_redacted_everywhere(repo):
    secret = "sk-ant-api03-" + "A1b2C3d4" * 6
    data = run_prompt(repo, [Say(f"using {secret}"), Write("k.py", "KEY = None\n")], prompt=f"use key {secret} here")
    assert data["prompt"] == "use key sk-ant-[REDACTED] here"
    blob = json.dumps(Workspace(repo).store.log(data["id"])) + git(repo, "log", "-1", "--format=%B", data["commit_sha"])
    blob += git(repo, "notes", "--ref=refs/notes/promptrail", "show", data["commit_sha"])
    assert secret not in blob and "sk-ant-[REDACTED]" in blob
    # The store is in WAL mode: fresh rows may sit in audit.db-wal, not yet in audit.db. Read every
    # file of it, and see the redacted prompt there first, so this check reads where the data is.
    raw = b"".join(path.read_bytes() for path in (repo / ".git" / "promptrail").glob("audit.db*"))
    assert b"use key sk-ant-[REDACTED] here" in raw
    assert secret.encode() not in raw


def test_agent_error_and_incomplete_outcomes(repo):
    failed = run_prompt(repo, [Write("x.py", "1\n")], is_error=True)
    # The partial work is kept on the run's branch, and the gate will not merge a failed run.
    assert failed["status"] == "failed" and failed["error"] == "failed badly"
    assert git(repo, "show", f"{failed['commit_sha']}:x.py") == "1\n"
    assert git(repo, "rev-parse", "main").strip() == failed["base_sha"]
    assert "the run ended failed; only a finished run's work can be merged" in failed["gate"]["merge_blockers"]
    incomplete = run_prompt(repo, [Write("y.py", "1\n")], result=False)
    assert incomplete["status"] == "incomplete"
    assert incomplete["cost_usd"] is None and incomplete["commit_sha"] is None


def test_no_changes(repo):
    data = run_prompt(repo, [Say("nothing to do")])
    assert data["status"] == "no_changes" and data["commit_sha"] is None and data["files"] == []
    # Nothing to review: the run leaves no branch (and says none) and no worktree behind.
    assert data["branch"] is None
    assert git(repo, "branch", "--list", "promptrail/*") == ""
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_log_is_gap_free_and_streamed_in_order(repo, tmp_path):
    transcript = write_transcript(tmp_path / "t.jsonl", [Say(f"line {i}") for i in range(1500)])
    sink = Collect()

    async def go():
        run = await start_run(Workspace(repo), RunRequest(prompt="p", agent="replay", transcript=str(transcript)), sink)
        return await run.wait()

    data = asyncio.run(go())
    streamed = [e.seq for e in sink.events if type(e).__name__ == "LogEntry"]
    stored = [e["seq"] for e in Workspace(repo).store.log(data["id"])]
    assert streamed == stored == list(range(1, len(stored) + 1))
    assert len(stored) > 1500


def test_interrupted_run_is_settled_on_open(repo):
    ws = Workspace(repo)
    ws.store.insert_run({"id": "deadbeef0001", "prompt": "p", "status": "running", "pid": 2 ** 22 + 7,
                         "host": __import__("socket").gethostname(), "started_at": "2026-01-01T00:00:00Z",
                         "agent": "replay", "mode": "isolated", "model": None, "base_sha": None}, event_actor=None)
    assert Workspace(repo).store.get_run("deadbeef0001")["status"] == "interrupted"
    # Its final event seals it like any ended run: a later edit of its record is caught.
    store = Workspace(repo).store
    assert store.verify().ok
    conn = sqlite3.connect(repo / ".git" / "promptrail" / "audit.db")
    with conn:
        conn.execute("UPDATE runs SET status = 'succeeded' WHERE id = 'deadbeef0001'")
    conn.close()
    verdict = store.verify()
    assert (verdict.ok, verdict.table, verdict.reason) == (
        False, "runs", 'run deadbeef0001: status differs from the sealed run.interrupted event (sealed "interrupted", '
                       'found "succeeded")')


def _promptrail() -> str:
    import shutil
    import sys

    return shutil.which("promptrail", path=os.path.dirname(sys.executable)) or "promptrail"


def test_direct_mode_saves_overwritten_untracked_work(repo):
    (repo / "new.py").write_text("my draft\n")  # untracked; the agent writes the same path
    data = run_prompt(repo, [Write("new.py", "agent version\n")], mode="direct")
    assert data["status"] == "needs_attention"
    assert git(repo, "show", f"refs/promptrail/snapshots/{data['id']}:new.py") == "my draft\n"
    assert git(repo, "rev-parse", "HEAD").strip() == data["base_sha"]  # nothing committed


def test_direct_mode_refused_during_an_unfinished_merge(repo):
    git(repo, "checkout", "-qb", "feat")
    (repo / "app.py").write_text("def main():\n    return 'feat'\n")
    git(repo, "commit", "-qam", "feat")
    git(repo, "checkout", "-q", "main")
    (repo / "app.py").write_text("def main():\n    return 'main'\n")
    git(repo, "commit", "-qam", "main")
    git(repo, "merge", "feat", check=False)  # conflicts: the merge is left unfinished
    head = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(PromptrailError) as excinfo:
        run_prompt(repo, [Write("x.py", "1\n")], mode="direct")
    assert str(excinfo.value) == ("a merge is in progress; finish it or abort it (`git merge --abort`) before a "
                                  "direct-mode run, or use --mode isolated")
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert (repo / ".git" / "MERGE_HEAD").exists()
    # Isolated mode works from the committed base and leaves the merge alone.
    assert run_prompt(repo, [Write("x.py", "1\n")])["status"] == "succeeded"
    assert (repo / ".git" / "MERGE_HEAD").exists()


def test_nul_byte_in_prompt_is_refused(repo):
    with pytest.raises(PromptrailError, match="^the prompt contains a NUL byte; remove it and retry$"):
        run_prompt(repo, [Write("x.py", "1\n")], prompt="fix\0it")


def test_a_prompt_that_is_not_utf8_is_refused_before_anything_is_written(repo, sample_transcript):
    # A Latin-1 terminal sends "café" as the byte 0xe9; Python keeps it as a lone surrogate.
    result = subprocess.run([sys.executable.encode(), b"-m", b"promptrail", b"run", b"fix caf\xe9",
                             b"--transcript", bytes(sample_transcript), b"--repo", bytes(repo)],
                            capture_output=True, env={**os.environ, "LANG": "C.UTF-8"})
    assert result.returncode == 2
    assert result.stderr.decode() == ("promptrail: error: the prompt is not valid UTF-8 (at character 8); set your "
                                      "terminal to UTF-8 (e.g. LANG=C.UTF-8) and retry\n")
    assert not (repo / ".git" / "promptrail" / "audit.db").exists() or Workspace(repo).store.list_runs() == []


def test_prune_removes_clean_worktrees_and_keeps_uncommitted_work(repo, tmp_path):
    write_hook(repo, "exit 1\n")
    rejected = run_prompt(repo, [Write("kept.py", "1\n")])  # hook_failed: the change waits in its worktree
    assert rejected["status"] == "hook_failed" and Path(rejected["worktree"]).exists()

    def prune(*args):
        result = subprocess.run([sys.executable, "-m", "promptrail", "prune", *args, "--json", "--repo", str(repo)],
                                capture_output=True, text=True, check=True)
        return json.loads(result.stdout)

    kept = prune()
    assert kept["removed"] == [] and [e["run_id"] for e in kept["kept"]] == [rejected["id"]]
    assert Path(rejected["worktree"]).exists()
    assert prune("--force", "--dry-run")["removed"][0]["uncommitted"] is True
    assert Path(rejected["worktree"]).exists()
    forced = prune("--force")
    assert [e["run_id"] for e in forced["removed"]] == [rejected["id"]]
    assert not Path(rejected["worktree"]).exists()
    # The run committed nothing: its branch (still at the base) existed only for the worktree.
    assert git(repo, "branch", "--list", rejected["branch"]) == ""
    assert Workspace(repo).store.get_run(rejected["id"])["branch"] is None and Workspace(repo).store.verify().ok


def test_a_second_direct_run_in_the_same_working_tree_is_refused_while_the_first_works(repo, tmp_path):
    slow = write_transcript(tmp_path / "slow.jsonl", [Say("thinking"), Write("first.py", "1\n")])
    quick = write_transcript(tmp_path / "quick.jsonl", [Write("second.py", "2\n")])

    async def go():
        ws = Workspace(repo)
        first = await start_run(ws, RunRequest(prompt="first", agent="replay", transcript=str(slow), mode="direct",
                                               replay_delay=0.5), Collect())
        with pytest.raises(PromptrailError) as refused:
            await start_run(ws, RunRequest(prompt="second", agent="replay", transcript=str(quick), mode="direct"))
        isolated = await start_run(ws, RunRequest(prompt="beside it", agent="replay", transcript=str(quick)))
        return await first.wait(), str(refused.value), await isolated.wait()

    first, refused, isolated = asyncio.run(go())
    assert refused == (f"direct-mode run {first['id']} is still working in {repo}; wait for it (or cancel it), or "
                       "use --mode isolated")
    assert (first["status"], [f["path"] for f in first["files"]]) == ("succeeded", ["first.py"])
    assert isolated["status"] == "succeeded"
    # Once the first has ended, the working tree is free again.
    assert run_prompt(repo, [Write("third.py", "3\n")], mode="direct")["status"] == "succeeded"


def _direct_run_while_you_edit(repo: Path, tmp_path: Path, steps: list) -> dict:
    """A slow direct-mode run; while it works, you change app.py (clean before) and add notes.txt."""
    transcript = write_transcript(tmp_path / "slow.jsonl", steps)

    async def go():
        run = await start_run(Workspace(repo), RunRequest(prompt="p", agent="replay", transcript=str(transcript),
                                                          mode="direct", replay_delay=0.4), Collect())
        await asyncio.sleep(0.2)
        (repo / "app.py").write_text("mine\n")
        (repo / "notes.txt").write_text("my notes\n")
        return await run.wait()

    return asyncio.run(go())


def test_direct_mode_leaves_what_you_changed_during_the_run_uncommitted(repo, tmp_path):
    data = _direct_run_while_you_edit(repo, tmp_path, [Say("working"), Write("agent.py", "1\n"), Say("done")])
    assert (data["status"], [f["path"] for f in data["files"]]) == ("succeeded", ["agent.py"])
    assert git(repo, "show", "--name-only", "--format=", data["commit_sha"]) == "agent.py\n"
    assert ((repo / "app.py").read_text(), (repo / "notes.txt").read_text()) == ("mine\n", "my notes\n")
    assert git(repo, "status", "--porcelain") == " M app.py\n?? notes.txt\n"
    log = [e["text"] for e in Workspace(repo).store.log(data["id"])]
    assert ("changed during the run, but the agent wrote none of them (you, or another program): app.py, "
            "notes.txt; left uncommitted") in log


def test_direct_mode_after_an_agent_command_commits_all_it_cannot_tell_apart_and_says_so(repo, tmp_path):
    data = _direct_run_while_you_edit(repo, tmp_path, [Bash("make gen"), Write("agent.py", "1\n"), Say("done")])
    assert sorted(f["path"] for f in data["files"]) == ["agent.py", "app.py", "notes.txt"]
    log = [e["text"] for e in Workspace(repo).store.log(data["id"])]
    assert ("changed during the run by no file tool of the agent (by its commands, or by you): app.py, notes.txt; "
            "taken as the run's") in log


def test_files_gitignore_excludes_are_named_and_kept_in_the_worktree(tmp_path):
    repo = make_repo(tmp_path / "ignoring", {".gitignore": "build/\n*.log\n", "app.py": "x = 1\n"})
    only_ignored = run_prompt(repo, [Write("build/out.txt", "artifact\n"), Write("run.log", "log\n")])
    worktree = Path(Workspace(repo).store.get_run(only_ignored["id"])["worktree"])
    assert (only_ignored["status"], only_ignored["commit_sha"]) == ("no_changes", None)
    assert only_ignored["error"] == \
        f"the agent wrote only files .gitignore excludes (build/, run.log); they are in {worktree}"
    assert (worktree / "build" / "out.txt").read_text() == "artifact\n"  # not thrown away
    assert git(repo, "branch", "--list", only_ignored["branch"]) != ""  # the worktree's checkout
    prune_worktrees(Workspace(repo))
    assert not worktree.exists() and git(repo, "branch", "--list", "promptrail/*") == ""
    assert Workspace(repo).store.get_run(only_ignored["id"])["branch"] is None
    assert Workspace(repo).store.verify().ok  # the change of a sealed field is itself sealed

    both = run_prompt(repo, [Write("build/out.txt", "artifact\n"), Write("app.py", "x = 2\n")])
    worktree = Path(Workspace(repo).store.get_run(both["id"])["worktree"])
    assert (both["status"], [f["path"] for f in both["files"]]) == ("succeeded", ["app.py"])
    log = [e["text"] for e in Workspace(repo).store.log(both["id"])]
    assert (f"not committed, as .gitignore excludes them: build/; they stay in the run's worktree {worktree} "
            "(`promptrail prune` removes it)") in log
    assert (worktree / "build" / "out.txt").is_file()


SLOW_DIRECT_RUN = """
import asyncio, json, os, sys, time
from promptrail.errors import PromptrailError
from promptrail.runs import RunRequest, start_run
from promptrail.workspace import Workspace

async def go():
    while not os.path.exists(sys.argv[3]):  # both processes start their run at the same moment
        time.sleep(0.005)
    try:
        run = await start_run(Workspace(sys.argv[1]), RunRequest(prompt="p", agent="replay", transcript=sys.argv[2],
                                                                 mode="direct", replay_delay=0.3))
    except PromptrailError as exc:
        return {"refused": str(exc)}
    return {"status": (await run.wait())["status"]}

print(json.dumps(asyncio.run(go())))
"""


def test_two_processes_starting_direct_runs_at_once_get_one_run(repo, tmp_path):
    transcripts = [write_transcript(tmp_path / f"{n}.jsonl", [Say("working")] * 5 + [Write(f"f{n}.py", "1\n")])
                   for n in range(2)]
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", SLOW_DIRECT_RUN, str(repo), str(t), str(go)],
                                  stdout=subprocess.PIPE, text=True) for t in transcripts]
    time.sleep(1.0)  # both have imported promptrail and wait
    go.touch()
    outcomes = sorted((json.loads(p.communicate(timeout=60)[0]) for p in processes), key=lambda o: "refused" in o)
    (ran,) = Workspace(repo).store.list_runs()
    assert outcomes == [{"status": "succeeded"}, {"refused": f"direct-mode run {ran['id']} is still working in "
                                                             f"{repo}; wait for it (or cancel it), or use --mode "
                                                             "isolated"}]


def test_direct_mode_knows_the_agents_paths_through_dot_dot_and_symlinks(repo):
    (repo / "sub").mkdir()
    (repo / "sub" / "keep.py").write_text("0\n")
    os.symlink("sub", repo / "link")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a folder and a link to it")
    data = run_prompt(repo, [Write("sub/../top.py", "1\n"), Write("link/deep.py", "2\n")], mode="direct")
    assert (data["status"], sorted(f["path"] for f in data["files"])) == ("succeeded", ["sub/deep.py", "top.py"])
    assert not [e for e in Workspace(repo).store.log(data["id"]) if "changed during the run" in e["text"]]


def test_direct_mode_does_not_call_your_own_further_edits_the_agents(repo, tmp_path):
    (repo / "app.py").write_text("wip\n")  # yours, uncommitted, before the run
    data = _direct_run_while_you_edit(repo, tmp_path, [Say("working"), Write("agent.py", "1\n"), Say("done")])
    assert (data["status"], data["error"], [f["path"] for f in data["files"]]) == ("succeeded", None, ["agent.py"])
    assert (repo / "app.py").read_text() == "mine\n"  # your later edit, untouched and uncommitted


def test_a_locks_folder_that_cannot_be_used_is_one_clear_error(repo):
    Workspace(repo)  # makes .git/promptrail
    (repo / ".git" / "promptrail" / "locks").write_text("not a folder\n")
    with pytest.raises(PromptrailError) as excinfo:
        run_prompt(repo, [Write("x.py", "1\n")], mode="direct")
    folder = repo / ".git" / "promptrail" / "locks"
    assert str(excinfo.value).startswith(f"cannot use the lock file {folder}/direct-")
    assert str(excinfo.value).endswith(f".lock: File exists; check that {folder} is writable")
    assert Workspace(repo).store.list_runs() == []  # refused before any run row


def test_a_direct_run_first_settles_a_dead_run_of_a_workspace_opened_long_ago(repo):
    ws = Workspace(repo)  # a language server opens it once and keeps it
    ws.store.insert_run({"id": "deadbeef0002", "prompt": "p", "status": "running", "pid": 2 ** 22 + 9,
                         "host": __import__("socket").gethostname(), "started_at": "2026-01-01T00:00:00Z",
                         "agent": "replay", "mode": "direct", "model": None, "base_sha": None}, event_actor=None)
    transcript = write_transcript(repo.parent / "t-settle.jsonl", [Write("x.py", "1\n")])

    async def go():
        run = await start_run(ws, RunRequest(prompt="p", agent="replay", transcript=str(transcript), mode="direct"))
        return await run.wait()

    assert asyncio.run(go())["status"] == "succeeded"
    assert ws.store.get_run("deadbeef0002")["status"] == "interrupted"
