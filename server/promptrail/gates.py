"""Quality gates: no AI change reaches the target branch without a human's sign-off on exactly
that change.

Owns the gate policy (``[gate]`` of ``.promptrail.toml``, read from the *target branch's
committed* file, so a run cannot loosen the policy that judges it), the gate state of a run
(approvals bound to a commit SHA, checks on that SHA, blocking violations), and the operations
simulate / approve / reject / merge / rollback. Every operation is an event in the feed.

The SHA under review is the tip of the run's branch: a new commit there makes earlier
approvals and checks stale. Merging and rolling back never touch the user's uncommitted work:
new commits are made in temporary worktrees, and a checked-out target is advanced with
``git merge --ff-only``, which refuses rather than overwrite local changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from promptrail.audit.store import utc_now
from promptrail.config import REPO_CONFIG_NAME, parse_toml
from promptrail.errors import PromptrailError
from promptrail.events import EventSink, FanOut, RunStatus
from promptrail.gitops import commit as gitcommit
from promptrail.gitops import worktree
from promptrail.gitops.repo import Identity, Repo
from promptrail.processes import end_group
from promptrail.redact import redact
from promptrail.workspace import Workspace

SEVERITIES = ("error", "warning", "info", "hint")
_GATE_KEYS = {"target", "required_approvals", "approvers", "allow_self_approval", "check", "block_on"}
_CHECK_KEYS = {"name", "run", "timeout_s"}
REVERTS_TRAILER = "Promptrail-Reverts"
#: A budget-capped run's partial work may be merged once approved; a failed run's may not.
MERGEABLE_STATES = ("succeeded", "needs_attention", "budget_exceeded")


@dataclass(frozen=True)
class CheckSpec:
    name: str
    run: str
    timeout_s: float = 600.0


@dataclass
class GatePolicy:
    target: str | None = None
    required_approvals: int = 1
    approvers: list[str] = field(default_factory=list)
    allow_self_approval: bool = False
    checks: list[CheckSpec] = field(default_factory=list)
    block_on: list[str] = field(default_factory=lambda: ["error"])
    source: str = "defaults"

    def may_approve(self, email: str) -> bool:
        if email.count("@") != 1:  # `*@leads.example.com` must not match `x@evil.com?@leads.example.com`
            return False
        return not self.approvers or any(fnmatch.fnmatchcase(email.lower(), p.lower()) for p in self.approvers)


def parse_policy(text: str, origin: str) -> GatePolicy:
    """``[gate]`` of a ``.promptrail.toml`` text; any mistake is one error naming the line."""
    data = parse_toml(text, origin)
    gate = data.get("gate", {})

    def fail(key: str, message: str) -> PromptrailError:
        line = next((n for n, text_line in enumerate(text.splitlines(), 1)
                     if text_line.strip().startswith(key)), None)
        return PromptrailError(f"{origin}{f':{line}' if line else ''}: [gate] {message}; fix the policy "
                               "(every gate operation refuses until it is valid)")

    if not isinstance(gate, dict):
        raise fail("gate", "must be a table")
    for key in gate:
        if key not in _GATE_KEYS:
            raise fail(key, f"unknown key '{key}' (known: {', '.join(sorted(_GATE_KEYS))})")
    policy = GatePolicy(source=origin)
    if "target" in gate:
        if not isinstance(gate["target"], str) or not gate["target"]:
            raise fail("target", "target must be a branch name")
        policy.target = gate["target"]
    if "required_approvals" in gate:
        value = gate["required_approvals"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise fail("required_approvals", "required_approvals must be a whole number ≥ 0")
        policy.required_approvals = value
    if "approvers" in gate:
        value = gate["approvers"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail("approvers", "approvers must be a list of emails or globs")
        policy.approvers = value
    if "allow_self_approval" in gate:
        if not isinstance(gate["allow_self_approval"], bool):
            raise fail("allow_self_approval", "allow_self_approval must be true or false")
        policy.allow_self_approval = gate["allow_self_approval"]
    if "block_on" in gate:
        value = gate["block_on"]
        if not isinstance(value, list) or any(v not in SEVERITIES for v in value):
            raise fail("block_on", f"block_on must be a list of {', '.join(SEVERITIES)}")
        policy.block_on = value
    checks = gate.get("check", [])
    if not isinstance(checks, list):
        raise fail("[[gate.check]]", "check must be written as [[gate.check]] tables")
    for check in checks:
        if not isinstance(check, dict):
            raise fail("[[gate.check]]", "each [[gate.check]] must be a table")
        unknown = set(check) - _CHECK_KEYS
        if unknown:
            raise fail(sorted(unknown)[0], f"unknown key '{sorted(unknown)[0]}' in [[gate.check]]")
        name, command, timeout = check.get("name"), check.get("run"), check.get("timeout_s", 600)
        if not isinstance(name, str) or not name or not isinstance(command, str) or not command:
            raise fail("[[gate.check]]", "each [[gate.check]] needs a name and a run command")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise fail("timeout_s", "timeout_s must be a positive number of seconds")
        policy.checks.append(CheckSpec(name, command, float(timeout)))
    return policy


def load_policy(repo: Repo, branch: str) -> GatePolicy:
    """The policy as committed on ``branch`` (defaults when the branch has no policy file)."""
    shown = repo.run("show", f"{branch}:{REPO_CONFIG_NAME}")
    if not shown.ok:
        if not repo.run("rev-parse", "-q", "--verify", f"refs/heads/{branch}").ok:
            raise PromptrailError(f"the gate's target branch '{branch}' does not exist")
        return GatePolicy(source="defaults")
    return parse_policy(shown.stdout, f"{branch}:{REPO_CONFIG_NAME}")


# -- state --------------------------------------------------------------------------------------
@dataclass
class GateState:
    """Where a run stands. ``label`` is what lenses and status bars show after ``gate:``."""

    status: str  # not_applicable | pending | approved | rejected | checks_failed | stale | merged | rolled_back
    label: str
    target: str | None
    sha: str | None
    approvals: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    blocking: list[dict[str, Any]]
    required_approvals: int
    stale_signoffs: int
    merge_blockers: list[str]

    @property
    def can_merge(self) -> bool:
        return not self.merge_blockers

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["can_merge"] = self.can_merge
        return data


def _branch_tip(repo: Repo, branch: str | None) -> str | None:
    if not branch:
        return None
    result = repo.run("rev-parse", "-q", "--verify", f"refs/heads/{branch}")
    return result.stdout.strip() if result.ok else None


def target_of(run: dict[str, Any], policy: GatePolicy | None = None) -> str:
    target = (policy.target if policy else None) or run.get("target_branch")
    if not target:
        raise PromptrailError(f"run {run['id']} started on a detached HEAD, so it has no target branch; "
                              "set [gate] target in .promptrail.toml")
    return target


def policy_for(workspace: Workspace, run: dict[str, Any]) -> tuple[GatePolicy, str]:
    """The policy that judges ``run`` and its target branch. The default target's committed policy
    may name another target; that branch's own committed policy then applies."""
    default_target = target_of(run)
    policy = load_policy(workspace.repo, default_target)
    target = policy.target or default_target
    if target != default_target:
        policy = load_policy(workspace.repo, target)
    return policy, target


