"""The orchestrator: one run's whole life, from prompt to audited commit.

``start_run`` validates everything a user can get wrong *before* anything is written (identity,
agent, transcript), then writes the run row, so a crash at any later point leaves evidence.
The run itself (``Run.execute``) is: worktree → agent events (each logged as it happens) →
verdict → commit → note → files → feed events. Faces see it all through ``EventSink``.

States: queued → running → committing → succeeded | no_changes | failed | cancelled |
incomplete | hook_failed | needs_attention (direct mode: a path the agent changed already had
the user's uncommitted changes, so it was left uncommitted); ``interrupted`` is set later for a
run whose process died.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from promptrail.agents.base import (Agent, AgentEvent, Finished, Raw, Started, Text, ToolResult, ToolUse,
                                    Usage)
from promptrail.audit.store import RUN_TOKEN_COLUMNS, AuditStore, utc_now
from promptrail.config import AGENTS, MODES
from promptrail.errors import PromptrailError
from promptrail.events import CommitLanded, EventSink, FanOut, RunOpened, RunStatus
from promptrail.gitops import commit as gitcommit
from promptrail.gitops import worktree
from promptrail.gitops.repo import Identity, Repo
from promptrail.logbook import LogBook
from promptrail.redact import redact
from promptrail.standards import run_check
from promptrail.workspace import Workspace

FINAL_STATES = ("succeeded", "no_changes", "failed", "cancelled", "incomplete", "hook_failed",
                "needs_attention", "budget_exceeded", "interrupted")


@dataclass
class RunRequest:
    prompt: str
    agent: str | None = None
    model: str | None = None
    mode: str | None = None
    transcript: str | None = None
    claude_path: str | None = None
    #: Extra environment for the agent process (tests point the CLI at a fake API this way).
    agent_env: dict[str, str] | None = None
    #: Seconds between replayed transcript lines (0 = as fast as possible).
    replay_delay: float = 0.0


def new_run_id() -> str:
    return secrets.token_hex(6)


def make_agent(workspace: Workspace, request: RunRequest, max_budget_usd: float | None = None) -> Agent:
    settings = workspace.config.agent
    # A transcript only means something to the replay agent: giving one picks it.
    name = request.agent or ("replay" if request.transcript else settings.name)
    if name not in AGENTS:
        raise PromptrailError(f"unknown agent '{name}'; use one of {', '.join(AGENTS)}")
    model = request.model or settings.model
    if name == "replay":
        from promptrail.agents.replay import ReplayAgent

        transcript = request.transcript or settings.transcript
        if not transcript:
            raise PromptrailError("the replay agent needs a transcript; pass --transcript FILE")
        path = Path(transcript).expanduser()
        if not path.is_absolute() and not path.exists():
            path = workspace.root / path
        if path.is_dir():
            raise PromptrailError(f"{transcript} is a folder; pass a transcript file (.jsonl)")
        if not path.is_file():
            raise PromptrailError(f"transcript not found: {transcript}")
        return ReplayAgent(path, delay=request.replay_delay)
    if name == "claude-cli":
        import shutil

        from promptrail.agents.claude_cli import ClaudeCliAgent

        claude_path = request.claude_path or settings.claude_path
        if "/" in claude_path:  # a path, not a name to look up on PATH: made absolute, as the agent runs
            given = Path(claude_path).expanduser()  # in the run's worktree, not here
            if not given.is_absolute():
                given = given if given.exists() else workspace.root / given
            claude_path = str(given.absolute())
        search_path = (request.agent_env or {}).get("PATH", os.environ.get("PATH"))
        if os.path.isfile(claude_path) and not os.access(claude_path, os.X_OK):
            raise PromptrailError(f"'{claude_path}' is not executable; `chmod +x` it or pass another --claude-path")
        if shutil.which(claude_path, path=search_path) is None:
            raise PromptrailError(f"claude CLI not found at '{claude_path}'; install it with "
                                  "`npm install -g @anthropic-ai/claude-code` or pass --claude-path PATH")
        return ClaudeCliAgent(claude_path=claude_path, model=model,
                              extra_args=["--max-budget-usd", f"{max_budget_usd:g}"] if max_budget_usd else None,
                              env=request.agent_env, silence_timeout=settings.silence_timeout_s)
    from promptrail.agents.anthropic_api import AnthropicAgent  # the last of AGENTS

    return AnthropicAgent.from_config(workspace.config, model=request.model, env=request.agent_env,
                                      max_budget_usd=max_budget_usd)


class Run:
    """One run in progress. Created by ``start_run``; ``task`` drives it; ``cancel()`` stops it."""

    def __init__(self, workspace: Workspace, request: RunRequest, agent: Agent, identity: Identity,
                 sink: EventSink, row: dict[str, Any]) -> None:
        self.workspace, self.request, self.agent, self.identity = workspace, request, agent, identity
        self.sink = sink
        self.id: str = row["id"]
        self.row = row
        self.cancelled = False
        self.task: asyncio.Task | None = None
        self.log = LogBook(workspace.store, self.id, sink)
        #: Direct mode: the ref holding the user's uncommitted work as it was before the agent.
        self.snapshot_ref: str | None = None
        #: Where the agent says it works (a replay reports the recorded folder): tool paths are
        #: shown relative to it, or else to the run's own folder.
        self.agent_cwd: Path | None = None
        #: Tool call id → its one-line description, so a result that does not follow its own call
        #: (an agent that asked for several tools at once) says which call it answers.
        self.tool_calls: dict[str, str] = {}
        self.last_tool_call: str | None = None
        #: Direct mode's evidence of what the agent changed: the paths its file tools wrote, and
        #: whether it ran any command (which may change files no tool call names).
        self.written: set[str] = set()
        self.ran_commands = False
        #: The CLAUDE.md check's summary once the commit was checked (``RunStatus.violations``).
        self.check_summary: dict[str, Any] | None = None
        #: Direct mode: the working tree's lock file, held until the run has ended.
        self.tree_lock: IO[str] | None = None

    @property
    def store(self) -> AuditStore:
        return self.workspace.store

    async def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            # Once committing, the agent is done and the commit is not cut off half-way.
            late = "; the agent has finished, so its commit goes ahead" if self.row["status"] == "committing" else ""
            self.log.add("status", f"cancel requested{late}")
            await self.agent.cancel()

    async def wait(self) -> dict[str, Any]:
        assert self.task is not None
        return await self.task

    def _status(self, status: str, *, final: bool = False, **fields: Any) -> None:
        self.row.update(status=status, **fields)
        self.store.update_run(self.id, status=status, **fields)
        tokens = {key: self.row.get(col) or 0 for key, col in RUN_TOKEN_COLUMNS.items()}
        self.sink.emit(RunStatus(self.id, status, commit=self.row.get("commit_sha"),
                                 cost_usd=self.row.get("cost_usd"), tokens=tokens,
                                 gate={"status": self.row.get("gate_status")} if self.row.get("gate_status") else None,
                                 error=self.row.get("error"), final=final, violations=self.check_summary,
                                 costs_today=_spent_today(self.store) if final else None))

    # -- the run ------------------------------------------------------------------------------
    async def execute(self) -> dict[str, Any]:
        try:
            return await self._execute()
        finally:
            if self.tree_lock is not None:
                self.tree_lock.close()

    async def _execute(self) -> dict[str, Any]:
        workdir: Path | None = None
        before: dict[str, str | None] = {}
        finished: Finished | None = None
        try:
            if self.row["mode"] == "isolated":
                workdir, branch = await asyncio.to_thread(
                    worktree.create, self.workspace.repo, self.id, self.row["base_sha"])
                await asyncio.to_thread(self.store.update_run, self.id, worktree=str(workdir), branch=branch)
                self.row.update(worktree=str(workdir), branch=branch)
            else:
                workdir = self.workspace.root
                before = await asyncio.to_thread(gitcommit.working_tree_state, self.workspace.repo)
                snapshot = await asyncio.to_thread(gitcommit.snapshot_working_tree, self.workspace.repo, self.id,
                                                   self.identity)
                if snapshot:
                    self.snapshot_ref = gitcommit.SNAPSHOT_REFS + self.id
                    self.log.add("git", f"your uncommitted work is saved as {snapshot[:12]} "
                                        f"({self.snapshot_ref}) before the agent edits the working tree")
            self._status("running")
            self.log.add("system", f"{self.agent.label or self.agent.name} · {self.row['mode']} mode · "
                                   f"base {(self.row['base_sha'] or 'none (empty repository)')[:12]}"
                                   + (f" · worktree {workdir}" if self.row["mode"] == "isolated" else ""))
            finished = await self._drive_agent(workdir)
            outcome = await self._conclude(finished, workdir, before)
        except Exception as exc:  # a bug or an environment failure: record it, never lose the run
            self.log.add("error", f"promptrail error: {exc}")
            outcome = {"status": "failed", "error": f"promptrail error: {exc}"}
        try:
            await self.log.close()
        except Exception as exc:  # the log is evidence: a run whose log is incomplete did not end cleanly
            earlier = f"; {outcome['error']}" if outcome.get("error") else ""
            outcome.update(status="failed", error=f"promptrail error: the run log could not be written "
                                                  f"completely: {exc}{earlier}")
        ended = utc_now()
        self._status(outcome.pop("status"), final=True, ended_at=ended, **outcome)
        # seal="run": the event also seals the run's stored key fields and a digest of its whole
        # log (read in the event's transaction), so `promptrail verify` notices later edits; a thread,
        # since hashing a long log must not stall the event loop.
        await asyncio.to_thread(
            self.store.record_event, f"run.{self.row['status']}", run_id=self.id, actor=str(self.identity),
            data={"commit": self.row.get("commit_sha"), "cost_usd": self.row.get("cost_usd"),
                  "error": self.row.get("error")}, seal="run")
        from promptrail.queries import run_json  # local: queries imports this module's constants

        return run_json(self.workspace, self.id)

    def _agents_share(self, clean: list[str], conflicting: list[str]) -> tuple[list[str], list[str]]:
        """Of the paths that changed in the working tree during a direct-mode run (``clean``: they
        had no uncommitted changes of yours before; ``conflicting``: they had), those that are the
        agent's. An agent that ran no command can only have changed what its file tools wrote:
        anything else was edited by someone else (you, another program), stays uncommitted and is
        not called the agent's. After a command nobody can tell, so all of it counts, and is said."""
        foreign = sorted(path for path in (*clean, *conflicting) if path not in self.written)
        if not foreign:
            return clean, conflicting
        shown = _some_paths(foreign)
        if self.ran_commands:
            self.log.add("warning", f"changed during the run by no file tool of the agent (by its commands, or by "
                                    f"you): {shown}; taken as the run's")
            return clean, conflicting
        self.log.add("warning", f"changed during the run, but the agent wrote none of them (you, or another "
                                f"program): {shown}; left uncommitted")
        return [p for p in clean if p in self.written], [p for p in conflicting if p in self.written]

    async def _drive_agent(self, workdir: Path) -> Finished:
        finished: Finished | None = None
        stream = self.agent.events(self.request.prompt, workdir)
        try:
            recorded_group = False
            async for event in stream:
                if isinstance(event, Finished):
                    finished = event
                    break
                if not recorded_group and self.agent.process_group:
                    recorded_group = True
                    self.store.update_run(self.id, agent_pgid=self.agent.process_group)
                self._record(event, workdir)
        finally:
            await stream.aclose()
        if finished is None:
            finished = Finished(is_error=True, complete=False, error="the agent ended without a verdict")
        self._record_finish(finished)
        return finished

    def _record(self, event: AgentEvent, workdir: Path) -> None:
        if isinstance(event, Text):
            self.log.add("text", event.text)
        elif isinstance(event, ToolUse):
            self.tool_calls[event.id] = describe_tool_use(event, self.agent_cwd or workdir)
            self.last_tool_call = event.id
            self._note_change(event, self.agent_cwd or workdir, workdir)
            self.log.add("tool_use", self.tool_calls[event.id])
        elif isinstance(event, ToolResult):
            answers = self.tool_calls.get(event.tool_use_id) if event.tool_use_id != self.last_tool_call else None
            self.last_tool_call = None
            label = (f"{answers}:" + ("\n" if "\n" in event.content else " ")) if answers else ""
            self.log.add("tool_result", label + ("error: " if event.is_error else "") + event.content)
        elif isinstance(event, Raw):
            self.log.add("stderr" if event.stream == "stderr" else "raw", event.text)
        elif isinstance(event, Started):
            if event.cwd:
                self.agent_cwd = Path(event.cwd)
            fields = {k: v for k, v in (("session_id", event.session_id), ("model", event.model)) if v}
            if fields:
                self.row.update(fields)
                self.store.update_run(self.id, **fields)
            self.log.add("system", "agent started" + "".join(f" · {k} {v}" for k, v in fields.items()))
        elif isinstance(event, Usage):
            pass  # the verdict carries the totals

    def _note_change(self, event: ToolUse, agent_dir: Path, workdir: Path) -> None:
        if event.name in WRITING_TOOLS:
            target = (event.input or {}).get("file_path") or (event.input or {}).get("path") \
                or (event.input or {}).get("notebook_path")
            if isinstance(target, str):
                self.written.add(_path_in_tree(target, agent_dir, workdir))
        elif isinstance((event.input or {}).get("command"), str):
            self.ran_commands = True

    def _record_finish(self, finished: Finished) -> None:
        from promptrail import costs

        fields: dict[str, Any] = {"num_turns": finished.num_turns}
        if finished.usage:
            fields.update({col: getattr(finished.usage, key) for key, col in RUN_TOKEN_COLUMNS.items()})
        table = self.workspace.config.parse("prices", costs.price_table)
        model = self.row.get("model") or self.request.model
        per_model: dict[str | None, Usage] = dict(finished.usage_by_model) or {model: finished.usage or Usage()}
        # Zero tokens is "nothing was measured" (an API that only answered errors), not "free"; the
        # tokens of an agent stopped half-way are only worth pricing when the agent counted them all.
        measured = ((finished.complete or finished.usage_exact) and finished.usage is not None
                    and finished.usage.total() > 0)
        computed = costs.run_cost(per_model, table) if measured else None
        for name in [name for name, usage in per_model.items() if usage.total() and table.find(name) is None]:
            what = f"model '{name}'" if name else "a model the agent did not name"
            self.log.add("warning", f"no price known for {what}: the computed cost is unknown "
                                    "(add it under [prices] in .promptrail.toml)")
        reported, unusable = costs.reported_cost(finished)
        if unusable:
            kept = (f"the cost computed from its tokens (${computed:.4f}) is kept" if computed is not None
                    else "the run's cost is unknown")
            self.log.add("warning", f"{unusable}: it is recorded as unknown and {kept}")
        # The agent's own figure wins when it has one; unknown stays NULL, never 0.
        fields.update(cost_reported_usd=reported, cost_computed_usd=computed,
                      cost_usd=reported if reported is not None else computed,
                      cost_source="reported" if reported is not None else "computed" if computed is not None else None,
                      cost_mismatch=int(costs.mismatch(reported, computed)),
                      price_table=f"v{table.version} ({table.taken})" if computed is not None else None)
        if fields["cost_mismatch"]:
            names = [str(name) for name in per_model]
            prices = f"{names[0]}'s prices" if len(names) == 1 else f"the prices of {', '.join(names)}"
            shown_reported, shown_computed = _distinguishable(reported, computed)
            self.log.add("error", f"cost mismatch: the agent reported ${shown_reported}, the tokens cost "
                                  f"${shown_computed} at {prices} (more than 5 % apart)")
        self.row.update(fields)
        self.store.update_run(self.id, **fields)
        if finished.complete and not finished.is_error:
            cost = f" · ${reported:.4f}" if reported is not None else ""
            turns = f" · {finished.num_turns} turns" if finished.num_turns else ""
            self.log.add("status", f"agent finished{cost}{turns}")
        else:
            self.log.add("error", f"agent {'did not finish' if not finished.complete else 'failed'}: "
                                  f"{finished.error or finished.result or 'no details'}")

    async def _conclude(self, finished: Finished, workdir: Path, before: dict[str, str | None]) -> dict[str, Any]:
        repo = self.workspace.repo
        if self.cancelled:
            return {"status": "cancelled", "error": "cancelled by the user; nothing was committed"
                    + (f" (the agent's changes stay in {workdir})" if self.row["mode"] == "isolated" else "")}
        # A run stopped by its budget cap, or one that failed part-way in its own worktree, still
        # commits what it changed on its branch (behind the gate), so the work and the spend are
        # not lost and can be reviewed; its status keeps saying how it ended.
        budget_hit = finished.raw.get("subtype") == "error_max_budget_usd" or \
            finished.raw.get("stop_reason") == "budget_exceeded"
        error = finished.error or finished.result
        if budget_hit:
            ended = {"status": "budget_exceeded", "error": error or "budget exceeded"}
        elif not finished.complete:
            kept = f" (whatever it changed is in {workdir})" if self.row["mode"] == "isolated" else ""
            return {"status": "incomplete", "error": (finished.error or "the agent ended without a result") + kept}
        elif finished.is_error:
            ended = {"status": "failed", "error": error or "the agent reported an error"}
            if self.row["mode"] != "isolated":
                return ended  # direct mode: whatever it wrote stays in the working tree, uncommitted
        else:
            ended = {}
        self._status("committing")
        message = gitcommit.commit_message(self.row["summary"], self.row["prompt"], self.id,
                                           self.agent.label or self.agent.name)
        conflicting: list[str] = []
        if self.row["mode"] == "isolated":
            outcome = await asyncio.to_thread(gitcommit.commit_worktree, repo, workdir, message, self.identity)
        else:
            clean, conflicting = await asyncio.to_thread(gitcommit.changed_since, repo, before)
            clean, conflicting = self._agents_share(clean, conflicting)
            for path in map(gitcommit.one_line, conflicting):
                self.log.add("error", f"{path}: already had your uncommitted changes; the agent's edit is left "
                                      "uncommitted in your working tree for you to review; your own version: "
                                      f"`git show {self.snapshot_ref}:{path}`")
            outcome = await asyncio.to_thread(gitcommit.commit_paths, repo, clean, message, self.identity)
        if outcome.hook_output is not None:
            self.log.add("git", f"commit rejected by a hook:\n{outcome.hook_output}")
            return {"status": "hook_failed",
                    "error": "a git hook rejected the commit; the change is kept"
                             + (f" in {workdir}" if self.row["mode"] == "isolated" else " in your working tree")}
        # Files .gitignore excludes are never committed; in a fresh worktree only the run made them.
        # Said, and the worktree kept for them: what the agent wrote is not thrown away unseen.
        ignored = await asyncio.to_thread(gitcommit.ignored_paths, repo, workdir) \
            if self.row["mode"] == "isolated" else []
        if ignored:
            shown = _some_paths(ignored)
            self.log.add("warning", f"not committed, as .gitignore excludes them: {shown}; they stay in the run's "
                                    f"worktree {workdir} (`promptrail prune` removes it)")
        if not outcome.committed:
            if ignored:
                return ended or {"status": "no_changes", "error": f"the agent wrote only files .gitignore excludes "
                                                                  f"({shown}); they are in {workdir}"}
            if self.row["mode"] == "isolated":
                await asyncio.to_thread(worktree.remove, repo, workdir)
                if await asyncio.to_thread(worktree.drop_unused_branch, repo, self.row["branch"],
                                           self.row["base_sha"]):
                    await asyncio.to_thread(self.store.update_run, self.id, branch=None)
                    self.row["branch"] = None
            if conflicting:
                return {"status": "needs_attention", "error": _conflict_message(conflicting, self.snapshot_ref)}
            if not ended:
                self.log.add("status", "the agent changed no files")
            return ended or {"status": "no_changes"}
        files = [f.as_dict() for f in outcome.files]
        await asyncio.to_thread(self.store.set_run_files, self.id, files)
        await asyncio.to_thread(gitcommit.add_note, repo, outcome.sha, self._note(outcome.sha, files))
        self.log.add("git", f"committed {outcome.sha[:12]} on {self.row.get('branch') or 'HEAD'} · "
                            f"{len(files)} file(s)")
        self.row["commit_sha"] = outcome.sha
        self.store.record_event("run.committed", run_id=self.id, actor=str(self.identity),
                                data={"commit": outcome.sha, "branch": self.row.get("branch"),
                                      "files": [f["path"] for f in files]})
        self.sink.emit(CommitLanded(self.id, outcome.sha, [f["path"] for f in files]))
        self.check_summary = await run_check.check_run(
            self.workspace, self.id, base_sha=self.row["base_sha"], commit_sha=outcome.sha, files=files,
            actor=str(self.identity), log=self.log.add)
        if self.row["mode"] == "isolated" and not ignored:
            await asyncio.to_thread(worktree.remove, repo, workdir)
        result: dict[str, Any] = {"commit_sha": outcome.sha, "gate_status": "pending"}
        if conflicting:
            result.update(status="needs_attention", error=_conflict_message(conflicting, self.snapshot_ref))
        else:
            result["status"] = "succeeded"
        return {**result, **ended}

    def _note(self, sha: str, files: list[dict[str, Any]]) -> dict[str, Any]:
        row = self.row
        return {"run_id": self.id, "prompt": row["prompt"], "actor": {"name": row["actor_name"],
                "email": row["actor_email"]}, "agent": row["agent"], "model": row.get("model"),
                "mode": row["mode"], "base_sha": row["base_sha"], "commit_sha": sha,
                "tokens": {key: row.get(col) for key, col in RUN_TOKEN_COLUMNS.items()},
                "cost_usd": row.get("cost_usd"), "cost_source": row.get("cost_source"),
                "started_at": row["started_at"], "claude_md_sha": row.get("claude_md_sha"),
                "files": files, "tool": "promptrail"}