def gate_state(workspace: Workspace, run: dict[str, Any]) -> GateState:
    """The gate as of now (reads refs live, so a new commit on the run's branch shows as stale)."""
    store, repo = workspace.store, workspace.repo
    if not run.get("commit_sha"):
        return GateState("not_applicable", run.get("status") or "", run.get("target_branch"), None,
                         [], [], [], [], 0, 0, ["the run has no commit"])
    policy, target = policy_for(workspace, run)
    tip = _branch_tip(repo, run.get("branch")) or run["commit_sha"]
    signoffs = store.signoffs(run["id"])
    # One voice per person: their latest sign-off on this SHA counts.
    latest_by_actor = {s["actor_email"].lower(): s for s in signoffs if s["commit_sha"] == tip}
    fresh = list(latest_by_actor.values())
    approvals = [s for s in fresh if s["decision"] == "approve"]
    rejections = [s for s in fresh if s["decision"] == "reject"]
    stale = len({s["actor_email"].lower() for s in signoffs if s["commit_sha"] != tip})
    wanted = {spec.name for spec in policy.checks}  # a check the policy dropped no longer counts
    checks = [c for c in store.checks(run["id"]) if c["commit_sha"] == tip and c["name"] in wanted]
    latest = {c["name"]: c for c in checks}  # the newest result per check name
    blocking = [v for v in store.violations(run["id"]) if v["severity"] in policy.block_on] \
        if hasattr(store, "violations") else []
    blockers: list[str] = []
    if run.get("status") not in MERGEABLE_STATES:
        blockers.append(f"the run ended {run.get('status')}; only a finished run's work can be merged")
    if len(approvals) < policy.required_approvals:
        blockers.append(f"{len(approvals)}/{policy.required_approvals} approvals on {tip[:12]}")
    if rejections:
        blockers.append(f"rejected by {', '.join(r['actor_email'] for r in rejections)}")
    for spec in policy.checks:
        result = latest.get(spec.name)
        if result is None:
            blockers.append(f"check '{spec.name}' has not run on {tip[:12]} (run `promptrail gate simulate`)")
        elif result["status"] != "passed":
            blockers.append(f"check '{spec.name}' {result['status'].replace('_', ' ')}")
    if blocking:
        blockers.append(f"{len(blocking)} blocking CLAUDE.md violation(s) ({', '.join(policy.block_on)})")

    if run.get("gate_status") in ("merged", "rolled back"):
        status, label = run["gate_status"].replace(" ", "_"), run["gate_status"]
    elif rejections:
        status, label = "rejected", f"rejected by {rejections[-1]['actor_email']}"
    elif any(c["status"] != "passed" for c in latest.values()):
        status, label = "checks_failed", "checks failed"
    elif stale and not fresh:
        status, label = "stale", "stale"
    elif len(approvals) >= policy.required_approvals and policy.required_approvals > 0:
        status, label = "approved", "approved by " + ", ".join(a["actor_email"] for a in approvals)
    elif approvals:
        status, label = "pending", f"{len(approvals)}/{policy.required_approvals} approvals"
    else:
        status, label = "pending", "pending"
    return GateState(status, label, target, tip, approvals, rejections, list(latest.values()), blocking,
                     policy.required_approvals, stale, blockers)


def _refresh(workspace: Workspace, run_id: str, sink: EventSink | None = None) -> GateState:
    run = workspace.store.get_run(run_id)
    assert run is not None
    state = gate_state(workspace, run)
    if state.status not in ("merged", "rolled_back"):
        workspace.store.update_run(run_id, gate_status=state.label)
    if sink:
        sink.emit(RunStatus(run_id, run["status"], commit=run.get("commit_sha"), cost_usd=run.get("cost_usd"),
                            gate={"status": state.label, "canMerge": state.can_merge}))
    return state


def _run(workspace: Workspace, run_ref: str) -> dict[str, Any]:
    run = workspace.store.get_run(workspace.store.resolve_run_id(run_ref))
    assert run is not None
    if not run.get("commit_sha"):
        raise PromptrailError(f"run {run['id']} has no commit (status: {run['status']}); there is nothing to gate")
    return run


# -- sign-off -----------------------------------------------------------------------------------
def why_not_sign_off(workspace: Workspace, run: dict[str, Any], actor: Identity,
                     policy: GatePolicy | None = None) -> str | None:
    """Why ``actor`` may not approve or reject ``run`` now, or None when they may."""
    policy = policy or policy_for(workspace, run)[0]
    if run.get("gate_status") in ("merged", "rolled back"):
        return f"run {run['id']} is already {run['gate_status']}"
    if not policy.may_approve(actor.email):
        return (f"{actor.email} is not an approver for this run "
                f"(approvers: {', '.join(policy.approvers)} in {policy.source})")
    if actor.email.lower() == (run.get("actor_email") or "").lower() and not policy.allow_self_approval:
        return (f"{actor.email} prompted run {run['id']}; the four-eyes rule needs someone else "
                "to sign off (allow_self_approval = false)")
    return None