def _spent_today(store: AuditStore) -> float:
    from promptrail.costs import spent_today

    return spent_today(store)


def _conflict_message(paths: list[str], snapshot_ref: str | None) -> str:
    saved = (f"; your own versions are saved in {snapshot_ref} (`git checkout {snapshot_ref} -- PATH` restores one)"
             if snapshot_ref else "")
    return (f"{len(paths)} path(s) the agent changed already had your uncommitted changes and were left "
            f"uncommitted: {_some_paths(paths, limit=len(paths))}{saved}")


def _lock_working_tree(repo: Repo, run_id: str) -> IO[str]:
    """Lock ``repo``'s working tree for direct-mode run ``run_id`` (its id written in the lock file,
    so a refused run can name it), or refuse: another direct-mode run works there."""
    name = "direct-" + hashlib.sha256(str(repo.root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    handle = repo.try_lock(name)
    if handle is None:
        holder = repo.lock_holder(name) or "another one"
        raise PromptrailError(f"direct-mode run {holder} is still working in {repo.root}; wait for it "
                              "(or cancel it), or use --mode isolated")
    handle.truncate(0)
    handle.write(run_id)
    handle.flush()
    return handle


def _some_paths(paths: list[str], limit: int = 10) -> str:
    """``a.py, b.py and 3 more``, each path on one line (a newline in a file name cannot fake a log line)."""
    shown = ", ".join(gitcommit.one_line(path) for path in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


#: Tools that write the one file their input names: Claude Code's, and the anthropic agent's.
WRITING_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit", "write_file", "edit_file"})


def _path_in_tree(target: str, agent_dir: Path, workdir: Path) -> str:
    """A tool's path as git names the file it changed in ``workdir``: taken relative to where the
    agent works (``agent_dir``: a replay's recorded folder) with ``..`` resolved, then followed
    through symlinks inside the tree (writing ``link/a.txt`` changes git's ``sub/a.txt``). A path
    outside the tree is kept as given."""
    path = Path(os.path.normpath(target))
    if path.is_absolute():
        for base, candidate in ((Path(os.path.normpath(agent_dir)), path),
                                (Path(os.path.realpath(agent_dir)), Path(os.path.realpath(path)))):
            try:
                path = candidate.relative_to(base)
                break
            except ValueError:
                continue
        else:
            return target
    real_root = Path(os.path.realpath(workdir))
    try:
        return Path(os.path.realpath(real_root / path)).relative_to(real_root).as_posix()
    except ValueError:  # a symlink out of the tree: no file of git's changed
        return path.as_posix()


def describe_tool_use(event: ToolUse, workdir: Path) -> str:
    """A one-line, human description of a tool call (paths shown relative to the run's folder)."""
    data = event.input or {}
    target = data.get("file_path") or data.get("path") or data.get("notebook_path")
    if isinstance(target, str):
        try:
            target = Path(target).relative_to(workdir).as_posix()
        except ValueError:
            pass
        return f"{event.name} {gitcommit.one_line(target)}"
    if isinstance(data.get("command"), str):
        return f"{event.name} $ {data['command']}"
    if isinstance(data.get("pattern"), str):
        return f"{event.name} {data['pattern']}"
    return event.name


async def start_run(workspace: Workspace, request: RunRequest, sink: EventSink | None = None) -> Run:
    """Validate, write the run row, and start the run in the background. Returns at once.

    Everything the user can get wrong fails here, before the row exists or the agent starts."""
    prompt = request.prompt.strip() if request.prompt else ""
    if not prompt:
        raise PromptrailError("the prompt is empty; say what the agent should do")
    settings = workspace.config.agent
    if "\0" in prompt:
        raise PromptrailError("the prompt contains a NUL byte; remove it and retry")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:  # bytes a non-UTF-8 terminal sent, kept by surrogateescape
        raise PromptrailError(f"the prompt is not valid UTF-8 (at character {exc.start + 1}); set your terminal "
                              "to UTF-8 (e.g. LANG=C.UTF-8) and retry") from None
    mode = request.mode or settings.mode
    if mode not in MODES:
        raise PromptrailError(f"unknown mode '{mode}'; use isolated or direct")
    repo = workspace.repo
    if mode == "direct":
        unfinished = await asyncio.to_thread(gitcommit.operation_in_progress, repo)
        if unfinished:
            raise PromptrailError(f"{unfinished} before a direct-mode run, or use --mode isolated")
    identity = await asyncio.to_thread(repo.identity)
    # A damaged store found later would stop the run after its commit, with nothing recorded.
    await asyncio.to_thread(workspace.store.check_intact)
    from promptrail import costs

    budget = workspace.config.parse("budget", costs.budget_from)
    workspace.config.parse("prices", costs.price_table)  # a broken [prices] fails now, not after the agent
    await asyncio.to_thread(costs.check_budget_before_run, workspace.store, budget, identity.email)
    agent = make_agent(workspace, request, max_budget_usd=budget.per_run_usd)
    base_sha = await asyncio.to_thread(repo.head_sha)
    claude_md = repo.run("rev-parse", "-q", "--verify", f"{base_sha}:CLAUDE.md") if base_sha else None
    stored_prompt = redact(prompt)
    run_id = new_run_id()
    # Direct mode commits what changed in the working tree during the run: a second agent writing
    # there at the same time would have its files taken for the first one's. So one at a time per
    # working tree, under a lock file held until the run ends (a process that dies lets go of it).
    if mode == "direct":
        # A run whose process died may have left its agent writing here: settled (and ended) first.
        await asyncio.to_thread(workspace.settle_interrupted_runs)
    tree_lock = _lock_working_tree(repo, run_id) if mode == "direct" else None
    row = {
        "id": run_id, "prompt": stored_prompt, "summary": gitcommit.summarize(stored_prompt),
        "actor_name": identity.name, "actor_email": identity.email, "agent": agent.name,
        "agent_label": agent.label or None, "model": request.model or settings.model, "mode": mode,
        "status": "queued", "base_sha": base_sha,
        "branch": worktree.branch_for(run_id) if mode == "isolated" else repo.head_branch(),
        "target_branch": repo.head_branch(),
        "repo_root": str(repo.root), "claude_md_sha": claude_md.stdout.strip() if claude_md and claude_md.ok else None,
        "started_at": utc_now(), "pid": os.getpid(), "host": socket.gethostname(),
    }
    try:
        await asyncio.to_thread(workspace.store.insert_run, row, event_actor=str(identity))
    except BaseException:
        if tree_lock:
            tree_lock.close()
        raise
    fan = sink if isinstance(sink, FanOut) else FanOut(sink) if sink else FanOut()
    fan.emit(RunOpened(row["id"], stored_prompt, agent.name, agent.label, row["model"], mode, base_sha, row["branch"]))
    run = Run(workspace, RunRequest(**{**request.__dict__, "prompt": prompt}), agent, identity, fan, row)
    run.tree_lock = tree_lock
    run.task = asyncio.create_task(run.execute(), name=f"run-{row['id']}")
    return run


def _distinguishable(a: float, b: float) -> tuple[str, str]:
    """Two different amounts with 4 decimals, or as many more as it takes to tell them apart
    ($0.0004 and $0.00045 would both print as $0.0004)."""
    for places in range(4, 13):
        shown = f"{a:.{places}f}", f"{b:.{places}f}"
        if shown[0] != shown[1]:
            return shown
    return shown


def prune_worktrees(workspace: Workspace, *, force: bool = False, dry_run: bool = False) -> dict[str, list]:
    """Remove the worktrees finished runs left behind (cancelled, incomplete, hook_failed... keep
    theirs so the work can be inspected). A worktree that still holds uncommitted agent work is
    kept unless ``force``. Commits always stay, and so does a branch that has one; the branch of a
    run that committed nothing existed only for its worktree and goes with it."""
    repo = workspace.repo
    removed, kept = [], []
    for row in workspace.store.list_runs(limit=1_000_000):
        folder = Path(row["worktree"]) if row.get("worktree") else None
        if folder is None or not folder.exists() or row["status"] not in FINAL_STATES:
            continue
        dirty = repo.run("status", "--porcelain", cwd=folder).stdout.strip()
        entry = {"run_id": row["id"], "status": row["status"], "worktree": str(folder), "uncommitted": bool(dirty)}
        if dirty and not force:
            kept.append(entry)
            continue
        if not dry_run:
            worktree.remove(repo, folder)
            # A run that committed nothing kept its branch only for this worktree.
            if not row.get("commit_sha") and row.get("branch") and row.get("mode") == "isolated" \
                    and worktree.drop_unused_branch(repo, row["branch"], row.get("base_sha")):
                # The branch is a sealed field of the finished run: changed and sealed in one step.
                workspace.store.record_event("run.pruned", run_id=row["id"], actor=None, seal="run",
                                             data={"worktree": str(folder), "deleted_branch": row["branch"]},
                                             run_fields={"branch": None})
        removed.append(entry)
    return {"removed": removed, "kept": kept}