def reviewable_by_me(workspace: Workspace, rows: list[dict[str, Any]]) -> set[str]:
    """The ids of ``rows`` whose gate is open and which this user (git identity) may sign off.
    For the editor's Approve · Reject · Simulate lenses; a broken policy or no identity → none."""
    open_rows = [r for r in rows if r.get("commit_sha") and r.get("gate_status") not in ("merged", "rolled back")]
    if not open_rows:
        return set()
    try:
        actor = workspace.repo.identity()
        policies: dict[str | None, GatePolicy] = {}  # one policy read per target branch, not per run
        allowed = set()
        for row in open_rows:
            if row.get("target_branch") not in policies:
                policies[row.get("target_branch")] = policy_for(workspace, row)[0]
            if why_not_sign_off(workspace, row, actor, policies[row.get("target_branch")]) is None:
                allowed.add(row["id"])
        return allowed
    except PromptrailError:
        return set()


def sign_off(workspace: Workspace, run_ref: str, decision: str, *, comment: str | None = None,
             reviewed_sha: str | None = None, sink: EventSink | None = None) -> GateState:
    """Approve or reject the run's current commit as the git identity of this user."""
    assert decision in ("approve", "reject")
    run = _run(workspace, run_ref)
    actor = workspace.repo.identity()
    refusal = why_not_sign_off(workspace, run, actor)
    if refusal:
        raise PromptrailError(refusal)
    tip = _branch_tip(workspace.repo, run["branch"]) or run["commit_sha"]
    expected = reviewed_sha or run["commit_sha"]
    if not tip.startswith(expected):
        raise PromptrailError(f"the run's branch {run['branch']} moved since it was opened for review "
                              f"(now at {tip[:12]}); review that commit and sign off with --sha {tip[:12]}")
    workspace.store.add_signoff({"run_id": run["id"], "commit_sha": tip, "actor_name": actor.name,
                                 "actor_email": actor.email, "decision": decision, "comment": comment,
                                 "ts": utc_now()},
                                event_kind="gate.approved" if decision == "approve" else "gate.rejected",
                                actor=str(actor), data={"sha": tip, "comment": comment})
    return _refresh(workspace, run["id"], sink)


# -- simulate -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _scratch_worktree(repo: Repo, name: str, sha: str) -> Iterator[Path]:
    """A detached worktree at ``sha`` that disappears afterwards."""
    path = worktree.worktree_path(repo, name)
    if path.exists():
        worktree.remove(repo, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with repo.write_lock():
        result = repo.run("worktree", "add", "-q", "--detach", str(path), sha)
    if not result.ok:
        raise PromptrailError(f"could not check out {sha[:12]} to work on it: {result.output}")
    try:
        yield path
    finally:
        worktree.remove(repo, path)


async def simulate(workspace: Workspace, run_ref: str, sink: EventSink | None = None) -> GateState:
    """Run the policy's checks on exactly the run's current commit, streaming their output into
    the run's log, and store exit code, duration and output of each."""
    from promptrail.logbook import LogBook

    run = _run(workspace, run_ref)
    actor = await asyncio.to_thread(workspace.repo.identity)
    policy, _ = await asyncio.to_thread(policy_for, workspace, run)
    tip = _branch_tip(workspace.repo, run["branch"]) or run["commit_sha"]
    fan = sink if isinstance(sink, FanOut) else FanOut(sink) if sink else FanOut()
    last = workspace.store.log(run["id"])
    log = LogBook(workspace.store, run["id"], fan, start_seq=last[-1]["seq"] if last else 0)
    try:
        if not policy.checks:
            log.add("gate", f"no checks configured in {policy.source}; nothing to simulate")
        with _scratch_worktree(workspace.repo, f"{run['id']}-checks", tip) as folder:
            for spec in policy.checks:
                log.add("gate", f"check '{spec.name}' on {tip[:12]}: $ {spec.run}")
                result = await run_check(spec, folder, log)
                workspace.store.add_check({"run_id": run["id"], "commit_sha": tip, **result})
                log.add("gate", f"check '{spec.name}' {result['status']} (exit {result['exit_code']}, "
                                f"{result['duration_ms']} ms)")
    finally:
        await log.close()
    checks = {c["name"]: c["status"] for c in workspace.store.checks(run["id"]) if c["commit_sha"] == tip}
    workspace.store.record_event("gate.simulated", run_id=run["id"], actor=str(actor),
                                 data={"sha": tip, "checks": checks})
    return _refresh(workspace, run["id"], fan)


async def run_check(spec: CheckSpec, folder: Path, log: Any) -> dict[str, Any]:
    """Run one check command in its own process group; stream its output lines to ``log``."""
    from promptrail.agents.stream_json import decode_line, read_lines

    started = time.monotonic()
    process = await asyncio.create_subprocess_shell(
        spec.run, cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
    output: list[str] = []

    async def pump() -> None:
        assert process.stdout is not None
        async for line in read_lines(process.stdout):
            text = decode_line(line)
            output.append(text)
            log.add("check", text)

    status = "passed"
    try:
        await asyncio.wait_for(asyncio.gather(pump(), process.wait()), timeout=spec.timeout_s)
    except asyncio.TimeoutError:
        status = "timed_out"
        output.append(f"[promptrail] timed out after {spec.timeout_s:g} s; the check was stopped")
        log.add("error", output[-1])
        # Also drops the pipes a process that escaped the group may hold, and reaps the shell.
        await end_group(process, grace=2.0)
    exit_code = process.returncode
    if status == "passed" and exit_code != 0:
        status = "failed"
    return {"name": spec.name, "command": spec.run, "exit_code": exit_code, "status": status,
            "duration_ms": int((time.monotonic() - started) * 1000), "output": redact("\n".join(output)),
            "ts": utc_now()}


# -- merge and rollback -------------------------------------------------------------------------
def _checked_out_in(repo: Repo, branch: str) -> Path | None:
    """The worktree that has ``branch`` checked out, if any."""
    listing = repo.run("worktree", "list", "--porcelain").stdout
    current: Path | None = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree "):])
        elif line == f"branch refs/heads/{branch}":
            return current
    return None


def _advance(repo: Repo, target: str, old: str, new: str, identity: Identity) -> None:
    """Move ``target`` from ``old`` to ``new`` (a descendant), never touching uncommitted work."""
    folder = _checked_out_in(repo, target)
    if folder is None:
        result = repo.run("update-ref", f"refs/heads/{target}", new, old)
    else:
        # The target is someone's checked-out branch: let git advance it; it refuses rather than
        # overwrite local changes, and then the target stays where it was.
        result = repo.run("merge", "--ff-only", "-q", new, cwd=folder, env=identity.as_env())
    if not result.ok:
        raise PromptrailError(f"could not advance {target} to {new[:12]}: "
                              f"{(result.output.splitlines() or ['git refused'])[0]}; nothing was changed")


def merge(workspace: Workspace, run_ref: str, sink: EventSink | None = None) -> GateState:
    """Deploy the run: fast-forward the target when possible, else a merge commit with the trailer."""
    repo = workspace.repo
    run = _run(workspace, run_ref)
    actor = repo.identity()
    state = gate_state(workspace, run)
    if state.status == "merged":
        raise PromptrailError(f"run {run['id']} is already merged into {state.target}")
    if state.merge_blockers:
        raise PromptrailError(f"run {run['id']} cannot be merged: {'; '.join(state.merge_blockers)}")
    target, tip = state.target, state.sha
    assert target and tip
    with repo.write_lock():
        old = _branch_tip(repo, target)
        if old is None:
            raise PromptrailError(f"the target branch '{target}' does not exist")
        if repo.run("merge-base", "--is-ancestor", old, tip).ok:
            new, how = tip, "fast-forward"
        else:
            new, how = _merge_commit(workspace, run, old, tip, actor), "merge commit"
        _advance(repo, target, old, new, actor)
    workspace.store.update_run(run["id"], gate_status="merged")
    workspace.store.record_event("deployed", run_id=run["id"], actor=str(actor),
                                 data={"sha": tip, "target": target, "from": old, "to": new, "how": how})
    return _refresh(workspace, run["id"], sink)


def _merge_commit(workspace: Workspace, run: dict[str, Any], old: str, tip: str, actor: Identity) -> str:
    repo = workspace.repo
    message = (f"Merge run {run['id']}: {run.get('summary') or run['prompt']}\n\n"
               f"{gitcommit.TRAILER}: {run['id']}\n")
    with _scratch_worktree(repo, f"{run['id']}-merge", old) as folder:
        result = repo.run("merge", "--no-ff", "-q", "-m", message, tip, cwd=folder, env=actor.as_env())
        if not result.ok:
            repo.run("merge", "--abort", cwd=folder)
            conflicted = "conflict" in result.output.lower()
            raise PromptrailError(
                f"run {run['id']} {'conflicts with' if conflicted else 'cannot be merged into'} the target "
                f"(now at {old[:12]}); the target is untouched: rebase the run's branch {run['branch']} and "
                "ask for a new review")
        return repo.run("rev-parse", "HEAD", cwd=folder).stdout.strip()


def rollback(workspace: Workspace, run_ref: str, sink: EventSink | None = None) -> dict[str, Any]:
    """Revert the run's commit on the target, as a new attributed run (trailer Promptrail-Reverts)."""
    from promptrail.queries import run_json
    from promptrail.runs import new_run_id

    repo, store = workspace.repo, workspace.store
    run = _run(workspace, run_ref)
    if run.get("gate_status") == "rolled back":
        raise PromptrailError(f"run {run['id']} is already rolled back")
    actor = repo.identity()
    _, target = policy_for(workspace, run)
    with repo.write_lock():
        old = _branch_tip(repo, target)
        if old is None or not repo.run("merge-base", "--is-ancestor", run["commit_sha"], old).ok:
            raise PromptrailError(f"run {run['id']} is not on {target}; only a merged run can be rolled back")
        rollback_id = new_run_id()
        summary = f"Roll back run {run['id']}: {run.get('summary') or run['prompt']}"
        message = (f"{summary}\n\nThis reverts commit {run['commit_sha']}.\n\n"
                   f"{gitcommit.TRAILER}: {rollback_id}\n{REVERTS_TRAILER}: {run['id']}\n")
        started = utc_now()
        with _scratch_worktree(repo, f"{rollback_id}-revert", old) as folder:
            reverted = repo.run("revert", "--no-commit", run["commit_sha"], cwd=folder, env=actor.as_env())
            if not reverted.ok:
                repo.run("revert", "--abort", cwd=folder)
                raise PromptrailError(f"reverting run {run['id']} conflicts with later changes on {target}; "
                                      "the target is untouched: revert it by hand")
            committed = repo.run("commit", "-q", "-F", "-", cwd=folder, env=actor.as_env(), stdin=message)
            if not committed.ok:
                raise PromptrailError(f"the revert commit was refused: {committed.output}")
            new = repo.run("rev-parse", "HEAD", cwd=folder).stdout.strip()
        _advance(repo, target, old, new, actor)
    files = [f.as_dict() for f in gitcommit.changes_in_commit(repo, new)]
    store.insert_run({"id": rollback_id, "prompt": summary, "summary": summary, "actor_name": actor.name,
                      "actor_email": actor.email, "agent": "rollback", "agent_label": "git revert",
                      "model": None, "mode": "direct", "status": "succeeded", "base_sha": old,
                      "commit_sha": new, "branch": target, "target_branch": target, "repo_root": str(repo.root),
                      "started_at": started, "ended_at": utc_now(), "gate_status": "merged",
                      # No model was involved: a revert's cost is known to be nothing.
                      "cost_usd": 0.0, "cost_source": "no agent",
                      "reverts_run_id": run["id"]}, event_actor=str(actor))
    store.set_run_files(rollback_id, files)
    gitcommit.add_note(repo, new, {"run_id": rollback_id, "reverts": run["id"], "tool": "promptrail",
                                   "actor": {"name": actor.name, "email": actor.email}})
    store.update_run(run["id"], gate_status="rolled back")
    store.record_event("rolled_back", run_id=run["id"], actor=str(actor),
                       data={"target": target, "revert_commit": new, "rollback_run": rollback_id})
    if sink:
        sink.emit(RunStatus(run["id"], run["status"], commit=run["commit_sha"], gate={"status": "rolled back"}))
    return run_json(workspace, rollback_id)
